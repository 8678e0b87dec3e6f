"""Reconstruction (autoencoder): inputs to a code and back.

Learns x -> x (labels are kept aside, for measuring the codes). Each epoch draws a grid of held-out inputs,
their corrupted versions (denoising) and their reconstructions. A finished run, and `dlkit evaluate` on
any split, measure:

- reconstruction error: the loss (binary cross-entropy or mean squared error), the mean squared error per
  value and the mean PSNR over images, in the inputs' scale;
- how useful the codes are: the accuracy on the split of a linear classifier fitted on the training
  split's codes (scikit-learn's multinomial LogisticRegression, lbfgs, C=1, on standardized codes);
- a picture of the codes: the split's codes in 2-D (their first two principal components when there are
  more), coloured by class (codes.png).

`dlkit encode` writes a split's codes; `dlkit generate` reconstructs test images (or given ones).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dlkit import images
from dlkit.errors import MissingSplit, Problem, UsageError
from dlkit.files import replace_atomic, write_atomic
from dlkit.recipe.schema import FitTrain
from dlkit.tasks.base import Callbacks, EvalRequest, FitContext, GenerateRequest, Headline, data_path, data_slug, evaluation
from dlkit.tasks.fit import FitTask
from dlkit.tasks.generative import (in_scale, input_names, measures, output_path, present, run_scale, split_heading,
                                    write_images)


class ReconstructionTrain(FitTrain):
    metrics: list[str] = Field(default_factory=lambda: ["mse"])  # accuracy means nothing for x -> x


def inputs_as_targets(x, y):
    return x, x


class Reconstruction(FitTask):
    name = "reconstruction"
    headlines = (Headline("psnr_db", "PSNR (dB)"), Headline("mse", "MSE", "min"))
    summary = "inputs to a code and back (autoencoders); reconstruction error, PSNR, a linear probe of the codes"
    Train = ReconstructionTrain
    predict_instead = ("An autoencoder reconstructs images of your own with `dlkit generate {run} --input FILES`; "
                       "`dlkit encode {run} FILES` writes their codes")
    options = frozenset({"n", "data", "out_dir"})  # generate's -n and --out-dir, evaluate's --data
    default_loss = "mean_squared_error"

    def examples(self, recipe):
        return inputs_as_targets

    def check(self, recipe) -> list[Problem]:
        problems = []
        if recipe.model.output == "sigmoid" and recipe.data.scale != "unit":
            problems.append(Problem("data.scale", f"a sigmoid output reconstructs inputs in [0, 1]; data.scale is "
                                    f"{recipe.data.scale!r}", hint="set data.scale: unit, or model.output: linear"))
        noise = recipe.model.noise
        if noise is not None and noise.kind == "salt_and_pepper" and recipe.data.scale != "unit":
            problems.append(Problem("model.noise.kind", "salt-and-pepper noise sets values to 0 or 1: it needs "
                                    "data.scale: unit", hint="set data.scale: unit"))
        return problems

    def callbacks(self, ctx: FitContext) -> Callbacks:
        """Each epoch: the same held-out inputs, their corrupted versions (a denoising model's) and their
        reconstructions, a row each; the last grid is reconstructions.png."""
        from dlkit.tasks.sample_grid import EpochGrid

        s = ctx.data.splits
        x = in_scale(next(x for x in (s.x_val, s.x_test, s.x_train) if x is not None)[:8], ctx.data.scale)
        noisy = ctx.recipe.model.noise is not None
        grid = EpochGrid(ctx.where, lambda: np.concatenate(reconstruction_rows(ctx.model, x, noisy)), 2 + noisy,
                         ctx.data.scale, ctx.where.image("reconstructions.png"), ctx.initial_epoch)
        return Callbacks(before=[grid], after=super().callbacks(ctx).after)

    def finish(self, ctx: FitContext, callbacks) -> dict:
        if ctx.data.test is None:
            return {}
        return {"test": measure(ctx.model, ctx.data, "test", ctx.run.image("codes.png"),
                                f"{ctx.recipe.name}: test codes")}

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.reference is not None:
            raise UsageError("--reference is for generative runs that draw new samples; an autoencoder is measured "
                             "by its reconstructions")
        if request.data is not None:
            return evaluation(self, run, request, lambda: self._measure_on(run, recipe, model, request.data))
        data = data()
        image = run.image("codes.png" if request.split == "test" else f"codes_{request.split}.png")
        measured = measure(model, data, request.split, image, f"{recipe.name}: {request.split} codes")
        return {"status": "completed", "task": self.name, "key": request.split, "run_dir": str(run.root),
                "split": request.split, **measured}

    def _measure_on(self, run, recipe, model, path) -> dict:
        """evaluate --data: images of one's own (a folder's, an image file, a .npy array, read as `encode` and
        `predict` read them) reconstructed and measured as a split is, without labels (no linear probe); the
        worst reconstructed are named, the likeliest to be unlike what the model learnt."""
        from dlkit.tasks.binary import own_images

        path = data_path(path)
        x, names = own_images(run, recipe, path)
        scale = run_scale(run)
        out = measured_images(model, in_scale(x, scale), scale, None, run.image(f"codes_{data_slug(path)}.png"),
                              f"{recipe.name}: {path.name} codes")
        errors = out.pop("errors")
        worst = np.argsort(-errors, kind="stable")[:10]
        out["worst"] = [{"input": names[i], "mse": float(errors[i])} for i in worst]
        return out

    def report(self, result: dict) -> list:
        worst = [f"  {w['input']}: MSE {w['mse']:.4g}" for w in result.get("worst", ())]
        return measures(result, split_heading(result), present(result, ("loss", "mse", "psnr_db", "probe_accuracy")),
                        after=(["worst reconstructed:"] + worst if worst else []) + [f"codes: {result['codes_image']}"])

    def encode(self, run, recipe, model, data, request) -> dict:
        x, y, names = inputs_to_encode(run, data, request)
        return save_codes(run, encoder(model).predict(x, verbose=0, batch_size=500), y, request, names)

    def generate(self, run, recipe, model, data, request: GenerateRequest) -> dict:
        """Reconstructions of n test images (picked by the seed) or of given images: rows of inputs,
        corrupted inputs (a denoising model's, as in training) and reconstructions."""
        if request.label is not None or request.code is not None or request.interpolate:
            raise UsageError("--label, --code and --interpolate are for GANs drawing from noise; an autoencoder "
                             "reconstructs images (-n, --seed, --input)")
        scale = run_scale(run)
        if request.inputs:
            from dlkit.data.sources import read_images

            x, names = read_images(request.inputs, tuple(int(d) for d in model.input_shape[1:]))
            names = input_names(names)
        else:
            s = data().splits
            pool = s.x_test if s.x_test is not None else s.x_train
            x = pool[np.random.default_rng(request.seed).choice(len(pool), min(request.n, len(pool)), replace=False)]
            names = None  # numbered
        path = None if request.out_dir else output_path(
            request.out or run.root / f"reconstructions-seed{request.seed}.png", request.force, png=True)
        rows = reconstruction_rows(model, in_scale(x, scale), noisy=recipe.model.noise is not None)
        if request.out_dir:  # each reconstruction under its input's name
            return write_images(run, images.to_uint8(rows[-1], scale), request.out_dir, names,
                                seed=None if request.inputs else request.seed,
                                inputs=[str(p) for p in request.inputs])
        images.save_png(images.bands([images.to_uint8(r, scale) for r in rows]), path)
        return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(len(x)),
                "seed": request.seed}


# ---------------------------------------------------------------- measures


def split_of(data, split: str):
    s = data.splits
    x, y = {"test": (s.x_test, s.y_test), "val": (s.x_val, s.y_val), "train": (s.x_train, s.y_train)}[split]
    if x is None:
        raise MissingSplit.of(split, s)
    return x, y if data.spec.num_classes else None  # unlabelled inputs: no labels to write beside codes


def inputs_to_encode(run, data, request):
    """What `dlkit encode` encodes, in the model's scale: a split's inputs and their labels (None where it has
    none), or the images given (files, .npy arrays, folders, read as `dlkit predict` reads them) and their names."""
    if not request.inputs:
        d = data()
        x, y = split_of(d, request.split)
        return in_scale(x, d.scale), y, None
    from dlkit.data.sources import read_images

    shape = tuple(run.read_json(run.manifest)["data_spec"]["input_shape"])  # the run's own: no data to read
    if len(shape) != 3:
        raise UsageError(f"this run's model reads feature vectors of {shape[0]} values, not images: encode a split "
                         "of its data (dlkit encode RUN --split test|val|train)")
    x, names = read_images(request.inputs, shape)
    return in_scale(x, run_scale(run)), None, names


def encoder(model):
    """The model's input to its code (the corruption layer, if any, is inactive outside training), in float32
    whatever the run's precision: a mixed one computes the code in 16 bits, which numpy's SVD (the codes'
    picture) refuses and `dlkit encode` would write."""
    import keras

    code = model.get_layer("code").output
    # named: an automatic name ("activation") may be one a layer of a model loaded in this process has
    return keras.Model(model.inputs, keras.layers.Activation("linear", dtype="float32", name="code_float32")(code))


def reconstruction_rows(model, x, noisy: bool) -> list:
    """[inputs, corrupted inputs (if the model corrupts them in training), reconstructions], in model scale."""
    rows = [x]
    if noisy:
        import keras

        rows.append(keras.ops.convert_to_numpy(model.get_layer("noise")(x, training=True)))
    rows.append(model.predict(x, verbose=0))
    return rows


def psnr(x: np.ndarray, reconstruction: np.ndarray, data_range: float) -> float:
    """Mean over images of 10 log10(range^2 / MSE) in dB (an exact reconstruction counts as 100 dB)."""
    mse = ((x - reconstruction) ** 2).reshape(len(x), -1).mean(1)
    return float(np.mean(10 * np.log10(data_range ** 2 / np.maximum(mse, data_range ** 2 * 1e-10))))


def linear_probe(train_codes, train_y, codes, y) -> float:
    """Accuracy on (codes, y) of a multinomial logistic regression fitted on the training codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    probe.fit(train_codes, train_y)
    return float(probe.score(codes, y))


def codes_2d(codes: np.ndarray) -> np.ndarray:
    """The codes themselves when 2-D, else their first two principal components."""
    if codes.shape[1] <= 2:
        return codes if codes.shape[1] == 2 else np.concatenate([codes, np.zeros_like(codes)], axis=1)
    centred = codes - codes.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))  # one code has one component: a test split of one


def measure(model, data, split: str, image_path, title: str) -> dict:
    x, y = split_of(data, split)
    labelled = data.spec.num_classes > 1 and y is not None

    def probe(codes, codes_of):
        train_codes = codes if split == "train" else codes_of.predict(in_scale(data.splits.x_train, data.scale),
                                                                      verbose=0, batch_size=500)
        return linear_probe(train_codes, data.splits.y_train, codes, y)

    out = measured_images(model, in_scale(x, data.scale), data.scale, (y, data.spec.class_names, probe)
                          if labelled else None, image_path, title)
    out.pop("errors")
    return out


def measured_images(model, xs: np.ndarray, scale, labels, image_path, title: str) -> dict:
    """The reconstruction measures of images `xs` (in the model's `scale`), each image's squared error
    (`errors`), and their codes' picture; `labels`: (y, class names, probe(codes, encoder) -> accuracy) to colour
    the codes and fit the linear probe, or None."""
    from dlkit import plots

    measured = model.evaluate(xs, xs, verbose=0, batch_size=500, return_dict=True)
    reconstruction = model.predict(xs, verbose=0, batch_size=500)
    data_range = float(np.mean(np.asarray(scale[0]) * 255.0))  # uint8 inputs: 0..255 in model scale
    codes_of = encoder(model)
    codes = codes_of.predict(xs, verbose=0, batch_size=500)
    errors = ((xs - reconstruction) ** 2).reshape(len(xs), -1).mean(1)  # each image's; their mean is the MSE
    out = {"examples": int(len(xs)), "loss": float(measured["loss"]), "mse": float(errors.mean()),
           "psnr_db": psnr(xs, reconstruction, data_range), "probe_accuracy": None, "codes_image": str(image_path),
           "errors": errors}
    y, names, probe = labels if labels is not None else (None, [], None)
    if probe is not None:
        out["probe_accuracy"] = probe(codes, codes_of)
    plots.scatter(codes_2d(codes), y, names, image_path, title,
                  "code" if codes.shape[1] <= 2 else "principal component")
    return out


def save_codes(run, codes: np.ndarray, labels, request, names: list[str] | None = None) -> dict:
    """codes to --out (.npy); the split's labels beside them as <out stem>.labels.npy when it has any, or the
    names of the images given, one a line, as <out stem>.names.txt."""
    from pathlib import Path

    if request.out is not None and Path(request.out).suffix != ".npy":
        raise UsageError(f"--out {request.out}: codes are written as a NumPy .npy file; end the name in .npy")
    given = names is not None
    path = output_path(request.out or run.root / f"codes_{'inputs' if given else request.split}.npy", request.force)
    beside = path.with_name(path.stem + (".names.txt" if given else ".labels.npy"))
    if given:  # checked before anything is written: codes without their names would be no use
        output_path(beside, request.force)
    # each file whole or not at all: an interrupt leaves no part of one
    replace_atomic(path, lambda tmp: np.save(tmp, codes))
    out = {"status": "completed", "run_dir": str(run.root), "split": None if given else request.split,
           "out": str(path), "shape": list(codes.shape)}
    if given:
        write_atomic(beside, "".join(f"{n}\n" for n in names))
        out["names"] = str(beside)
    elif labels is not None:
        replace_atomic(beside, lambda tmp: np.save(tmp, np.asarray(labels)))
        out["labels"] = str(beside)
    return out
