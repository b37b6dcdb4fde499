//! The `vggtune` binary: with no subcommand it opens the window; otherwise it runs the same core
//! from the command line. This file only parses arguments and prints; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
use vggtune::data::Dataset;
use vggtune::device::{self, DeviceChoice};

#[derive(Parser, Debug)]
#[command(
    name = "vggtune",
    version = vggtune::VERSION_LINE,
    about = "Fine-tune VGG16 on your own labelled photos (Dogs vs. Cats and any other classes).",
    long_about = "Fine-tune VGG16 on your own labelled photos.\n\n\
        With no subcommand, vggtune opens its window. Every subcommand below runs the same core \
        as the window does."
)]
struct Cli {
    /// Compute device: auto (a hardware GPU through wgpu, else the CPU), gpu, or cpu.
    #[arg(long, global = true, env = device::DEVICE_ENV, default_value = "auto")]
    device: DeviceChoice,

    /// The number format of the frozen convolutions on the CPU: auto (bf16 where the CPU has
    /// AMX tiles or measures its bf16 products fast enough, else f32), f32, or bf16
    /// (where the CPU has AVX512-BF16).
    #[arg(long, global = true, env = "VGGTUNE_PRECISION", default_value = "auto")]
    precision: vggtune::model::bf16::Choice,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the version and the compute device that would be used, and why.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Scan a photo folder: layout, classes with counts, and every skipped file with its reason.
    Scan {
        /// The folder (one sub-folder per class, or Kaggle's flat `cat.1.jpg` layout).
        dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Get, list and import VGG16 weights.
    Weights {
        #[command(subcommand)]
        action: WeightsAction,
    },
    /// Print the top-5 ImageNet classes of images (needs weights with the 1000-way classifier).
    Imagenet {
        /// The weights file (.pth, .safetensors or .onnx).
        #[arg(long)]
        weights: PathBuf,
        /// The images to classify.
        images: Vec<PathBuf>,
    },
    /// Fine-tune VGG16 on a photo folder and save the model.
    Train(commands::TrainArgs),
    /// List the training photos whose label looks wrong: heads trained out-of-fold on the
    /// cached features judge the photos they never saw, most suspicious first.
    Audit(commands::AuditArgs),
    /// Check a photo folder: wrong labels, duplicates, photos that belong to no class, unusable
    /// photos and small classes, grouped by kind (the label check's folds, then checks on their
    /// cached features and on the photos' pixels).
    Check(commands::AuditArgs),
    /// Sort a folder nobody has labelled into OUT/CLASS/: answer the photos the head is least
    /// sure of (or let a labelled copy answer: --oracle), then every photo it is sure enough
    /// of is copied or moved; --undo OUT takes the last sort back.
    Sort(commands::SortArgs),
    /// Accuracy, log loss, confusion matrix and galleries of a saved model on a photo folder.
    Evaluate(commands::EvaluateArgs),
    /// Classify image files or folders with a saved model.
    Predict(commands::PredictArgs),
    /// Write a Kaggle Dogs vs. Cats submission (id,label with label = P(dog)).
    Submit(commands::SubmitArgs),
    /// Export a saved model: ONNX (the whole classifier, for onnxruntime, OpenCV, browsers) or
    /// .safetensors with torchvision's key names (for PyTorch).
    Export {
        /// The saved model (.vggtune).
        model: PathBuf,
        /// The file to write (.onnx or .safetensors).
        #[arg(long)]
        out: PathBuf,
        /// onnx or safetensors (default: from --out's extension).
        #[arg(long)]
        format: Option<vggtune::model::export::ExportFormat>,
    },
    /// Measure forward, training and end-to-end speed and memory on the chosen device.
    Bench {
        /// A photo folder for the end-to-end run (features + head epochs, then cached).
        #[arg(long)]
        photos: Option<PathBuf>,
        /// At most this many of its photos.
        #[arg(long, default_value_t = 2000)]
        photo_limit: usize,
        /// Head epochs in the end-to-end run.
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Base weights for the end-to-end run (default: seeded random, the same cost).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Forward batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        batches: Vec<usize>,
        /// Timed repetitions of each measurement.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Input side in pixels.
        #[arg(long, default_value_t = 224)]
        input_size: u32,
        /// On the CPU, also time the forward pass through Burn's own convolutions.
        #[arg(long)]
        compare_burn: bool,
        /// On a CPU with bf16 products (AVX512-BF16), also time the frozen base in f32 and in
        /// bf16 in turn, pass by pass in this one process: their ratio without the drift
        /// between two runs.
        #[arg(long)]
        alternate_precisions: bool,
        /// Divide VGG16's widths (quick smoke runs only).
        #[arg(long, default_value_t = 1, hide = true)]
        width_divisor: usize,
        /// Also write the result as JSON here.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
    /// Measure the "none of these" verdict against the baselines (maximum softmax probability,
    /// energy) on known photos and photos of none of the model's classes.
    BenchUnknown {
        /// The saved model (.vggtune).
        model: PathBuf,
        /// A folder of photos like the training photos (repeatable).
        #[arg(long)]
        known: Vec<PathBuf>,
        /// Also count the model's own validation photos as known.
        #[arg(long)]
        valid: bool,
        /// A folder of photos of none of the model's classes (repeatable).
        #[arg(long, required = true)]
        unknown: Vec<PathBuf>,
        /// The neighbour counts to compare.
        #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,50")]
        k: Vec<usize>,
    },
}

#[derive(Subcommand, Debug)]
enum WeightsAction {
    /// Download torchvision's VGG16 ImageNet weights (vgg16-397923af.pth, 528 MB) into the cache.
    Download,
    /// List the weights in the cache.
    List,
    /// Register a local weights file (.pth, .safetensors or .onnx).
    Import {
        /// The file to import.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // SAFETY: the first statement of `main`: no other thread exists yet.
    unsafe {
        vggtune::pin_default_device();
        vggtune::quiet_missing_runtime_dir();
    }
    vggtune::tune_allocator();
    // The comparison switches are read once, before any work (vggtune::tuning).
    let _ = vggtune::tuning::current();
    let cli = Cli::parse();
    vggtune::model::bf16::choose(cli.precision);
    let Some(command) = cli.command else {
        return match vggtune::gui::run(cli.device) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vggtune: could not open the window: {e}");
                eprintln!("vggtune: the command line still works: see `vggtune --help`");
                ExitCode::FAILURE
            }
        };
    };
    let result = match command {
        Command::Info { json } => info(cli.device, json),
        Command::Scan { dir, json } => scan(&dir, json),
        Command::Weights { action } => weights(action),
        Command::Imagenet { weights, images } => imagenet(cli.device, &weights, &images),
        Command::Train(args) => commands::train(cli.device, args),
        Command::Audit(args) => commands::audit(cli.device, args),
        Command::Check(args) => commands::check(cli.device, args),
        Command::Sort(args) => commands::sort(cli.device, args),
        Command::Evaluate(args) => commands::evaluate(cli.device, args),
        Command::Predict(args) => commands::predict(cli.device, args),
        Command::Submit(args) => commands::submit(cli.device, args),
        Command::Export { model, out, format } => export(&model, &out, format),
        Command::Bench {
            photos,
            photo_limit,
            epochs,
            weights,
            batches,
            repeats,
            input_size,
            compare_burn,
            alternate_precisions,
            width_divisor,
            json_out,
        } => bench(
            vggtune::bench::BenchConfig {
                device: cli.device,
                input_size,
                batches,
                repeats,
                photos,
                photo_limit,
                epochs,
                weights,
                width_divisor,
                compare_burn,
                alternate_precisions,
            },
            json_out,
        ),
        Command::BenchUnknown {
            model,
            known,
            valid,
            unknown,
            k,
        } => bench_unknown(cli.device, &model, (&known, valid), &unknown, &k),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vggtune: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn info(choice: DeviceChoice, json: bool) -> anyhow::Result<()> {
    let chosen = device::select(choice)?;
    // Burn's convolutions, where forced for comparisons, run in f32.
    let burn = vggtune::tuning::current().cpu_conv == vggtune::tuning::CpuConv::Burn;
    let (precision, why) = if burn {
        let why = "VGGTUNE_CPU_CONV=burn asks for Burn's convolutions, which run in f32";
        (vggtune::model::bf16::Precision::F32, why.to_owned())
    } else {
        vggtune::model::bf16::chosen().resolve()
    };
    let algorithm = if burn {
        "Burn's convolutions"
    } else {
        vggtune::model::cpu_base::Algorithm::chosen(precision).describe()
    };
    let precision_line = match precision {
        vggtune::model::bf16::Precision::F32 => format!("f32, {algorithm} ({why})"),
        vggtune::model::bf16::Precision::Bf16 => format!(
            "bf16 products, f32 sums, {algorithm} on {}; {} ({why})",
            vggtune::model::bf16::kernel_name(),
            vggtune::model::dense::DESCRIPTION,
        ),
    };
    if json {
        let mut value = chosen.to_json();
        value["cpu_precision"] = serde_json::json!(precision);
        value["cpu_precision_why"] = serde_json::json!(precision_line);
        value["version"] = serde_json::json!(vggtune::VERSION);
        value["commit"] = serde_json::json!(vggtune::COMMIT);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("vggtune {}", vggtune::VERSION_LINE);
    println!("device:  {}", chosen.label());
    println!("why:     {}", chosen.reason);
    println!("cpu base: {precision_line}");
    if let Some(adapter) = &chosen.adapter {
        println!(
            "adapter: {} [{}; {}{}{}]",
            adapter.name,
            adapter.graphics_api,
            adapter.device_type,
            if adapter.software { "; software" } else { "" },
            if adapter.driver.is_empty() {
                String::new()
            } else {
                format!("; driver {}", adapter.driver)
            }
        );
        println!(
            "binds:   at most {:.0} MiB in one buffer",
            adapter.max_binding_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

fn scan(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let dataset = Dataset::scan(dir)?;
    let elapsed_secs = started.elapsed().as_secs_f64();
    if json {
        let mut value = serde_json::to_value(&dataset)?;
        value["counts"] = serde_json::json!(dataset.counts());
        value["scan_secs"] = serde_json::json!(elapsed_secs);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print!("{}", vggtune::data::scan::report(&dataset));
    println!("scanned in {elapsed_secs:.2} s");
    Ok(())
}

fn weights(action: WeightsAction) -> anyhow::Result<()> {
    use vggtune::model::download;
    let cache = download::weights_cache_dir();
    match action {
        WeightsAction::Download => {
            let bar = indicatif::ProgressBar::new(download::VGG16_BYTES);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let cancel = std::sync::atomic::AtomicBool::new(false);
            let path = download::download_vgg16(
                |p| {
                    if let Some(total) = p.total {
                        bar.set_length(total);
                    }
                    bar.set_position(p.bytes);
                },
                &cancel,
            )?;
            bar.finish_and_clear();
            println!("VGG16 ImageNet weights: {}", path.display());
        }
        WeightsAction::List => {
            let cached = download::list_cached(&cache);
            println!("cache: {}", cache.display());
            if cached.is_empty() {
                println!("  (empty: `vggtune weights download` or `vggtune weights import FILE`)");
            }
            for w in cached {
                let partial = if w.partial {
                    "  (partial download)"
                } else {
                    ""
                };
                println!(
                    "  {}  {:.1} MB{partial}",
                    w.path.display(),
                    w.bytes as f64 / 1e6
                );
            }
        }
        WeightsAction::Import { file } => {
            let dest = download::import_into_cache(&file, &cache)?;
            let weights = vggtune::model::read_weights(&dest)?;
            println!(
                "imported {} ({:?}, {} convention, SHA-256 {}) as {}",
                file.display(),
                weights.format,
                match weights.convention {
                    vggtune::data::Convention::Torchvision => "torchvision",
                    vggtune::data::Convention::Caffe => "Caffe/Keras",
                },
                &weights.sha256[..16],
                dest.display()
            );
        }
    }
    Ok(())
}

fn imagenet(
    choice: DeviceChoice,
    weights: &std::path::Path,
    images: &[PathBuf],
) -> anyhow::Result<()> {
    use vggtune::model::imagenet;
    anyhow::ensure!(!images.is_empty(), "name at least one image to classify");
    let file = vggtune::model::read_weights(weights)?;
    // The ImageNet model is full VGG16: its torchvision head must fit the GPU's binding limit.
    let chosen = vggtune::infer::device_for(choice, &vggtune::model::Vgg16Config::new(1000))?;
    let model = imagenet::imagenet_model(&file, &chosen.device)?;
    let preprocessing = vggtune::data::Preprocessing {
        convention: file.convention,
        ..vggtune::data::Preprocessing::torchvision()
    };
    let paths: Vec<&std::path::Path> = images.iter().map(PathBuf::as_path).collect();
    let mut failed = false;
    for result in imagenet::top_k(&model, &preprocessing, &paths, 5, &chosen.device) {
        match result {
            Ok(top) => {
                println!("{}", top.image.display());
                for (name, p) in top.classes {
                    println!("  {:>6.2}%  {name}", 100.0 * p);
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("vggtune: {e}");
            }
        }
    }
    anyhow::ensure!(!failed, "some images could not be classified");
    Ok(())
}

fn export(
    model: &std::path::Path,
    out: &std::path::Path,
    format: Option<vggtune::model::export::ExportFormat>,
) -> anyhow::Result<()> {
    use vggtune::model::export::{ExportFormat, export_model};
    let format = format.or_else(|| ExportFormat::for_path(out)).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: say which format with --format onnx or --format safetensors (or name the file .onnx or .safetensors)",
            out.display()
        )
    })?;
    println!("{}", export_model(model, format, out)?);
    Ok(())
}

fn bench_unknown(
    choice: DeviceChoice,
    model: &std::path::Path,
    (known, valid): (&[PathBuf], bool),
    unknown: &[PathBuf],
    ks: &[usize],
) -> anyhow::Result<()> {
    use vggtune::bench_unknown::PhotoSet;
    let classifier = vggtune::infer::Classifier::load_for(model, choice)?;
    let classes = classifier.classes().to_vec();
    let mut known_sets: Vec<PhotoSet> = known
        .iter()
        .map(|d| PhotoSet::labelled(d, &classes))
        .collect();
    if let Some(v) = classifier.header.validation.as_ref().filter(|_| valid) {
        known_sets.push(PhotoSet {
            name: "the model's validation photos".into(),
            paths: v.images.clone(),
            labels: Some(
                v.images
                    .iter()
                    .cloned()
                    .zip(v.labels.iter().copied())
                    .collect(),
            ),
        });
    }
    let unknown_sets: Vec<PhotoSet> = unknown.iter().map(|d| PhotoSet::of_folder(d)).collect();
    let report = vggtune::bench_unknown::run(&classifier, &known_sets, &unknown_sets, ks, |s| {
        eprintln!("{s}…");
    })
    .map_err(anyhow::Error::msg)?;
    print!("{report}");
    Ok(())
}

fn bench(config: vggtune::bench::BenchConfig, json_out: Option<PathBuf>) -> anyhow::Result<()> {
    let result = vggtune::bench::run(&config, |step| eprintln!("measuring {step}…"))
        .map_err(anyhow::Error::msg)?;
    print!("{}", vggtune::bench::table(&result));
    if let Some(path) = json_out {
        vggtune::fsutil::write_atomic(&path, serde_json::to_string_pretty(&result)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
