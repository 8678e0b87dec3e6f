"""How fast a translation recipe's model decodes: greedy and beam search over random sources, timed.

The recipe's model is built at its own sizes (vocabularies, widths, lengths as given here) with its initial
weights, no data read: decoding costs the same whatever the weights say, up to when sentences end, so every
hypothesis is made to run the full target length (the end token is forbidden). Prints one JSON object.

    python benchmarks/decode_speed.py recipes/transformer_fra_eng.yaml [--sentences 128] [--beam 5]
    PYTHONPATH=<a worktree of another commit> python benchmarks/decode_speed.py ...   # the same at that commit

With `--out FILE.jsonl` the line is appended there with the commit of the dlkit it imported, the command and
the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe")
    ap.add_argument("--sentences", type=int, default=128)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--source-length", type=int, default=32)
    ap.add_argument("--target-length", type=int, default=32)
    ap.add_argument("--vocabulary", type=int, default=8000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", help="append the result, with commit, command and machine, to this .jsonl")
    args = ap.parse_args()

    import keras

    from dlkit import tasks
    from dlkit.data.spec import DataSpec
    from dlkit.models import decoding
    from dlkit.tasks import text_translation

    recipe = tasks.load_recipe(args.recipe)
    spec = DataSpec(input_shape=(args.source_length,), modality="tokens", vocabulary_size=args.vocabulary,
                    source_vocabulary_size=args.vocabulary, target_shape=(args.source_length, args.target_length))
    task = tasks.of(recipe)
    keras.utils.set_random_seed(0)
    model = task.build(recipe, spec, task.phases(recipe)[0], {})
    arch = text_translation.architecture(recipe.model.arch)
    encoder, step = arch.inference(model, recipe.model)
    stepper = decoding.Stepper(encoder, step, arch.step_weights(recipe.model))
    rng = np.random.default_rng(0)
    sources = np.zeros((args.sentences, args.source_length), np.int32)
    for i, n in enumerate(rng.integers(4, args.source_length, args.sentences)):
        sources[i, :n] = rng.integers(4, args.vocabulary, n)
    decoding_end = decoding.END
    out = {"recipe": args.recipe, "sentences": args.sentences, "source_length": args.source_length,
           "target_length": args.target_length, "params": model.count_params(), "backend": keras.backend.backend()}
    original = decoding.log_softmax

    def no_end(logits):  # every hypothesis runs the whole target length: the worst case, the same everywhere
        lp = original(logits)
        lp[..., decoding_end] = -np.inf
        return lp

    decoding.log_softmax = no_end
    stepper.decode(sources[: stepper.rows], args.target_length, 1)  # compile both shapes outside the timing
    stepper.decode(sources[: stepper.rows], args.target_length, args.beam)
    for name, width in (("greedy", 1), (f"beam{args.beam}", args.beam)):
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            stepper.decode(sources, args.target_length, width)
            times.append(time.perf_counter() - t0)
        out[f"{name}_s"] = round(min(times), 3)
        out[f"{name}_sentences_per_s"] = round(args.sentences / min(times), 1)
    if args.out:
        import dlkit

        sys.path.insert(0, str(Path(__file__).parent))
        from record import commit, machine

        line = {"commit": commit(Path(dlkit.__file__).resolve().parents[1]),
                "command": "python benchmarks/decode_speed.py " + " ".join(sys.argv[1:]), "machine": machine(),
                "date": time.strftime("%Y-%m-%d %H:%M"), "result": out}
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
