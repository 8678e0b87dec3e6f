"""Variational (the VAE): a latent-variable model of the inputs, trained on the ELBO.

Learns from the inputs alone (labels are kept aside for pictures and the linear probe). With a Bernoulli
decoder and `binarize: dynamic`, training images are binarized afresh at every step, and the validation
and test images once, with the recipe's seed, so that every epoch and every evaluation sees the same
binary test set. Each epoch logs the ELBO, its reconstruction term and the KL term, in nats, on the
training batches, the validation split (val_*) and the test split (test_*); the epoch's grid is samples
from fixed latent vectors.

A finished run writes samples.png, reconstructions.png, interpolation.png (between test digits),
traversals.png (one latent dimension at a time, the most used first) and, for a 2-D latent, manifold.png;
and measures the test split's importance-sampled bound on log p(x) with k = 100 samples per image.
`dlkit evaluate` gives the bound for any k (`-k`; 1,000 or more for a headline figure) in nats and bits per
dimension, and with `--reference` scores samples as for the GANs (against the split's images, or with --data
against one's own).
"""

from __future__ import annotations

import math

import numpy as np

from dlkit import images, optim, ui
from dlkit.errors import Problem, UsageError
from dlkit.recipe.schema import OneOptimizerTrain
from dlkit.tasks.base import EVAL_SAMPLES, Callbacks, EvalRequest, FitContext, GenerateRequest, Headline, own_data
from dlkit.tasks.binary import binarize_evaluation_splits
from dlkit.tasks.fit import FitTask
from dlkit.tasks.generative import (diversity, in_scale, measures, output_path, own_halves, present, reals_beside,
                                   run_scale, samples_key, split_heading, write_images)
from dlkit.tasks.reconstruction import codes_2d, inputs_to_encode, linear_probe, save_codes, split_of

FINISH_K = 100  # importance samples for the figure a finished run records (evaluate takes any k)


class Variational(FitTask):
    name = "variational"
    options = frozenset({"importance_samples", "n", "samples", "data", "out_dir"})
    headlines = (Headline("nll", "NLL (nats)", "min"),)
    summary = "a latent-variable model of the inputs (VAE); ELBO and importance-sampled log-likelihood in nats"
    measures_test_each_epoch = True
    Train = OneOptimizerTrain

    def check(self, recipe) -> list[Problem]:
        if recipe.model.likelihood == "bernoulli" and recipe.data.scale != "unit":
            return [Problem("data.scale", "a Bernoulli decoder models values in [0, 1]; data.scale is "
                            f"{recipe.data.scale!r}", hint="set data.scale: unit, or model.likelihood: gaussian")]
        return []

    def load_data(self, recipe):
        data = super().load_data(recipe)
        return binarize_evaluation_splits(data, recipe.seed) if recipe.model.binarize == "dynamic" else data

    def compile(self, model, recipe, steps_per_epoch, phase):
        model.warmup_steps = round(recipe.model.kl_warmup_epochs * steps_per_epoch)
        model.compile(optimizer=optim.optimizer(recipe.train, steps_per_epoch),
                      **optim.compile_options(recipe.train, steps_per_epoch))
        return model

    def callbacks(self, ctx: FitContext) -> Callbacks:
        from dlkit.tasks.sample_grid import EpochGrid, SplitMeasures

        vae = ctx.model
        z = np.random.default_rng(ctx.recipe.seed).standard_normal((64, vae.latent_dim)).astype(np.float32)
        before = [EpochGrid(ctx.where, lambda: vae.sample(z), 8, ctx.data.scale, ctx.where.image("samples.png"),
                            ctx.initial_epoch)]
        if ctx.data.test is not None:
            before.insert(0, SplitMeasures(ctx.data.test, "test"))
        return Callbacks(before=before, after=super().callbacks(ctx).after)

    def finish(self, ctx: FitContext, callbacks) -> dict:
        data, vae, run = ctx.data, ctx.model, ctx.run
        pictures(run, vae, data, ctx.recipe.seed)
        if data.test is None:
            return {}
        test = {k: float(v) for k, v in vae.evaluate(data.test, verbose=0, return_dict=True).items()}
        x = in_scale(data.splits.x_test, data.scale)
        test.update(likelihood(vae, x, FINISH_K, seed=0))
        return {"test": test}

    # ---------------------------------------------------------------- after training

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.samples is not None and request.reference is None:
            raise UsageError("-n/--samples counts the samples --reference measures; without --reference a VAE "
                             "measures the split's likelihood, with -k importance samples per example")
        if request.data is not None:
            return self._measure_on(run, recipe, model, request)
        data = data()
        x, y = split_of(data, request.split)
        xs = in_scale(x, data.scale)
        out = {"status": "completed", "task": self.name, "run_dir": str(run.root), "split": request.split,
               "examples": int(len(x))}
        out.update({k: float(v) for k, v in model.evaluate(xs, verbose=0, batch_size=500, return_dict=True).items()})
        k = request.importance_samples or 1000
        out.update(likelihood(model, xs, k, seed=0))
        if data.spec.num_classes > 1 and y is not None:
            train_codes = model.codes(in_scale(data.splits.x_train, data.scale))
            out["probe_accuracy"] = linear_probe(train_codes, data.splits.y_train, model.codes(xs), y)
        out["key"] = f"{request.split}_k{k}"
        if request.reference is None:
            return out
        n = request.samples or EVAL_SAMPLES
        real, other = reals_beside(data.splits, x, n)
        out.update(samples_against(model, data.scale, real, other, request, n),
                   key=samples_key("reference", request.split))
        return out

    def _measure_on(self, run, recipe, model, request: EvalRequest) -> dict:
        """evaluate --data: images of one's own (read as `encode` and `predict` read them) measured as the test
        split is: a model of binarized images reads them binarized once with the test split's draw, the ELBO and
        its terms, and the importance-sampled bound on log p(x) with -k samples each (no linear probe: there are
        no labels); with --reference, samples measured against the images as read (own_halves)."""
        from dlkit.tasks.binary import as_tested, own_images

        scale = run_scale(run)
        read = own_images(run, recipe, request.data, as_read=True)[0]
        xs = in_scale(as_tested(recipe, read), scale)
        out = {"status": "completed", "task": self.name, "run_dir": str(run.root), **own_data(request.data),
               "examples": int(len(xs))}
        out.update({k: float(v) for k, v in model.evaluate(xs, verbose=0, batch_size=500, return_dict=True).items()})
        out.update(likelihood(model, xs, request.importance_samples or 1000, seed=0))
        if request.reference is not None:
            # samples (the decoder's means, gray) against your images as read, not binarized: half of them, the
            # other half the floor
            n = request.samples or min(EVAL_SAMPLES, max(1, len(read) // 2))
            out.update(samples_against(model, scale, *own_halves(read, n), request, n))
        return out

    def report(self, result: dict) -> list:
        return measures(result, split_heading(result), present(result, (
            ("nll", "negative log-likelihood (nats)"), ("bits_per_dim", "bits per dimension"),
            ("importance_samples", "importance samples k"), ("elbo", "ELBO (nats)"),
            ("reconstruction", "reconstruction (nats)"), ("kl", "KL (nats)"),
            ("probe_accuracy", "linear probe accuracy"), ("frechet_distance", "Fréchet distance"),
            ("real_frechet_distance", "real-vs-real Fréchet distance"),
            ("classifier_score", "classifier score"), ("class_coverage", "class coverage"))))

    def encode(self, run, recipe, model, data, request) -> dict:
        x, y, names = inputs_to_encode(run, data, request)
        return save_codes(run, model.codes(x), y, request, names)

    def exported(self, run, recipe, model):
        return model.decoder, "the decoder (latent codes to images)"

    def generate(self, run, recipe, model, data, request: GenerateRequest) -> dict:
        """n samples from the prior (the seed picks them), or with --interpolate a strip between two test
        images (picked by the seed)."""
        if request.label is not None or request.code is not None or request.inputs:
            raise UsageError("a VAE draws from its prior (-n, --seed) or interpolates between test images "
                             "(--interpolate); --label, --code and --input do not apply")
        scale, rng = run_scale(run), np.random.default_rng(request.seed)
        if request.interpolate:
            s = data().splits
            pool = s.x_test if s.x_test is not None else s.x_train
            ends = model.codes(in_scale(pool[rng.choice(len(pool), 2, replace=False)], scale))
            t = np.linspace(0, 1, request.n, dtype=np.float32)[:, None]
            pictures_, what = model.sample((1 - t) * ends[0] + t * ends[1]), "interpolation"
            rows = images.strip_rows(request.n)
        else:
            z = rng.standard_normal((request.n, model.latent_dim)).astype(np.float32)
            pictures_, rows, what = model.sample(z), max(1, int(math.sqrt(request.n))), "samples"
        if request.out_dir is not None:
            return write_images(run, images.to_uint8(pictures_, scale), request.out_dir, seed=request.seed,
                                interpolate=request.interpolate)
        path = output_path(request.out or run.root / f"{what}-seed{request.seed}.png", request.force, png=True)
        images.save_png(images.grid(images.to_uint8(pictures_, scale), rows), path)
        return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(request.n),
                "seed": request.seed, "interpolate": request.interpolate}


def samples_against(vae, scale, real: np.ndarray, other: np.ndarray, request: EvalRequest, n: int) -> dict:
    """n samples from the prior (the same draw each time) measured by the reference classifier against `real`
    uint8 images, `other` ones (none of them in `real`) giving the real-vs-real floor; and their diversity."""
    from dlkit.tasks.reference import Reference

    rng = np.random.default_rng(0)
    fake = images.to_uint8(vae.sample(rng.standard_normal((n, vae.latent_dim)).astype(np.float32)), scale)
    measured, _ = Reference(request.reference, request.unsafe).sample_quality(fake, real, other)
    return {**measured, "samples": int(n), "real_examples": int(len(real)),
            "diversity": diversity(in_scale(fake, scale), in_scale(real, scale))}


def likelihood(vae, x: np.ndarray, k: int, seed: int) -> dict:
    """The importance-sampled bound on log p(x), as a negative log-likelihood in nats and in bits per
    dimension, averaged over the examples."""
    with ui.work(f"log p(x) by importance sampling, k={k:,}", len(x), " examples") as advance:
        bound = vae.importance_bound(x, k, seed=seed, advance=advance)
    nll = float(-bound.mean())
    dims = int(np.prod(x.shape[1:]))
    return {"nll": nll, "nll_std_error": float(bound.std(ddof=1) / math.sqrt(len(bound))) if len(bound) > 1 else 0.0,
            "bits_per_dim": nll / (dims * math.log(2)), "importance_samples": int(k)}


def pictures(run, vae, data, seed: int) -> None:
    """samples.png is the last epoch's grid; here: reconstructions, an interpolation, latent traversals and,
    for a 2-D latent, the manifold. Their latent points go through the decoder together, in one pass (on
    JAX each new shape run op by op compiles every op anew)."""
    s, scale = data.splits, data.scale
    pool = next(x for x in (s.x_test, s.x_val, s.x_train) if x is not None)
    rng = np.random.default_rng(seed)
    x = in_scale(pool[rng.choice(len(pool), min(8, len(pool)), replace=False)], scale)
    save = lambda pics, rows, name: images.save_png(images.grid(images.to_uint8(pics, scale), rows),  # noqa: E731
                                                     run.image(name))
    import keras

    codes, log_var = (keras.ops.convert_to_numpy(v) for v in vae.posterior(x))  # codes: the posterior means
    t = np.linspace(0, 1, 10, dtype=np.float32)[:, None]
    pairs = [(codes[i], codes[i + 1]) for i in range(0, min(len(codes) - 1, 8), 2)]
    # the dimensions the encoder uses most (largest mean KL over these images) varied from -3 to 3, one a row
    used = np.argsort(-(0.5 * (np.exp(log_var) + codes ** 2 - 1 - log_var)).mean(0))[:min(8, vae.latent_dim)]
    traversals = []
    for d in used:
        z = np.repeat(codes[:1], 9, axis=0)
        z[:, d] = np.linspace(-3, 3, 9, dtype=np.float32)
        traversals.append(z)
    interpolations = [(1 - t) * a + t * b for a, b in pairs]
    # (file, its latent blocks, its rows): the reconstructions at the posterior means, under their inputs
    figures = [("reconstructions.png", [codes], 2), ("interpolation.png", interpolations, len(interpolations)),
               ("traversals.png", traversals, len(traversals))]
    if vae.latent_dim == 2:  # Kingma & Welling's figure: the prior's quantiles, a grid over the plane
        from scipy.stats import norm

        q = norm.ppf(np.linspace(0.05, 0.95, 15)).astype(np.float32)
        figures.append(("manifold.png", [np.stack(np.meshgrid(q, q[::-1]), -1).reshape(-1, 2)], 15))
    figures = [f for f in figures if f[1]]
    blocks = [z for _, zs, _ in figures for z in zs]
    decoded = vae.sample(np.concatenate(blocks).astype(np.float32))
    parts = iter(np.split(decoded, np.cumsum([len(z) for z in blocks])[:-1]))
    for name, zs, rows in figures:
        drawn = np.concatenate([next(parts) for _ in zs])
        save(np.concatenate([x, drawn]) if name == "reconstructions.png" else drawn, rows, name)
    from dlkit import plots

    if s.y_test is not None and s.x_test is not None:
        test_codes = vae.codes(in_scale(s.x_test, scale))
        labels = s.y_test if data.spec.num_classes > 1 else None  # unlabelled data: one colour
        plots.scatter(codes_2d(test_codes), labels, data.spec.class_names, run.image("codes.png"),
                      "test codes (posterior means)", "code" if vae.latent_dim <= 2 else "principal component")
