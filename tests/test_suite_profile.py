"""benchmarks/suite_profile.py: py-spy's raw stacks summed by category, by process and by test module."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import suite_profile  # noqa: E402

WORKER = 'process 1:".venv/bin/python -m pytest -q";process 2:"/v/bin/python -u -c import sys;exec(eval(sys.stdin.readline()))"'
CLI = 'process 1:".venv/bin/python -m pytest -q";process 3:"/v/bin/python -m dlkit.cli train r.yaml --json"'


def test_stacks_are_summed_by_category_process_and_test_module(tmp_path):
    raw = tmp_path / "stacks.txt"
    raw.write_text("\n".join([
        f"{WORKER};test_x (test_gan.py:10);train (dlkit/training/train.py:37);_finish (dlkit/training/train.py:400);"
        "learning_curves (dlkit/plots.py:19);Figure.savefig (matplotlib/figure.py:3360) 8",
        f"{WORKER};test_y (test_rbm.py:5);trace_function (tensorflow/python/eager/polymorphic_function/x.py:144) 4",
        f"{CLI};<module> (dlkit/cli.py:1);_find_and_load (<frozen importlib._bootstrap>:1165);"
        "<module> (tensorflow/__init__.py:1) 6",
        "a line py-spy cut short",
        f"{CLI};main (dlkit/cli.py:700) 2",
    ]) + "\n")
    s = suite_profile.summarize(raw, rate=2.0)
    assert s["samples"] == 20 and s["sampled_s"] == 10.0
    cats = s["categories"]
    assert cats["learning curves"]["s"] == cats["figures (matplotlib savefig)"]["s"] == 4.0  # overlapping
    assert cats["a run's finish (test measures, pictures)"]["share"] == 0.4
    assert cats["import tensorflow"]["s"] == cats["imports (all modules)"]["s"] == 3.0
    assert cats["TensorFlow tracing (tf.function)"]["s"] == 2.0 and cats["XLA compiling (JAX)"]["s"] == 0.0
    assert s["processes"] == {"pytest workers": 6.0, "dlkit commands started by tests": 4.0}
    assert s["test_modules_in_workers"] == {"test_gan.py": 4.0, "test_rbm.py": 2.0}
