"""The same work as `vggtune bench`, in PyTorch or Keras/TensorFlow on the CPU, for A/B comparison.

usage: python bench/reference.py torch|keras [--batches 1,8,32] [--repeats 2] [--threads 2]
Prints one JSON object: forward images/s per batch size at 224x224 (VGG16, random weights), and
images/s of a training step of the 2017 course's light head (25088 -> 256 -> 2, Adam) on
cached features, batch 32. Needs torch or tensorflow-cpu (pip); nothing is downloaded at run time.
"""
import argparse
import json
import time

import numpy as np


def timed(repeats, fn):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def torch_bench(batches, repeats, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
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
                          nn.Linear(4096, 2)).eval()
    forward = {}
    with torch.no_grad():
        for b in batches:
            x = torch.randn(b, 3, 224, 224)
            forward[b] = b / timed(repeats, lambda: model(x))
    head = nn.Sequential(nn.Linear(25088, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 2))
    opt = torch.optim.Adam(head.parameters(), lr=1e-4)
    feats, labels = torch.randn(32, 25088), torch.randint(0, 2, (32,))

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(head(feats), labels).backward()
        opt.step()

    return {"framework": f"pytorch {torch.__version__}", "threads": threads,
            "forward": forward, "head_step_ips": 32 / timed(repeats * 10, step)}


def keras_bench(batches, repeats, threads):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
            "forward": forward,
            "head_step_ips": 32 / timed(repeats * 10, lambda: head.train_on_batch(feats, labels))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("framework", choices=["torch", "keras"])
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    run = torch_bench if a.framework == "torch" else keras_bench
    print(json.dumps(run(batches, a.repeats, a.threads)))


if __name__ == "__main__":
    main()
