"""Boltzmann (the RBM): an energy-based model of the inputs, trained by contrastive divergence.

Learns from the inputs alone. Binary data is binarized afresh each step in the model, and the validation
and test images once, with the seed. A fresh model's visible biases start at the training data's
log-odds (Hinton's practical guide). Each epoch logs the reconstruction error, the stochastic
pseudo-log-likelihood and the free-energy gap on the training batches, the validation and the test split,
and draws the first 100 hidden units' weight filters (samples/epoch_NNN.png, the last as filters.png). A
finished run writes chains.png: Gibbs chains started from noise and from test digits, after 0, 1, 10, 100
and 1,000 steps.

`dlkit evaluate` estimates log Z by annealed importance sampling (Salakhutdinov & Murray, 2008: a base
model with the data's marginals, 14,500 inverse temperatures, `-k` runs, 100 by default) and gives the test
log-likelihood in nats, log p(v) = -F(v) - log Z, with its spread from log Z's +/- 3 standard errors. Two
checks that the estimate is not too optimistic come with it: the same estimate with a tenth of the
temperatures (a large gap means the annealing is too short), and the largest log p(v) of the split, which
must be below 0 (a log Z too small would make some test digit more than certain).
"""

from __future__ import annotations

import math

import numpy as np

from dlkit import images, optim, ui
from dlkit.errors import Problem, UsageError
from dlkit.recipe.schema import OneOptimizerTrain
from dlkit.tasks.base import Callbacks, EvalRequest, FitContext, GenerateRequest, Headline, own_data
from dlkit.tasks.binary import binarize_evaluation_splits, own_images
from dlkit.tasks.fit import FitTask
from dlkit.tasks.generative import in_scale, measures, output_path, run_scale, split_heading, write_images
from dlkit.tasks.reconstruction import inputs_to_encode, save_codes, split_of

UNIT = (np.float32(1 / 255), np.float32(0))  # pictures in [0, 1] to 0..255


def filter_images(kernel: np.ndarray, shape, count: int = 100) -> np.ndarray:
    """The first `count` hidden units' weights as images, each stretched to [0, 1]."""
    w = kernel[:, :count].T
    lo, hi = w.min(1, keepdims=True), w.max(1, keepdims=True)
    return ((w - lo) / np.maximum(hi - lo, 1e-12)).reshape((-1, *shape)).astype(np.float32)


def log_odds(x_train: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of each pixel's mean intensity, p kept within [0.01, 0.99]."""
    p = np.clip((x_train.reshape(len(x_train), -1) / 255.0).mean(0), 0.01, 0.99)
    return np.log(p / (1 - p))


class Boltzmann(FitTask):
    name = "boltzmann"
    options = frozenset({"importance_samples", "n", "data", "out_dir"})
    headlines = (Headline("log_likelihood", "AIS log-likelihood (nats)"),
                 Headline("pseudo_log_likelihood", "pseudo-log-likelihood"))
    summary = "an energy-based model of binary inputs (RBM), trained by contrastive divergence; AIS log-likelihood"
    measures_test_each_epoch = True
    Train = OneOptimizerTrain

    def check(self, recipe) -> list[Problem]:
        if recipe.model.visible == "bernoulli" and recipe.data.scale != "unit":
            return [Problem("data.scale", "Bernoulli visible units model values in [0, 1]; data.scale is "
                            f"{recipe.data.scale!r}", hint="set data.scale: unit (or model.visible: gaussian with "
                            "data.scale: standardize)")]
        return []

    def load_data(self, recipe):
        data = super().load_data(recipe)
        data = binarize_evaluation_splits(data, recipe.seed) if recipe.model.binarize == "dynamic" else data
        # AIS's base model, kept in the run (artifacts/ais_base.json): evaluate --data needs no training data
        data.artifacts["ais_base"] = {"log_odds": log_odds(data.splits.x_train).tolist()}
        return data

    def initialize(self, model, recipe, data, phase):
        if model.visible_kind == "bernoulli":
            model.visible_bias.assign(log_odds(data.splits.x_train).astype("float32"))

    def compile(self, model, recipe, steps_per_epoch, phase):
        model.compile(optimizer=optim.optimizer(recipe.train, steps_per_epoch),
                      **optim.compile_options(recipe.train, steps_per_epoch))
        return model

    def monitor(self, recipe, has_val, phase):
        return None  # no loss to pick a best checkpoint by; `dlkit evaluate` estimates the likelihood

    def callbacks(self, ctx: FitContext) -> Callbacks:
        from dlkit.tasks.sample_grid import EpochGrid, SplitMeasures

        rbm, shape = ctx.model, ctx.data.spec.input_shape
        grid = EpochGrid(ctx.where, lambda: filter_images(rbm.numpy_parameters()[0], shape), 10, UNIT,
                         ctx.where.image("filters.png"), ctx.initial_epoch)
        before = [grid] if len(shape) == 3 else []
        if ctx.data.test is not None:
            before.insert(0, SplitMeasures(ctx.data.test, "test"))
        return Callbacks(before=before, after=super().callbacks(ctx).after)

    def finish(self, ctx: FitContext, callbacks) -> dict:
        data, rbm = ctx.data, ctx.model
        if len(data.spec.input_shape) == 3 and rbm.visible_kind == "bernoulli":
            s = data.splits
            starts = {"noise": np.random.default_rng(ctx.recipe.seed).random((8, rbm.visible)).astype(np.float32),
                      "test": in_scale(next(x for x in (s.x_test, s.x_val, s.x_train) if x is not None)[:8],
                                       data.scale).reshape(-1, rbm.visible)}
            rows = [chain_snapshots(rbm, v) for v in starts.values()]
            pictures = np.concatenate([r.reshape((-1, *data.spec.input_shape)) for r in rows])
            chains = sum(len(v) for v in starts.values())  # a chain a row, its snapshots left to right
            images.save_png(images.grid(images.to_uint8(pictures, UNIT), chains), ctx.run.image("chains.png"))
        if data.test is None:
            return {}
        return {"test": {k: float(v) for k, v in rbm.evaluate(data.test, verbose=0, return_dict=True).items()}}

    # ---------------------------------------------------------------- after training

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        from dlkit.models.rbm_model import ais_log_partition, free_energy_np

        if request.reference is not None:
            raise UsageError("--reference scores generated samples; an RBM is measured by its log-likelihood")
        if model.visible_kind != "bernoulli":
            raise UsageError("the AIS estimate is for Bernoulli visible units; this RBM's are Gaussian")
        # AIS's base model: the training split's pixel rates, as the run kept them (a run trained before it kept
        # them reads its training data again)
        if request.data is None:
            data = data()
            x, _ = split_of(data, request.split)
            measured = {"key": f"{request.split}_ais{request.importance_samples or 100}", "split": request.split}
            scale, base = data.scale, log_odds(data.splits.x_train)
        else:
            x, measured = own_images(run, recipe, request.data)[0], own_data(request.data)
            scale = run_scale(run)
            base = (np.asarray(run.read_artifact("ais_base")["log_odds"]) if run.artifact("ais_base").is_file()
                    else log_odds(data().splits.x_train))
        v = in_scale(x, scale).reshape(len(x), -1).astype(np.float64)
        params = model.numpy_parameters()
        runs = request.importance_samples or 100
        with ui.work(f"log Z by AIS, {runs} runs", 14500 + 1450, " temperatures") as advance:
            ais = ais_log_partition(*params, base, runs=runs, seed=0, advance=advance)
            check = ais_log_partition(*params, base, runs=runs, steps=1450, seed=1, advance=advance)
        log_p = -free_energy_np(v, *params) - ais["log_z"]
        out = {"status": "completed", "task": self.name, "run_dir": str(run.root), **measured,
               "examples": int(len(x)), "log_likelihood": float(log_p.mean()),
               "nll": float(-log_p.mean()),
               # log Z's spread carried over: a larger log Z gives a lower log-likelihood
               "log_likelihood_low": float(log_p.mean() + ais["log_z"] - ais["log_z_high"]),
               "log_likelihood_high": float(log_p.mean() + ais["log_z"] - ais["log_z_low"]),
               "log_z": ais["log_z"], "log_z_low": ais["log_z_low"], "log_z_high": ais["log_z_high"],
               "ais_runs": runs, "ais_steps": ais["steps"], "log_z_tenth_steps": check["log_z"],
               "max_log_p": float(log_p.max())}
        out["warnings"] = [w for w in (
            f"AIS with a tenth of the temperatures gives log Z {check['log_z'] - ais['log_z']:+.2f} nats away: the "
            "annealing may be too short" if abs(check["log_z"] - ais["log_z"]) > 1.0 else None,
            f"an image gets log p = {out['max_log_p']:.2f} > 0: log Z is underestimated"
            if out["max_log_p"] > 0 else None) if w]
        return out

    def report(self, result: dict) -> list:
        from dlkit.ui import fmt

        return measures(result, split_heading(result), [
            ("log-likelihood (nats)", result["log_likelihood"]),
            ("  from log Z +3 / -3 std errors",
             f"{fmt(result['log_likelihood_low'])} .. {fmt(result['log_likelihood_high'])}"),
            ("log Z (AIS)", result["log_z"]),
            ("log Z with a tenth of the temperatures", result["log_z_tenth_steps"]),
            ("AIS runs x temperatures", f"{result['ais_runs']} x {result['ais_steps']}")])

    def encode(self, run, recipe, model, data, request) -> dict:
        x, y, names = inputs_to_encode(run, data, request)
        return save_codes(run, model.predict(x, verbose=0, batch_size=500), y, request, names)

    def exported(self, run, recipe, model):
        raise UsageError(f"{run.root}: an RBM has no forward model to export (it samples by Gibbs steps); its "
                         "weights are in model.keras")

    def generate(self, run, recipe, model, data, request: GenerateRequest) -> dict:
        """n Gibbs chains started from noise (the seed picks it), shown after 1,000 steps."""
        if request.label is not None or request.code is not None or request.interpolate or request.inputs:
            raise UsageError("an RBM draws Gibbs chains from noise (-n, --seed); --label, --code, --interpolate and "
                             "--input do not apply")
        shape = tuple(run.read_json(run.manifest)["data_spec"]["input_shape"])  # the run's own: no data to read
        if len(shape) != 3 or model.visible_kind != "bernoulli":
            raise UsageError("samples are drawn as pictures of binary images only")
        rng = np.random.default_rng(request.seed)
        v = rng.random((request.n, model.visible)).astype(np.float32)
        samples = chain_snapshots(model, v, steps=(1000,), seed=request.seed)
        if request.out_dir is not None:
            return write_images(run, images.to_uint8(samples.reshape((-1, *shape)), UNIT), request.out_dir,
                                seed=request.seed)
        path = output_path(request.out or run.root / f"samples-seed{request.seed}.png", request.force, png=True)
        images.save_png(images.grid(images.to_uint8(samples.reshape((-1, *shape)), UNIT),
                                    max(1, int(math.sqrt(request.n)))), path)
        return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(request.n),
                "seed": request.seed}


def chain_snapshots(rbm, v: np.ndarray, steps=(0, 1, 10, 100, 1000), seed: int = 0) -> np.ndarray:
    """Block Gibbs chains from the visible states `v` (a row each), as the visible means after each of
    `steps` steps: (len(v) * len(steps), visible), chain by chain, in numpy with its own generator. In
    float32: the draws need only probabilities, and float64 took 2.2 times as long (benchmarks/gibbs_speed.py)."""
    from dlkit.models.rbm_model import sigmoid_np as sigmoid

    kernel, b, c = rbm.numpy_parameters(np.float32)
    rng = np.random.default_rng(seed)
    state, done, out = v.astype(np.float32), 0, {}
    mean = state
    for target in sorted(steps):
        for _ in range(target - done):
            h = (rng.random((len(state), kernel.shape[1]), np.float32) < sigmoid(state @ kernel + c)).astype(np.float32)
            mean = sigmoid(h @ kernel.T + b)
            state = (rng.random(mean.shape, np.float32) < mean).astype(np.float32)
        done = target
        out[target] = mean if target else state
    return np.stack([out[s] for s in steps], axis=1).reshape(-1, kernel.shape[0])
