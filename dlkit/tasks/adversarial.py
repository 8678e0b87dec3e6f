"""Adversarial image generation (dcgan, cgan, wgan, wgan_gp, infogan, stackgan): a generator against a
discriminator, each with its own optimizer.

Learns from (images, labels) batches (labels feed conditional models); nothing is validated during fit.
Each epoch writes a fixed-noise sample grid and logs a diversity statistic; the run ends with samples.png
and progress.gif. `dlkit evaluate` measures samples (diversity, and with --reference a classifier's
Fréchet distance, classifier score, coverage, label or code accuracy) against the test split's images, or
with --data against images of one's own; `dlkit generate` draws grids and latent interpolations.
"""

from __future__ import annotations

import numpy as np

from dlkit import images, metrics
from dlkit.errors import UsageError
from dlkit.models.gan import grid_layout, latent_inputs
from dlkit.tasks.base import EVAL_SAMPLES, Callbacks, EvalRequest, FitContext, GenerateRequest, Headline, own_data
from dlkit.tasks.generative import (TwoPlayer, diversity, diversity_reals, in_scale, output_path, own_halves,
                                   reals_beside, report_table, run_scale, samples_key, training_draw, write_images)
from dlkit.tasks.reconstruction import split_of


def draw(gan, latent: np.ndarray) -> np.ndarray:
    """The generator's images for these latent inputs, in the model's scale (tests put real images here)."""
    return gan.sampler.predict(latent, verbose=0, batch_size=500)


class Adversarial(TwoPlayer):
    name = "adversarial"
    headlines = (Headline("classifier_score", "classifier score"),)
    options = frozenset({"n", "samples", "data", "out_dir"})  # generate's -n and --out-dir, evaluate's -n and --data
    summary = "images from noise (and labels or codes), a generator against a discriminator; sample quality"

    def needs_labels(self, recipe):
        return f"a class-conditional GAN ({recipe.model.arch}) learns from them" if recipe.model.conditional else None

    def compile(self, model, recipe, steps_per_epoch, phase):
        # the top-k share anneals over generator steps, so it needs the epoch's length
        model.top_k_steps = round(recipe.model.top_k_epochs * steps_per_epoch) if recipe.model.top_k < 1 else 0
        return super().compile(model, recipe, steps_per_epoch, phase)

    def callbacks(self, ctx: FitContext) -> Callbacks:
        from dlkit.tasks.sample_grid import SampleGrid

        gan, data = ctx.model, ctx.data
        rows, extra = grid_layout(gan)
        fixed = latent_inputs(gan, rows * 8, np.random.default_rng(ctx.recipe.seed), **extra)
        real = in_scale(diversity_reals(data.splits.x_train), data.scale)
        probe = latent_inputs(gan, min(256, len(real)), np.random.default_rng(ctx.recipe.seed + 1))
        grid = SampleGrid(ctx.run, ctx.reporter, draw=lambda: gan.sampler.predict(fixed, verbose=0), rows=rows,
                          fakes=lambda: gan.sampler.predict(probe, verbose=0), real=real, scale=data.scale,
                          overpower_epochs=ctx.recipe.train.overpower_epochs, initial_epoch=ctx.initial_epoch,
                          every=ctx.recipe.train.sample_every)
        return Callbacks(before=[grid])

    # ---------------------------------------------------------------- evaluate

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        gan, scale = model, run_scale(run)
        out = {"status": "completed", "task": self.name, "run_dir": str(run.root)}
        if request.data is None:
            n = request.samples or EVAL_SAMPLES
            loaded = data()
            split = request.split
            if split == "test" and loaded.splits.x_test is None:  # the training images' two halves
                split, (real, other_real) = "train", own_halves(loaded.splits.x_train, n)
            else:  # the split's images, and another split's for the real-vs-real floor
                real, other_real = reals_beside(loaded.splits, split_of(loaded, split)[0], n)
            # the split the samples are measured against (`dlkit runs` shows a test split's figure as the headline)
            out.update(key=samples_key("samples" if request.reference is None else "reference", request.split),
                       split=split)
        else:  # images of one's own, read as `predict` reads them; -n by default as many as half of them
            from dlkit.tasks.binary import own_images

            out.update(own_data(request.data))
            mine = own_images(run, recipe, request.data, as_read=True)[0]
            n = request.samples or min(EVAL_SAMPLES, max(1, len(mine) // 2))
            real, other_real = own_halves(mine, n)
        rng = np.random.default_rng(0)
        k = gan.num_classes or gan.categorical_codes
        asked = rng.integers(0, k, n) if k else None
        extra = {("labels" if gan.num_classes else "categorical"): asked} if k else {}
        fake = images.to_uint8(draw(gan, latent_inputs(gan, n, rng, **extra)), scale)
        out.update(samples=int(n), real_examples=int(len(real)),
                   diversity=diversity(in_scale(fake, scale), in_scale(real, scale)))
        grid_path = run.root / "eval_samples.png"
        images.save_png(images.grid(fake[:64], 8), grid_path)
        out["grid"] = str(grid_path)
        if request.reference is None:
            return out
        from dlkit.tasks.reference import Reference

        training, unread = (None, []) if request.data is None else training_draw(lambda: data().splits.x_train, n)
        measured, predicted = Reference(request.reference, request.unsafe).sample_quality(fake, real, other_real,
                                                                                          training)
        measured["warnings"] += unread
        out.update(measured)
        num_classes = len(measured["class_histogram"])
        if gan.num_classes:
            out["label_accuracy"] = float((predicted == asked).mean())
        elif gan.categorical_codes:
            acc, mapping = metrics.matched_accuracy(asked, predicted, gan.categorical_codes, num_classes)
            out["code_accuracy"], out["code_to_class"] = acc, mapping
        return out

    def report(self, result: dict) -> list:
        return report_table(result, ("frechet_distance", "real_frechet_distance", "training_frechet_distance",
                                     "classifier_score", "real_classifier_score", "class_coverage", "label_accuracy",
                                     "code_accuracy"))

    # ---------------------------------------------------------------- generate

    def exported(self, run, recipe, model):
        return model.sampler, "the generator (latent inputs to images in the model's scale)"

    def generate(self, run, recipe, model, data, request: GenerateRequest) -> dict:
        if request.inputs:
            raise UsageError("a GAN draws from noise and takes no --input (-n, --label, --code, --interpolate, "
                             "--seed); a translation model (cyclegan) or an autoencoder takes images")
        gan, scale, n = model, run_scale(run), request.n
        label, code = request.label, request.code
        if label is not None and not 0 <= label < gan.num_classes:
            raise UsageError(f"--label {label}: this model " + (
                f"has classes 0..{gan.num_classes - 1}" if gan.num_classes
                else "is not class-conditional (cgan, stackgan take labels)"))
        if code is not None and not 0 <= code < gan.categorical_codes:
            raise UsageError(f"--code {code}: this model " + (
                f"has codes 0..{gan.categorical_codes - 1}" if gan.categorical_codes
                else "has no categorical code (infogan has)"))
        rng = np.random.default_rng(request.seed)
        k = gan.num_classes or gan.categorical_codes
        fixed = label if label is not None else code
        if fixed is not None:
            chosen = np.full(n, fixed)
        elif k:
            chosen = np.arange(n) % k  # every class in turn
        else:
            chosen = None
        key = "labels" if gan.num_classes else "categorical"
        if request.interpolate:
            # n points on the straight line between two noise vectors, everything else held fixed
            ends = latent_inputs(gan, 2, rng, **({key: np.full(2, chosen[0])} if chosen is not None else {}))
            t = np.linspace(0, 1, n, dtype=np.float32)[:, None]
            latent, rows = (1 - t) * ends[0] + t * ends[1], images.strip_rows(n)
        else:
            latent = latent_inputs(gan, n, rng, **({key: chosen} if chosen is not None else {}))
            by_class = k and fixed is None and n % k == 0 and request.out_dir is None
            rows = k if by_class else max(1, int(np.sqrt(n)))
            if by_class:
                latent = latent[np.argsort(chosen, kind="stable")]  # a row per class
        samples = gan.sampler.predict(latent, verbose=0, batch_size=256)
        if request.out_dir is not None:  # a class-conditional model's in a folder per class
            return write_images(run, images.to_uint8(samples, scale), request.out_dir,
                                labels=chosen if gan.num_classes and not request.interpolate else None,
                                classes=gan.num_classes, seed=request.seed, label=label, code=code,
                                interpolate=request.interpolate)
        what = "interpolation" if request.interpolate else "samples"
        suffix = f"-label{label}" if label is not None else f"-code{code}" if code is not None else ""
        path = output_path(request.out or run.root / f"{what}-seed{request.seed}{suffix}.png", request.force, png=True)
        images.save_png(images.grid(images.to_uint8(samples, scale), rows), path)
        return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(n), "seed": request.seed,
                "label": label, "code": code, "interpolate": request.interpolate}
