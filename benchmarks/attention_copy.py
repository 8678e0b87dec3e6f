"""The attention claim on data where the answer is known: copy a random token sequence (3 to 8 tokens of
16) through dlkit's seq2seq, with attention none, bahdanau and luong, the same size, data and budget.
Without attention the decoder sees the source only through the encoder's last state; with it, it can read
each source token when it writes it back. Prints and records the validation loss (nats/token, teacher
forced) after each epoch and the exact-copy rate of greedy decoding.

    python benchmarks/attention_copy.py [--epochs 3] [--out benchmarks/results/attention_copy.jsonl]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

V, S = 20, 8  # vocabulary (ids 0-3 are PAD, UNK, START, END) and longest sequence


def pairs(n: int, rng) -> tuple:
    lengths = rng.integers(3, S + 1, n)
    src, t_in, t_out = (np.zeros((n, S + (k > 0)), "int32") for k in range(3))
    for i, length in enumerate(lengths):
        tokens = rng.integers(4, V, length)
        src[i, :length] = tokens
        t_in[i, 0], t_in[i, 1:length + 1] = 2, tokens
        t_out[i, :length], t_out[i, length] = tokens, 3
    return (src, t_in), t_out


def run(attention: str, epochs: int, seed: int) -> dict:
    import keras

    from dlkit.models import decoding, seq2seq

    keras.utils.set_random_seed(seed)
    cfg = seq2seq.Config(arch="seq2seq", cell="gru", units=[64], embedding_dim=32, attention=attention)
    model = seq2seq.build(cfg, SimpleNamespace(target_shape=(S, S + 1), source_vocabulary_size=V, vocabulary_size=V))
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0))
    rng = np.random.default_rng(seed)
    (x, y), (xv, yv) = pairs(20000, rng), pairs(1000, rng)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=64, epochs=epochs, validation_data=(xv, yv), verbose=0).history
    seconds = time.perf_counter() - start
    stepper = decoding.Stepper(*seq2seq.inference(model, cfg), seq2seq.step_weights(cfg))
    written = stepper.decode(xv[0], S + 1).tokens  # greedy: each row the copy, [END], then padding
    exact = float(np.mean([list(w) == list(t) for w, t in zip(written, yv)]))
    return {"attention": attention, "val_loss": [round(v, 4) for v in history["val_loss"]], "exact_copies": exact,
            "fit_s": round(seconds, 1)}


def main():
    from record import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attention_copy.jsonl"))
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    results = [run(a, args.epochs, args.seed) for a in ("none", "bahdanau", "luong")]
    line = {"commit": commit, "command": "python benchmarks/attention_copy.py " + " ".join(sys.argv[1:]),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "results": results}
    for r in results:
        print(f"{r['attention']:9s} val loss by epoch {r['val_loss']}  exact copies {r['exact_copies']:.1%}  "
              f"({r['fit_s']} s)")
    with open(args.out, "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
