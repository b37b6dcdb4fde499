"""The same work as `vggtune bench`, in PyTorch or Keras/TensorFlow on the CPU, for A/B comparison.

usage: python bench/reference.py torch|keras [--batches 1,8,32] [--repeats 2] [--threads 2] [--bf16]
       python bench/reference.py torch --device cuda [--dense]
       python bench/reference.py keras --photos DIR [--photo-limit 2000] [--epochs 10]
Prints one JSON object: forward images/s per batch size at 224x224 (VGG16, random weights), and
images/s of a training step of the 2017 course's light head (25088 -> 256 -> 2, Adam) on
cached features, batch 32; with --dense (always on CUDA), also of torchvision's dense layers
(25088 -> 4096 -> 4096 -> 2, Adam, batch 32), as `vggtune bench` measures both. On CUDA every
timing waits for the GPU to finish (torch.cuda.synchronize). With --photos (Keras only): the 2017 course's end-to-end workflow
instead, as `vggtune bench --photos` times it: decode and resize the photos, compute the frozen
VGG16 base's features with `predict` (batch 32), then fit the light head for the epochs (batch 32,
10% held out). With --bf16 the forward passes run in bf16 where the CPU allows, the way each
framework offers it: PyTorch under torch.autocast("cpu", dtype=torch.bfloat16) (the head step
stays f32), TensorFlow with oneDNN's fpmath mode BF16 (ONEDNN_DEFAULT_FPMATH_MODE=BF16: f32
tensors, bf16 products, for the whole process, so its head step too).
Needs torch or tensorflow-cpu (pip); nothing is downloaded at run time.
"""
import argparse
import json
import time

import numpy as np


def timed(repeats, fn, sync=lambda: None):
    fn()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def torch_bench(batches, repeats, threads, device="cpu", dense=False, bf16=False):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                          nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                          nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                          nn.Linear(4096, 2)).eval().to(dev)
    forward = {}
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad(), autocast:
        for b in batches:
            x = torch.randn(b, 3, 224, 224, device=dev)
            forward[b] = b / timed(repeats, lambda: model(x), sync)
    feats = torch.randn(32, 25088, device=dev)
    labels = torch.randint(0, 2, (32,), device=dev)

    def step_ips(head, steps):
        head = head.to(dev)
        opt = torch.optim.Adam(head.parameters(), lr=1e-4)

        def step():
            opt.zero_grad()
            nn.functional.cross_entropy(head(feats), labels).backward()
            opt.step()

        return 32 / timed(steps, step, sync)

    light = nn.Sequential(nn.Linear(25088, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 2))
    result = {"framework": f"pytorch {torch.__version__}", "threads": threads, "device": str(dev),
              "precision": "bf16 (autocast)" if bf16 else "f32",
              "forward": forward, "head_step_ips": step_ips(light, repeats * 10)}
    if dev.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(dev)
    if dense or dev.type == "cuda":
        torchvision_head = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                                         nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                         nn.Linear(4096, 2))
        result["dense_step_ips"] = step_ips(torchvision_head, repeats * 5)
    return result


def keras_bench(batches, repeats, threads, bf16=False):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if bf16:
        os.environ["ONEDNN_DEFAULT_FPMATH_MODE"] = "BF16"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    base = tf.keras.applications.VGG16(weights=None, include_top=True, classes=2)
    forward = {}
    for b in batches:
        x = np.random.rand(b, 224, 224, 3).astype("float32")
        forward[b] = b / timed(repeats, lambda: base(x, training=False))
    head = tf.keras.Sequential([tf.keras.Input((25088,)), tf.keras.layers.Dense(256, activation="relu"),
                                tf.keras.layers.Dropout(0.5), tf.keras.layers.Dense(2, activation="softmax")])
    head.compile(optimizer=tf.keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    feats = np.random.rand(32, 25088).astype("float32")
    labels = np.random.randint(0, 2, 32)
    return {"framework": f"keras {tf.keras.__version__} / tensorflow {tf.__version__}", "threads": threads,
            "precision": "bf16 (oneDNN fpmath)" if bf16 else "f32", "forward": forward,
            "head_step_ips": 32 / timed(repeats * 10, lambda: head.train_on_batch(feats, labels))}


def keras_end_to_end(photos, limit, epochs, threads):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    names = sorted(n for n in os.listdir(photos) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if len(names) > limit:  # every k-th photo, as vggtune bench does
        step = -(-len(names) // limit)
        names = names[::step]
    labels = np.array([0 if n.split(".")[0] == "cat" else 1 for n in names])
    started = time.perf_counter()
    base = tf.keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    feats = []
    for i in range(0, len(names), 32):
        batch = np.stack([
            tf.keras.utils.img_to_array(tf.keras.utils.load_img(os.path.join(photos, n),
                                                                target_size=(224, 224)))
            for n in names[i:i + 32]])
        batch = tf.keras.applications.vgg16.preprocess_input(batch)
        feats.append(base.predict(batch, batch_size=32, verbose=0).reshape(len(batch), -1))
    feats = np.concatenate(feats)
    feature_secs = time.perf_counter() - started
    head = tf.keras.Sequential([tf.keras.Input((feats.shape[1],)),
                                tf.keras.layers.Dense(256, activation="relu"),
                                tf.keras.layers.Dropout(0.5),
                                tf.keras.layers.Dense(2, activation="softmax")])
    head.compile(optimizer=tf.keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    order = np.random.default_rng(1).permutation(len(names))
    cut = len(names) // 10
    valid, train = order[:cut], order[cut:]
    head.fit(feats[train], labels[train], batch_size=32, epochs=epochs, verbose=0,
             validation_data=(feats[valid], labels[valid]))
    return {"framework": f"keras {tf.keras.__version__} / tensorflow {tf.__version__}",
            "threads": threads, "photos": len(names), "epochs": epochs,
            "feature_secs": feature_secs, "end_to_end_secs": time.perf_counter() - started}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("framework", choices=["torch", "keras"])
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--photos")
    p.add_argument("--photo-limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--device", default="cpu", help="torch only: cpu or cuda")
    p.add_argument("--dense", action="store_true", help="torch: also time torchvision's dense layers")
    p.add_argument("--bf16", action="store_true", help="forward passes in bf16 (autocast / oneDNN)")
    a = p.parse_args()
    if a.photos:
        if a.framework != "keras":
            p.error("--photos: the end-to-end reference is the 2017 course's Keras workflow")
        print(json.dumps(keras_end_to_end(a.photos, a.photo_limit, a.epochs, a.threads)))
        return
    batches = [int(b) for b in a.batches.split(",")]
    if a.framework == "torch":
        print(json.dumps(torch_bench(batches, a.repeats, a.threads, a.device, a.dense, a.bf16)))
    else:
        if a.device != "cpu":
            p.error("--device: the Keras reference is tensorflow-cpu")
        print(json.dumps(keras_bench(batches, a.repeats, a.threads, a.bf16)))


if __name__ == "__main__":
    main()
