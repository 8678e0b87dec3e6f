"""The attention lesson as one figure: test BLEU by source length of translation runs side by side
(seq2seq_fra_eng without attention, attention_bahdanau_fra_eng, attention_luong_fra_eng), and a table of
their corpus BLEU (beam and greedy), chrF and parameter counts, from each run's metrics.json.

    python benchmarks/attention_lengths.py RUN_DIR... [--out docs/images/attention_lengths.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/images/attention_lengths.png"))
    args = ap.parse_args()

    from dlkit import plots

    curves = {}
    print("| recipe | parameters | BLEU (beam) | BLEU (greedy) | chrF | longest bucket BLEU |")
    print("| --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        metrics = json.loads((run / "metrics.json").read_text())
        test = metrics["test"]
        buckets = {k: v["bleu"] for k, v in test["bleu_by_length"].items()}
        curves[metrics["name"]] = buckets
        longest = list(test["bleu_by_length"].items())[-1]
        print(f"| {metrics['name']} | {metrics['params']:,} | {test['bleu']:.2f} | {test.get('greedy_bleu', float('nan')):.2f} "
              f"| {test['chrf']:.2f} | {longest[1]['bleu']:.2f} ({longest[0]} words, {longest[1]['sentences']} sentences) |")
    print(f"\nsignature: {test['signature']['bleu']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plots.bleu_by_length(curves, args.out, "test BLEU by source length (Tatoeba English -> French)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
