"""One side of the speed comparison (benchmarks/gpu_bench.sh; on CPU, the throughput-by-batch table of
docs/benchmarks.md): training throughput of `dlkit train` against the same model written by hand in plain
Keras, on MNIST held in memory, each in its own process.

    python benchmarks/throughput.py plain|dlkit cnn|fast DATA_DIR BATCH [EPOCHS] [--set key=value ...]

cnn is recipes/cnn_mnist.yaml (54,000 images to train on, 6,000 validated every epoch), fast is
recipes/cnn_mnist_fast.yaml (60,000, no validation; the test accuracy is reported, for the 99% race). The
first epoch holds the compilation; throughput is the training images of an epoch over the median time of
the later ones (validation, and dlkit's checkpoint and history, included: what an epoch costs). Prints one
JSON line. `--set` goes to dlkit only (e.g. train.precision=mixed_bfloat16; the plain side takes the same
PRECISION from the environment).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from plain_data import read_idx

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"cnn": "recipes/cnn_mnist.yaml", "fast": "recipes/cnn_mnist_fast.yaml"}


def plain(workload, folder, batch, epochs):
    import keras

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(os.environ.get("PRECISION", "float32"))
    x = read_idx(f"{folder}/train-images-idx3-ubyte.gz")[..., None].astype("float32") / 255.0
    y = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
    x_test = read_idx(f"{folder}/t10k-images-idx3-ubyte.gz")[..., None].astype("float32") / 255.0
    y_test = read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz")
    order = np.random.default_rng(0).permutation(len(x))
    held = len(x) // 10 if workload == "cnn" else 0  # the recipe's validation_split: 0.1
    x_train, y_train = x[order[held:]], y[order[held:]]
    validation = (x[order[:held]], y[order[:held]]) if held else None

    def conv(h, filters):  # batch_norm: before, as the recipes have it
        h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(h)
        return keras.layers.Activation("relu")(keras.layers.BatchNormalization()(h))

    inputs = keras.Input((28, 28, 1))
    if workload == "cnn":
        h = keras.layers.MaxPooling2D()(conv(conv(inputs, 32), 32))
        h = keras.layers.Dropout(0.25)(keras.layers.MaxPooling2D()(conv(conv(h, 64), 64)))
        h = keras.layers.Dense(128, use_bias=False, kernel_initializer="he_normal")(keras.layers.Flatten()(h))
        h = keras.layers.Dropout(0.4)(keras.layers.Activation("relu")(keras.layers.BatchNormalization()(h)))
        peak, warm, floor = 0.002, 0.5, 0.0
    else:
        h = inputs
        for filters in (32, 64, 128):
            h = keras.layers.MaxPooling2D()(conv(h, filters))
        h = keras.layers.GlobalAveragePooling2D()(h)
        peak, warm, floor = 0.01, 0.3, 0.01
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer="he_normal", dtype="float32")(h)
    model = keras.Model(inputs, outputs)
    steps = -(-len(x_train) // batch)
    warmup = round(warm * steps)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps * epochs - warmup, alpha=floor, warmup_target=peak,
                                                      warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    clock = Clock()
    model.fit(x_train, y_train, batch_size=batch, epochs=epochs, validation_data=validation, callbacks=[clock],
              verbose=0)
    accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1] if workload == "fast" else None
    return len(x_train), clock.seconds, accuracy, model.count_params()


def dlkit(workload, folder, batch, epochs, overrides):
    sets = [f"data.batch_size={batch}", f"train.epochs={epochs}", f"data.dir={Path(folder).parent}", *overrides]
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "dlkit.cli", "train", RECIPES[workload], "--json", "-q", "--runs-root", runs]
        for s in sets:
            cmd += ["--set", s]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"dlkit train failed ({out.returncode}): {out.stderr[-3000:]}")
        r = json.loads(out.stdout)
        n = json.loads((Path(r["run_dir"]) / "manifest.json").read_text())["data_spec"]["num_train"]
    return n, r["epoch_seconds"], (r.get("test") or {}).get("accuracy") if workload == "fast" else None, r["params"]


def main():
    args = [a for a in sys.argv[1:] if a != "--set"]
    side, workload, folder, batch = args[0], args[1], str(Path(args[2]).resolve()), int(args[3])
    epochs = int(args[4]) if len(args) > 4 and "=" not in args[4] else 3
    overrides = [a for a in args[4:] if "=" in a]
    if side == "plain":
        n, seconds, accuracy, params = plain(workload, folder, batch, epochs)
    else:
        n, seconds, accuracy, params = dlkit(workload, folder, batch, epochs, overrides)
    later = seconds[1:] or seconds
    print(json.dumps({"side": side, "workload": workload, "batch": batch, "epochs": epochs, "params": params,
                      "epoch_seconds": [round(s, 4) for s in seconds],
                      "images_per_s": round(n / statistics.median(later), 1),
                      "training_s_after_compile": round(sum(seconds[1:]) + statistics.median(later), 3),
                      "test_accuracy": accuracy, "sets": overrides}))


if __name__ == "__main__":
    main()
