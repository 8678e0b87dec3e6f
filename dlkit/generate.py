"""`generate(run_dir, ...)`: sample grids and latent interpolations from a trained GAN run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlkit import backend
from dlkit.errors import UsageError
from dlkit.rundir import RunDir


def load_gan(run: RunDir):
    """The run's GAN model and its data scaling, checked to be a finished GAN run."""
    import keras

    from dlkit.models import gan_model  # registers the adversarial classes for load_model

    if not run.model.is_file():
        raise UsageError(f"{run.root} has no model.keras; only finished runs can generate")
    model = keras.saving.load_model(run.model)
    if not isinstance(model, gan_model.Adversarial):
        raise UsageError(f"{run.root} is not a GAN run (its model is {type(model).__name__})")
    return model, run_scale(run)


def run_scale(run: RunDir) -> tuple:
    """The (a, b) of the run's input scaling x * a + b: from the manifest, or recomputed from its data."""
    scale = run.read_json(run.manifest).get("data_scale")
    if scale is None:  # runs made before manifests recorded it
        from dlkit.data import pipeline, sources
        from dlkit.recipe import load_recipe

        recipe = load_recipe(run.recipe)
        splits = pipeline.split(sources.load(recipe.data), recipe.data, recipe.seed)
        scale = pipeline.scale_params(splits.x_train, recipe.data.scale)
    return tuple(np.asarray(v, np.float32) for v in scale)


def generate(run_dir, n: int = 64, label: int | None = None, code: int | None = None, seed: int = 0,
             out: str | Path | None = None, interpolate: bool = False, force: bool = False) -> dict:
    backend.setup()
    from dlkit import images as I
    from dlkit.training.samples import latent_inputs

    run = RunDir.open(run_dir)
    gan, scale = load_gan(run)
    if n < 1:
        raise UsageError(f"-n must be at least 1, received {n}")
    if label is not None and not 0 <= label < gan.num_classes:
        raise UsageError(f"--label {label}: this model " + (f"has classes 0..{gan.num_classes - 1}" if gan.num_classes
                         else "is not class-conditional (cgan, stackgan take labels)"))
    if code is not None and not 0 <= code < gan.categorical_codes:
        raise UsageError(f"--code {code}: this model " + (f"has codes 0..{gan.categorical_codes - 1}"
                         if gan.categorical_codes else "has no categorical code (infogan has)"))
    if hasattr(gan, "generator_ab"):
        return _translate(run, gan, scale, n, seed, out, force)
    rng = np.random.default_rng(seed)
    k = gan.num_classes or gan.categorical_codes
    fixed = label if label is not None else code
    if fixed is not None:
        chosen = np.full(n, fixed)
    elif k:
        chosen = np.arange(n) % k  # every class in turn
    else:
        chosen = None
    key = "labels" if gan.num_classes else "categorical"
    extra = {key: chosen} if chosen is not None else {}
    if interpolate:
        # n points on the straight line between two noise vectors, everything else held fixed
        ends = latent_inputs(gan, 2, rng, **({key: chosen[:2] * 0 + chosen[0]} if chosen is not None else {}))
        t = np.linspace(0, 1, n, dtype=np.float32)[:, None]
        latent = (1 - t) * ends[0] + t * ends[1]
        rows = 1
    else:
        latent = latent_inputs(gan, n, rng, **extra)
        rows = k if (k and fixed is None and n % k == 0) else max(1, int(np.sqrt(n)))
        if k and fixed is None and n % k == 0:
            order = np.argsort(chosen, kind="stable")  # a row per class
            latent = latent[order]
    samples = gan.sampler.predict(latent, verbose=0, batch_size=256)
    what = "interpolation" if interpolate else "samples"
    suffix = f"-label{label}" if label is not None else f"-code{code}" if code is not None else ""
    path = _output(Path(out) if out else run.root / f"{what}-seed{seed}{suffix}.png", force)
    I.save_png(I.grid(I.to_uint8(samples, scale), rows), path)
    return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(n), "seed": seed,
            "label": label, "code": code, "interpolate": interpolate}


def _output(path: Path, force: bool) -> Path:
    if path.exists() and not force:
        raise UsageError(f"{path} exists; choose another --out or pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _translate(run: RunDir, model, scale, n: int, seed: int, out, force: bool) -> dict:
    """CycleGAN: n test images of each domain (picked by the seed), translated. Rows: A, A->B, B, B->A."""
    from dlkit import images as I
    from dlkit.data import pipeline
    from dlkit.recipe import load_recipe

    recipe = load_recipe(run.recipe)
    data = pipeline.load(recipe.data, recipe.seed)
    rows = []
    for splits, s, g in ((data.splits, data.scale, model.generator_ab), (data.splits_b, data.scale_b, model.generator_ba)):
        x = splits.x_test if splits.x_test is not None else splits.x_train
        pick = np.random.default_rng(seed).choice(len(x), min(n, len(x)), replace=False)
        real = x[pick].astype(np.float32) * s[0] + s[1]
        rows += [real, g.predict(real, verbose=0)]
    path = _output(Path(out) if out else run.root / f"translations-seed{seed}.png", force)
    I.save_png(I.grid(I.to_uint8(np.concatenate(rows), scale), 4), path)
    return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(n), "seed": seed,
            "translation": True}
