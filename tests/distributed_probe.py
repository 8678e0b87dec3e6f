"""Run in a fresh process by tests/test_distribution.py, on two virtual CPU devices: trains tiny recipes on
one device and data-parallel on two, and prints what the test compares as one JSON line.

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 python distributed_probe.py ROOT [PARTS]
    KERAS_BACKEND=tensorflow python distributed_probe.py ROOT [PARTS]     (two logical CPU devices made here)

PARTS: comma-separated, of mlp (one device against two), uneven (the same, with splits whose last batches the
devices cannot share evenly, two steps a call), resume (a two-device run stopped and resumed),
gan (a DCGAN on one device and two), families (the VAE and the RBM, each with a step of its own, on one device
and two); all by default.

    KERAS_BACKEND=jax KERAS_DISTRIBUTION_JOB_ADDRESSES=127.0.0.1:PORT KERAS_DISTRIBUTION_NUM_PROCESSES=2 \
        KERAS_DISTRIBUTION_PROCESS_ID=I python distributed_probe.py ROOT processes

is one of two processes joined into one run (as `dlkit train --coordinator --processes --process-id` joins
them): it trains the same mlp (stopped after one epoch and resumed) and gan over both processes' devices, and
prints what its run results say.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

TWO = "train.distribution={strategy: data_parallel, devices: 2}"


def history(run_dir: str) -> dict:
    """The run's epochs, and the replicas its manifest says it ran on."""
    rows = list(csv.DictReader(open(Path(run_dir) / "history.csv")))
    out = {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}
    out["replicas"] = json.loads((Path(run_dir) / "manifest.json").read_text())["replicas"]
    return out


def recipes(root: Path) -> tuple[Path, Path]:
    """The tiny classifier and DCGAN recipes the parts train (the DCGAN draws its grid mid-epoch: train.sample_every,
    which on JAX needs the weights put back on the model between steps). The DCGAN's 128 images are four whole
    batches, no test split carved: a run over several processes trains on whole batches only (a short last
    batch would not split between them), so with a short one it would train on other batches than one
    process does."""
    data = Path(__file__).parent / "data"
    mlp = root / "mlp.yaml"
    mlp.write_text(f"""
name: mlp
seed: 3
data: {{dataset: mnist, dir: {data}, limit: 256, test_limit: 64, batch_size: 32, validation_split: 0.125}}
model: {{arch: mlp, hidden: [32]}}
train: {{epochs: 2, optimizer: {{name: sgd, learning_rate: 0.1, momentum: 0.9}}}}
""")
    from dlkit.data import sources

    digits = sources.load_builtin("mnist", str(data), allow_download=False)
    np.savez(root / "d16.npz", x_train=digits.x_train[:128, 6:22, 6:22], y_train=digits.y_train[:128])
    gan = root / "gan.yaml"
    gan.write_text(f"""
name: gan
data: {{dataset: npz, path: {root / 'd16.npz'}, scale: symmetric, validation_split: 0, test_split: 0, batch_size: 32}}
model: {{arch: dcgan, latent_dim: 8, generator: {{filters: [16, 8]}}, discriminator: {{filters: [8, 16]}}}}
train: {{epochs: 2, sample_every: 3}}
""")
    return mlp, gan


def family_recipes(root: Path) -> dict[str, Path]:
    """A tiny VAE and a tiny RBM (persistent chains): steps of dlkit's own that draw noise each step."""
    data = Path(__file__).parent / "data"
    common = f"data: {{dataset: mnist, dir: {data}, limit: 256, test_limit: 64, batch_size: 32, scale: unit}}"
    texts = {"vae": "model: {arch: vae, hidden: [16], latent_dim: 2}\n"
                    "train: {epochs: 1, optimizer: {name: adam, learning_rate: 0.003}}",
             "rbm": "model: {arch: rbm, hidden: 16, persistent: true, chains: 16}\n"
                    "train: {epochs: 1, optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.5}}"}
    paths = {}
    for name, text in texts.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(f"name: {name}\nseed: 5\n{common}\n{text}\n")
    return paths


def processes(root: Path) -> None:
    """One process of a run over several (KERAS_DISTRIBUTION_* say which): every process writes its recipes
    (the same text) into its own folder, and trains into the shared runs root."""
    from dlkit import backend
    from dlkit.training.train import resume, train

    index = int(os.environ["KERAS_DISTRIBUTION_PROCESS_ID"])
    backend.join(backend.cluster())
    own = root / f"recipes-{index}"
    own.mkdir(parents=True, exist_ok=True)
    mlp, gan = recipes(own)
    runs = root / "runs"
    # the mlp's 2 epochs as one epoch, a stop, and a resume: its first epoch trained straight over both
    # processes, its second after the resume (each compared with one process's straight run)
    first = train(mlp, ["train.epochs=1"], runs_root=runs)
    resumed = resume(first["run_dir"], epochs=2)
    g = train(gan, [], runs_root=runs)
    out = {"process": index, "test": resumed["test"], "resumed": history(resumed["run_dir"]),
           "gan": history(g["run_dir"]), "results": [resumed, g]}
    print("PROBE " + json.dumps(out, default=str))


def main(root: Path, parts: set) -> None:
    if parts == {"processes"}:
        return processes(root)
    if os.environ.get("KERAS_BACKEND") == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from dlkit.training.train import resume, train

    mlp, gan = recipes(root) if parts & {"mlp", "resume", "gan", "uneven"} else (None, None)
    runs = root / "runs"
    out = {}
    if "resume" in parts and "mlp" not in parts:
        raise SystemExit("the mlp part is the reference of the resume part")
    if "mlp" in parts:
        one = train(mlp, [], runs_root=runs)
        two = train(mlp, [TWO], runs_root=runs)
        out["mlp"] = {"one": history(one["run_dir"]), "two": history(two["run_dir"]),
                      "test_one": one["test"], "test_two": two["test"],
                      "manifest_two": json.loads((Path(two["run_dir"]) / "manifest.json").read_text())}
    if "uneven" in parts:
        # evaluation splits with a batch the devices cannot share evenly (the validation split's 31, less than one
        # batch; the test split's 63 = 32 + 31), two steps a call; the training split's 256 are whole batches
        uneven = ["data.limit=287", "data.validation_split=0.108", "data.test_limit=63",
                  "train.steps_per_execution=2", "train.epochs=1"]
        one = train(mlp, uneven, runs_root=runs)
        two = train(mlp, [TWO, *uneven], runs_root=runs)
        out["uneven"] = {"one": history(one["run_dir"]), "two": history(two["run_dir"]),
                         "test_one": one["test"], "test_two": two["test"]}
    if "resume" in parts:  # a distributed run stopped after one epoch and resumed: the uninterrupted one's epochs
        first = train(mlp, [TWO, "train.epochs=1"], runs_root=runs)
        out["resumed"] = history(resume(first["run_dir"], epochs=2)["run_dir"])
    if "gan" in parts:
        import keras

        g_one = train(gan, [], runs_root=runs)
        alone = keras.distribution.distribution()  # JAX's is process-wide: the earlier run's must be gone
        g_two = train(gan, [TWO], runs_root=runs)
        out["gan"] = {"one": history(g_one["run_dir"]), "two": history(g_two["run_dir"]),
                      "one_distribution": None if alone is None else type(alone).__name__}
    if "families" in parts:
        for name, path in family_recipes(root).items():
            one, two = train(path, [], runs_root=runs), train(path, [TWO], runs_root=runs)
            out[name] = {"one": history(one["run_dir"]), "two": history(two["run_dir"]),
                         "test_one": one["test"], "test_two": two["test"]}
    print("PROBE " + json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), set((sys.argv[2] if len(sys.argv) > 2 else "mlp,resume,gan,families").split(",")))
