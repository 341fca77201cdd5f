"""The seed autoencoder in Keras 3 + TensorFlow-CPU, layer for layer, for throughput comparisons only.

Runs under a separate environment (``python3 -m venv .venv-keras && .venv-keras/bin/pip install tensorflow-cpu
keras numpy``), never imported by autocolor. Two ways to use it:

* one shot: ``.venv-keras/bin/python benchmarks/keras_seed.py --mode train --steps 20`` prints one JSON line;
* server (what the benchmark drivers use, so that Keras and PyTorch rounds can be interleaved without paying
  TensorFlow's start-up each round): ``--serve`` reads commands ``train STEPS`` / ``infer STEPS`` / ``quit`` on
  stdin and answers each with one JSON line ``{"mode", "batch", "images", "seconds", "cpu_seconds", "images_per_s",
  "images_per_cpu_s"}`` (CPU seconds: all threads of the process).

Data: random grey inputs (N, 32, 32, 1) in [0, 1] and random RGB targets, as float32 arrays in memory.
Training: ``model.train_on_batch`` (Adam, MSE, the Keras original's objective). Inference: the model called in a
``tf.function`` on one batch at a time (faster than ``model.predict``'s per-call overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def build_seed(keras):
    """Conv/BN/ReLU/MaxPool x3 (64, 128, 256), ConvTranspose/BN/ReLU/UpSampling x3 (256, 128, 64), 3x3 sigmoid head."""
    layers = keras.layers
    x = inp = keras.Input((32, 32, 1))
    for width in (64, 128, 256):
        x = layers.Conv2D(width, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    for width in (256, 128, 64):
        x = layers.Conv2DTranspose(width, 3, strides=1, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.UpSampling2D(2)(x)
    out = layers.Conv2D(3, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inp, out, name="seed")


class Bench:
    """Model, optimizer and data, built once; ``train(steps)`` / ``infer(steps)`` time whole batches."""

    def __init__(self, batch: int, threads: int) -> None:
        import numpy as np
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        import keras

        self.tf, self.batch = tf, batch
        keras.utils.set_random_seed(0)
        self.model = build_seed(keras)
        self.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        rng = np.random.default_rng(0)
        self.x = rng.random((batch, 32, 32, 1), dtype=np.float32)
        self.y = rng.random((batch, 32, 32, 3), dtype=np.float32)
        self.xt = tf.constant(self.x)
        self._infer = tf.function(lambda x: self.model(x, training=False))
        self.params = int(self.model.count_params())
        self.train(2)  # build the graphs before anything is timed
        self.infer(2)

    def train(self, steps: int) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            loss = self.model.train_on_batch(self.x, self.y)
        return self._result("train", steps, t0, c0, loss=float(loss))

    def infer(self, steps: int) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            out = self._infer(self.xt)
        out.numpy()
        return self._result("infer", steps, t0, c0)

    def _result(self, mode: str, steps: int, t0: float, c0: float, **extra) -> dict:
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        images = steps * self.batch
        return {"mode": mode, "batch": self.batch, "images": images, "seconds": seconds, "cpu_seconds": cpu,
                "images_per_s": images / seconds, "images_per_cpu_s": images / max(cpu, 1e-9), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: TensorFlow's default)")
    ap.add_argument("--serve", action="store_true", help="answer 'train N' / 'infer N' / 'quit' lines on stdin")
    args = ap.parse_args()
    bench = Bench(args.batch, args.threads)
    import keras
    import tensorflow as tf

    hello = {"ready": True, "keras": keras.__version__, "tensorflow": tf.__version__, "params": bench.params}
    print(json.dumps(hello), flush=True)
    if not args.serve:
        print(json.dumps(getattr(bench, args.mode)(args.steps)), flush=True)
        return
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        print(json.dumps(getattr(bench, cmd[0])(int(cmd[1]))), flush=True)


if __name__ == "__main__":
    main()
