"""The baseline for `make bench`: recipes/cnn_mnist.yaml written by hand in plain Keras, no dlkit.

Same data (the MNIST IDX files, the same 54,000/6,000 train/validation split), same model, optimizer,
schedule and batch size. Prints one JSON line with the fit() wall time.

    python benchmarks/plain_keras_cnn_mnist.py DATA_DIR [EPOCHS]
"""

import json
import sys
import time

import numpy as np
from plain_data import read_idx


def main():
    import keras

    folder, epochs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    keras.utils.set_random_seed(42)
    x = read_idx(f"{folder}/train-images-idx3-ubyte.gz")[..., None].astype("float32") / 255.0
    y = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
    order = np.random.default_rng(42).permutation(len(x))
    x_train, y_train, x_val, y_val = x[order[:-6000]], y[order[:-6000]], x[order[-6000:]], y[order[-6000:]]

    def conv(h, filters):
        h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(h)
        h = keras.layers.BatchNormalization()(h)
        return keras.layers.Activation("relu")(h)

    inputs = keras.Input((28, 28, 1))
    h = conv(conv(inputs, 32), 32)
    h = keras.layers.MaxPooling2D()(h)
    h = conv(conv(h, 64), 64)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Dropout(0.25)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(128, use_bias=False, kernel_initializer="he_normal")(h)  # the recipe's batch_norm:
    h = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(h))      # before applies here too
    h = keras.layers.Dropout(0.4)(h)
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer="he_normal")(h)
    model = keras.Model(inputs, outputs)

    steps = -(-len(x_train) // 128)
    warmup = round(0.5 * steps)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps * epochs - warmup, warmup_target=0.002,
                                                      warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start, cpu_start = time.perf_counter(), time.process_time()
    history = model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_data=(x_val, y_val), verbose=0)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"fit_time_s": seconds, "fit_cpu_time_s": cpu_seconds, "params": model.count_params(),
                      "val_accuracy": history.history["val_accuracy"][-1]}))


if __name__ == "__main__":
    main()
