//! The `vggtune` binary as a user runs it.

use std::process::{Command, Output};

mod common;

fn vggtune(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vggtune"));
    cmd.args(args).env_remove("VGGTUNE_DEVICE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the vggtune binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Environment that hides every Vulkan driver, so wgpu finds no Vulkan adapter.
const NO_VULKAN: [(&str, &str); 3] = [
    ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
    ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
    ("WGPU_BACKEND", "vulkan"),
];

#[test]
fn help_lists_every_subcommand_of_the_product() {
    let out = vggtune(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out);
    for sub in [
        "info", "scan", "weights", "imagenet", "train", "evaluate", "predict", "submit", "bench",
    ] {
        assert!(help.contains(sub), "--help lacks {sub}:\n{help}");
    }
    assert!(help.contains("--device"));
}

#[test]
fn version_names_the_commit() {
    let out = vggtune(&["--version"], &[]);
    assert!(out.status.success());
    let v = text(&out);
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("commit"),
        "{v}"
    );
}

#[test]
fn a_missing_or_damaged_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.vggtune");
    std::fs::write(&bad, b"not a model").unwrap();
    for (model, words) in [
        ("/nonexistent/m.vggtune", "/nonexistent/m.vggtune"),
        (bad.to_str().unwrap(), "not a usable vggtune model"),
    ] {
        for args in [
            vec!["predict", model, "x.jpg"],
            vec!["submit", model, "."],
            vec!["export", model, "--out", "x.safetensors"],
        ] {
            let out = vggtune(&args, &[]);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
            assert!(text(&out).contains(words), "{args:?}: {}", text(&out));
            assert!(!text(&out).contains("panicked"), "{}", text(&out));
        }
    }
}

#[test]
fn bench_measures_a_tiny_model_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = vggtune(
        &[
            "bench",
            "--device",
            "cpu",
            "--width-divisor",
            "16",
            "--input-size",
            "32",
            "--batches",
            "1,2",
            "--repeats",
            "1",
            "--alternate-precisions",
            "--json-out",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("VGG16 forward, batch 2"),
        "{}",
        text(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["forward"].as_array().unwrap().len(), 2);
    // Both precisions in turn: a pair a batch size where this CPU runs bf16, else none and
    // a line that says why.
    let pairs = v["base_by_precision"].as_array().unwrap();
    if pairs.is_empty() {
        assert!(text(&out).contains("in turn: skipped"), "{}", text(&out));
    } else {
        assert_eq!(pairs.len(), 2);
        assert!(
            text(&out).contains("frozen base in bf16, in turn, batch 2"),
            "{}",
            text(&out)
        );
    }
    assert!(v["head_step_ips"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mib"].as_f64().unwrap() > 0.0);
}

#[test]
fn info_forced_cpu_uses_the_cpu_backend() {
    let out = vggtune(&["info", "--device", "cpu", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["choice"], "cpu");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn device_can_be_forced_through_the_environment() {
    let out = vggtune(&["info", "--json"], &[("VGGTUNE_DEVICE", "cpu")]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["choice"], "cpu");
    let bad = vggtune(&["info"], &[("VGGTUNE_DEVICE", "tpu")]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("tpu"), "{}", text(&bad));
}

#[test]
fn probing_the_gpu_without_a_desktop_login_prints_no_wayland_noise() {
    let out = Command::new(env!("CARGO_BIN_EXE_vggtune"))
        .args(["info"])
        .env_remove("VGGTUNE_DEVICE")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("the vggtune binary runs");
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

/// `auto`'s CPU precision, with the AMX tiles set aside: where there is AVX512-BF16 it names
/// the bf16 rate it measured and decides by it; elsewhere it says there are no bf16 products.
#[test]
fn info_explains_the_cpu_precision_from_a_measured_bf16_rate_without_amx() {
    let out = vggtune(&["info", "--json"], &[("VGGTUNE_AMX", "off")]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let why = v["cpu_precision_why"].as_str().unwrap_or_default();
    if !vggtune::model::bf16::available() {
        assert_eq!(v["cpu_precision"], "f32", "{v}");
        assert!(why.contains("no bf16 products"), "{why}");
        return;
    }
    let rate = vggtune::model::cpu_rates::bf16_rate();
    let measured = why
        .split("measured ")
        .nth(1)
        .and_then(|rest| rest.split('×').next())
        .and_then(|r| r.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no measured rate in {why:?}"));
    // Two processes, two measurements of the same CPU.
    assert!(
        (measured / rate - 1.0).abs() < 0.3,
        "{measured} against {rate}"
    );
    let needed = vggtune::model::cpu_rates::BF16_RATE_FOR_AUTO;
    if (measured - needed).abs() < 0.01 {
        // Printed to two places: too close to the line to tell which side it fell.
        return;
    }
    let expected = if measured >= needed { "bf16" } else { "f32" };
    assert_eq!(v["cpu_precision"], expected, "{why}");
}

#[test]
fn info_auto_explains_its_choice() {
    let out = vggtune(&["info", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["choice"], "auto");
    let reason = v["reason"].as_str().unwrap();
    assert!(!reason.is_empty());
    match &v["adapter"] {
        // No adapter at all: the CPU, saying why.
        serde_json::Value::Null => assert_eq!(v["backend"], "cpu", "{v}"),
        // A software adapter (lavapipe in CI) loses to the CPU; a hardware one wins.
        adapter if adapter["software"] == true => assert_eq!(v["backend"], "cpu", "{v}"),
        _ => assert_eq!(v["backend"], "wgpu", "{v}"),
    }
}

#[test]
fn auto_falls_back_to_the_cpu_when_no_adapter_exists() {
    let out = vggtune(&["info", "--json"], &NO_VULKAN);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "cpu", "{v}");
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
}

#[test]
fn forcing_the_gpu_where_none_exists_is_a_clear_error() {
    let out = vggtune(&["info", "--device", "gpu"], &NO_VULKAN);
    let all = text(&out);
    assert!(!all.contains("panicked"), "{all}");
    if out.status.success() {
        // Some machines still offer a non-Vulkan adapter (GL); then it must be named.
        assert!(all.contains("adapter:"), "{all}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(
            all.contains("no GPU could be used") && all.contains("--device cpu"),
            "{all}"
        );
    }
}

#[test]
fn a_gpu_that_cannot_bind_the_torchvision_head_is_refused_before_any_work() {
    let info = vggtune(&["info", "--device", "gpu", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap_or_default();
    let Some(limit) = v["adapter"]["max_binding_bytes"].as_u64() else {
        eprintln!("no wgpu adapter here: {}", text(&info));
        return;
    };
    // The head's first layer: 25088 × 4096 floats, 392 MiB.
    if limit >= 25088 * 4096 * 4 {
        eprintln!("this adapter binds {limit} bytes: the head fits, nothing to refuse");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    common::colour_dataset(data.path(), 3, 1);
    let out_model = data.path().join("m.vggtune");
    let args = [
        "train",
        data.path().to_str().unwrap(),
        "--weights",
        "none",
        "--head",
        "torchvision",
        "--device",
        "gpu",
        "--out",
        out_model.to_str().unwrap(),
    ];
    let out = vggtune(&args, &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    for part in [
        "392 MiB",
        "can bind at most",
        "--head dense256",
        "--device cpu",
    ] {
        assert!(all.contains(part), "{part:?} missing: {all}");
    }
    assert!(!out_model.exists());
}

#[test]
fn scan_prints_counts_and_json() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/dogscats/train");
    let out = vggtune(&["scan", dir], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("Kaggle flat") && t.contains("1000") && t.contains("999"),
        "{t}"
    );
    let out = vggtune(&["scan", dir, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["counts"], serde_json::json!([1000, 999]));
    assert_eq!(v["layout"], "kaggle-flat");
    let missing = vggtune(&["scan", "/nonexistent/photos"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("/nonexistent/photos: not a folder"),
        "{}",
        text(&missing)
    );
}

#[test]
fn weights_import_copies_a_checked_file_into_the_cache_and_list_shows_it() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torch/vgg16_div16_zip.pth"
    );
    let out = vggtune(&["weights", "import", fixture], &[("VGGTUNE_CACHE_DIR", c)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("torchvision convention"),
        "{}",
        text(&out)
    );
    let out = vggtune(&["weights", "list"], &[("VGGTUNE_CACHE_DIR", c)]);
    assert!(text(&out).contains("vgg16_div16_zip.pth"), "{}", text(&out));
    let bad = cache.path().join("notes.pth");
    std::fs::write(&bad, "not weights").unwrap();
    let out = vggtune(
        &["weights", "import", bad.to_str().unwrap()],
        &[("VGGTUNE_CACHE_DIR", c)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("notes.pth"), "{}", text(&out));
}

#[test]
fn numbers_out_of_range_are_refused_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    common::colour_dataset(dir.path(), 3, 1);
    let data = dir.path().to_str().unwrap();
    for (args, words) in [
        (
            vec!["train", data, "--valid-fraction", "-0.5"],
            "validation fraction -0.5 is out of range",
        ),
        (
            vec!["train", data, "--then", "block5:0"],
            "--then 'block5:0': the stage's epochs 0 is out of range",
        ),
        (
            vec!["audit", data, "--folds", "0"],
            "folds 0 is out of range",
        ),
        (
            vec!["audit", data, "--folds", "1"],
            "folds 1 is out of range",
        ),
    ] {
        let out = vggtune(&args, &[]);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(text(&out).contains(words), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("training"), "{args:?} started work");
    }
}

/// Runs the binary and returns its output and its peak resident memory in bytes.
fn run_measured(args: &[&str]) -> (Output, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_vggtune"))
        .args(args)
        .env_remove("VGGTUNE_DEVICE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the vggtune binary runs");
    let pid = child.id() as libc::pid_t;
    // Read its output on threads (a full pipe would block it), then reap it with wait4 for
    // this child's own rusage.
    let mut child = child;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let output = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn a_3_gb_photo_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    common::colour_dataset(&photos, 4, 2);
    let model = dir.path().join("m.vggtune");
    let trained = vggtune(
        &[
            "train",
            photos.to_str().unwrap(),
            "--weights",
            "none",
            "--width-divisor",
            "16",
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            model.to_str().unwrap(),
            "--cache-dir",
            dir.path().join("cache").to_str().unwrap(),
            "--quiet",
        ],
        &[],
    );
    assert!(trained.status.success(), "{}", text(&trained));
    // A sparse file that starts as a JPEG: 3 GiB long, no disk used.
    let dropped = dir.path().join("dropped");
    std::fs::create_dir_all(&dropped).unwrap();
    let huge = dropped.join("huge.jpg");
    let mut file = std::fs::File::create(&huge).unwrap();
    std::io::Write::write_all(&mut file, &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F'])
        .unwrap();
    file.set_len(3 << 30).unwrap();
    drop(file);
    std::fs::copy(photos.join("red/0.png"), dropped.join("red.png")).unwrap();
    let (out, peak) = run_measured(&[
        "predict",
        model.to_str().unwrap(),
        dropped.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("huge.jpg") && said.contains("3221") && said.contains("256 MB"),
        "{said}"
    );
    assert!(
        said.contains("red.png"),
        "the other photo is classified: {said}"
    );
    assert!(
        peak < 1 << 30,
        "predict held {} MB at its peak: the refused file was read",
        peak >> 20
    );
}

#[test]
fn sort_refuses_what_would_lose_answers_or_sort_into_itself() {
    let work = tempfile::tempdir().unwrap();
    let pool = work.path().join("pool");
    common::colour_dataset(&pool, 3, 1);
    let pool = pool.to_str().unwrap();
    // Answers given with nowhere to sort to would be lost.
    let out = vggtune(&["sort", pool, "--classes", "cat,dog"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--into"), "{}", text(&out));
    // The sorted folder inside the folder being sorted.
    let inside = format!("{pool}/sorted");
    let out = vggtune(
        &["sort", pool, "--classes", "cat,dog", "--into", &inside],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("outside the folder being sorted"),
        "{}",
        text(&out)
    );
    // Class names that cannot be folder names, or one class twice.
    for classes in ["cat,../dog", "cat,Cat", "cat"] {
        let out = vggtune(
            &[
                "sort",
                pool,
                "--classes",
                classes,
                "--into",
                "/tmp/x",
                "--weights",
                "none",
            ],
            &[],
        );
        assert!(!out.status.success(), "{classes}");
        assert!(
            text(&out).contains("class") || text(&out).contains("folder"),
            "{}",
            text(&out)
        );
    }
    // Nothing to undo.
    let out = vggtune(&["sort", "--undo", work.path().to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no sort to undo") || text(&out).contains("vggtune-sort-journal"),
        "{}",
        text(&out)
    );
}
