"""Unpaired image-to-image translation (cyclegan): two domains, a generator each way, a discriminator each.

The data is two sources: domain A is `data`'s dataset and domain B `data.domain_b`, each split and shuffled
on its own (with seeds seed and seed + 1), zipped into ((x_a, x_b), (y_a, y_b)) batches; the pairs are
never seen together. A grayscale domain is repeated to three channels when the other is in colour.
`dlkit evaluate` measures the round trips (A->B->A, B->A->B) of a split's images, or of one's own (--data: a
folder of A/ and B/ images), and with a reference classifier the translated (B->A) and cycled images;
`dlkit generate` translates test images both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlkit import images, metrics
from dlkit.data import pipeline, sources
from dlkit.data.spec import DataSpec
from dlkit.errors import SPLITS, DataError, MissingSplit, Problem, RecipeError, UsageError
from dlkit.recipe.schema import DataConfig, DomainConfig
from dlkit.tasks.base import (EVAL_SAMPLES, Callbacks, EvalRequest, FitContext, GenerateRequest, Headline, data_slug,
                              own_data)
from dlkit.tasks.generative import (TwoPlayer, diversity, diversity_reals, drawn, in_scale, input_names, measures,
                                    numbered, output_path, own_halves, present, report_table, run_scale,
                                    samples_key, training_draw, write_images)



def translations(model, xa, xb, scale_a, scale_b):
    """uint8 A->B, A->B->A, B->A and B->A->B translations of real uint8 images (tests put known images here).
    A domain not given (None) has None for its two."""
    ab = aba = ba = bab = None
    if xa is not None:
        ab = model.generator_ab.predict(in_scale(xa, scale_a), verbose=0, batch_size=256)
        aba = images.to_uint8(model.generator_ba.predict(ab, verbose=0, batch_size=256), scale_a)
        ab = images.to_uint8(ab, scale_b)
    if xb is not None:
        ba = model.generator_ba.predict(in_scale(xb, scale_b), verbose=0, batch_size=256)
        bab = images.to_uint8(model.generator_ab.predict(ba, verbose=0, batch_size=256), scale_b)
        ba = images.to_uint8(ba, scale_a)
    return ab, aba, ba, bab


def cycle_errors(x: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Each image's round-trip error: the mean absolute difference of a real uint8 image and what it became
    there and back (A->B->A), as a share of the 0-255 range (0: given back exactly; the cycle loss's L1)."""
    return np.abs(back.astype(np.float32) - x.astype(np.float32)).mean(axis=(1, 2, 3)) / 255


def accuracies(ref, xa, ya, aba, xb, yb, ba) -> dict:
    """The reference classifier's accuracies on the domains whose labels are given (None: not): B->A
    translations (translated: they keep the digit's class), B as it is (untranslated: the gap translation
    closes), A->B->A (cycled) and real A (source: the reference's own level)."""
    def hit(x, y):
        return float((ref.predict(x)[1].argmax(1) == y).mean())

    out = {}
    if yb is not None:
        out.update(translated_accuracy=hit(ba, yb), untranslated_accuracy=hit(xb, yb))
    if ya is not None:
        out.update(cycled_accuracy=hit(aba, ya), source_accuracy=hit(xa, ya))
    return out


@dataclass
class Measured:
    """What `evaluate` measures a CycleGAN on: up to n of each domain's images of a split and their labels, the
    split's name ("train" where a domain without test files gave its training images), and with --reference the
    real A images the B->A translations are measured against (None without)."""

    xa: np.ndarray
    ya: np.ndarray
    xb: np.ndarray
    yb: np.ndarray
    split: str
    independent: np.ndarray | None = None


def measured(sa, sb, split: str, n: int, independent: bool) -> Measured:
    """Up to n of each domain's `split` images (splits `sa`, `sb`), a fixed draw, the same indices where the two
    hold as many (MNIST-M's test images are MNIST's, in order). The test split is a domain's training one where
    it has none; val or train must be in both (MissingSplit, naming those they share).

    With `independent`, real A images none of B's measured images was made from and none of A's measured ones:
    a domain B made from A's own images (MNIST-M blends MNIST's digits) would let a B->A that recovers its source
    digit score a distance near 0 against those same digits. That is A's training split beside its test split,
    its test split beside training or validation (both cut from the training files, whose digits B's may be),
    and where A has no other split (no test files) the measured split's second half, a fixed shuffle's, beside
    its first: the measured A images are then the first half alone."""
    def of(s, name):
        if getattr(s, f"x_{name}") is None and name == "test":
            name = "train"
        return name, getattr(s, f"x_{name}"), getattr(s, f"y_{name}")

    shared = [k for k in SPLITS if k == "test" or (getattr(sa, f"x_{k}") is not None and getattr(sb, f"x_{k}")
                                                     is not None)]
    if split not in shared:
        raise MissingSplit(split, shared)
    (name_a, xa, ya), (name_b, xb, yb) = of(sa, split), of(sb, split)
    ia, other = drawn(np.arange(len(xa)), n), None
    if independent:
        other = sa.x_train if name_a == "test" else sa.x_test
        if other is None:  # as many of B's translated as the half holds, so the distances are at one count
            ia, rest = own_halves(np.arange(len(xa)), n)
            other, n = xa[rest], len(ia)
    ib = ia if len(xb) == len(xa) else drawn(np.arange(len(xb)), n)
    return Measured(xa[ia], ya[ia], xb[ib], yb[ib], name_a if name_a == name_b else "train",
                    None if other is None else drawn(other, len(ib)))


def folder_labels(names: list[str], classes: list[str] | None) -> np.ndarray | None:
    """The class indices of images read from a folder of class folders (named `3/0001.png` by read_images,
    each first folder one of the run's `classes`), or None where any image is not in one (a flat folder)."""
    tops = [name.split("/", 1)[0] if "/" in name else None for name in names]
    if not classes or not all(top in classes for top in tops):
        return None
    return np.array([classes.index(top) for top in tops])


# evaluate --data's folders of the two domains: A/ and B/, or the CycleGAN datasets' own testA/ and testB/
DOMAIN_FOLDERS = {"a": ("A", "testA"), "b": ("B", "testB")}
WORST = 5  # evaluate --data names each domain's worst round trips


def domain_folders(path) -> dict:
    """evaluate --data's folder per domain ("a", "b": the first of its DOMAIN_FOLDERS there, else None). One
    domain alone is measured alone; neither is a usage error saying the layout."""
    layout = ("a folder holding A/ and B/, the two domains' images (or testA/ and testB/, as the CycleGAN datasets "
              "are laid out); either alone measures that domain's round trip")
    if not path.is_dir():
        raise UsageError(f"{path}: a file; a translation model is measured on {layout}")
    found = {d: next((path / name for name in names if (path / name).is_dir()), None)
             for d, names in DOMAIN_FOLDERS.items()}
    if not any(found.values()):
        raise UsageError(f"{path}: no A/ or B/ folder in it; a translation model is measured on {layout}")
    return found


class TranslationData(DataConfig):
    domain_b: DomainConfig  # the second domain; this section's dataset is the first

    not_used = {}


@dataclass
class Domains:
    """Two domains' Data side by side; the run's data as the training loop sees it."""

    a: pipeline.Data
    b: pipeline.Data
    train: object
    val: object | None
    test: object | None
    spec: DataSpec
    origin: str
    artifacts: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # both domains', then the run's (a build's)

    @property
    def scale(self):
        return self.a.scale

    @property
    def feed(self):
        return pipeline.PairedFeed(self.a.feed, self.b.feed, _pair)

    def fresh(self) -> Domains:
        a, b = self.a.fresh(), self.b.fresh()
        return Domains(a, b, train=pipeline.zipped(a.train, b.train, _pair), val=pipeline.zipped(a.val, b.val, _pair),
                       test=pipeline.zipped(a.test, b.test, _pair), spec=self.spec, origin=self.origin,
                       artifacts=self.artifacts, notes=self.notes)


def domain_notes(a: list[str], b: list[str]) -> list[str]:
    """The two domains' notes: one both give said once, as it is; one of a domain alone said as that domain's
    (a test_split domain A does not read, where domain B, without a test split of its own, carves one)."""
    both = [note for note in dict.fromkeys(a) if note in b]
    return both + [f"domain {d}: {note}" for d, notes in (("A", a), ("B", b))
                   for note in dict.fromkeys(notes) if note not in both]


def _pair(a, b):
    """Batches of both domains as the model takes them: ((x_a, x_b), (y_a, y_b))."""
    return (a[0], b[0]), (a[1], b[1])


def _load_domain_b(cfg: DomainConfig):
    """Domain B's arrays. The readers name the keys they read as `data`'s (data.path, data.dir); an error
    about domain B names its own keys, data.domain_b.path, so the user is not sent to domain A's."""
    try:
        return sources.load(cfg)
    except DataError as e:
        keys = r"\bdata\.(path|dir|image_size|label_column)\b"
        raise DataError(re.sub(keys, r"data.domain_b.\1", str(e))) from None


class Translation(TwoPlayer):
    name = "translation"
    headlines = (Headline("translated_accuracy", "B->A accuracy"),)
    summary = "unpaired image-to-image translation between two domains; translated and cycled accuracy"
    options = TwoPlayer.options | {"data", "domain", "out_dir"}  # and evaluate's --data, generate's and export's
    # --from, generate's --out-dir
    Data = TranslationData
    predict_instead = ("A CycleGAN translates images of your own with `dlkit generate {run} --input FILES` (add "
                       "--from B for B to A)")

    def load_data(self, recipe):
        cfg = recipe.data
        arrays_a, arrays_b = sources.load(cfg), _load_domain_b(cfg.domain_b)
        shape_a, shape_b = (pipeline.with_channel_axis(x.x_train[:1]).shape[1:] for x in (arrays_a, arrays_b))
        if len(shape_a) != 3 or len(shape_b) != 3 or shape_a[:2] != shape_b[:2]:
            raise RecipeError([Problem("data.domain_b", f"the two domains must be images of one size; they are "
                                       f"{shape_a} and {shape_b}",
                                       hint="set data.domain_b.image_size (image folders) or pick matching datasets")])
        if shape_a[-1] != shape_b[-1] and 1 not in (shape_a[-1], shape_b[-1]):  # 5 and 3 met as a traceback
            raise RecipeError([Problem("data.domain_b", f"the two domains' images have {shape_a[-1]} and "
                                       f"{shape_b[-1]} channels; a gray domain (1 channel) is repeated to the "
                                       "other's, and any other two must match",
                                       hint="pick datasets whose images have the same channels")])
        channels = max(shape_a[-1], shape_b[-1])
        b_cfg = cfg.model_copy(update={"limit": cfg.domain_b.limit, "test_limit": cfg.domain_b.test_limit})
        a = pipeline.build(arrays_a, cfg, recipe.seed, channels=channels)
        b = pipeline.build(arrays_b, b_cfg, recipe.seed + 1, channels=channels)
        spec = DataSpec(input_shape=a.spec.input_shape, num_classes=a.spec.num_classes,
                        class_names=a.spec.class_names, num_train=min(a.spec.num_train, b.spec.num_train),
                        num_test=min(a.spec.num_test, b.spec.num_test))
        return Domains(a, b, train=pipeline.zipped(a.train, b.train, _pair), val=pipeline.zipped(a.val, b.val, _pair),
                       test=pipeline.zipped(a.test, b.test, _pair), spec=spec, origin=f"{a.origin} + {b.origin}",
                       artifacts={"scale": a.artifacts["scale"], "scale_b": b.artifacts["scale"]},
                       notes=domain_notes(a.notes, b.notes))

    def data_sources(self, recipe) -> list:
        return [recipe.data, recipe.data.domain_b]

    def callbacks(self, ctx: FitContext) -> Callbacks:
        from dlkit.tasks.sample_grid import SampleGrid

        model, a, b = ctx.model, ctx.data.a, ctx.data.b
        fixed_a, fixed_b = in_scale(a.splits.x_train[:8], a.scale), in_scale(b.splits.x_train[:8], b.scale)

        def draw():  # rows: A, A->B, A->B->A, B, B->A, B->A->B, eight images each
            ab = model.generator_ab.predict(fixed_a, verbose=0)
            ba = model.generator_ba.predict(fixed_b, verbose=0)
            return np.concatenate([fixed_a, ab, model.generator_ba.predict(ab, verbose=0),
                                   fixed_b, ba, model.generator_ab.predict(ba, verbose=0)])

        probe = in_scale(diversity_reals(a.splits.x_train), a.scale)  # A's to translate, B's to measure against
        grid = SampleGrid(ctx.run, ctx.reporter, draw=draw, rows=6,
                          fakes=lambda: model.generator_ab.predict(probe, verbose=0),
                          real=in_scale(diversity_reals(b.splits.x_train), b.scale), scale=a.scale,
                          overpower_epochs=ctx.recipe.train.overpower_epochs, initial_epoch=ctx.initial_epoch,
                          every=ctx.recipe.train.sample_every)
        return Callbacks(before=[grid])

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        """A split's images of both domains (`measured`: the test split by default) translated (B->A) and cycled
        (A->B->A), classified by the reference; each domain's round-trip error."""
        if request.data is not None:
            return self._evaluate_on(run, model, data, request)
        d = data()
        scale_a, scale_b = d.a.scale, d.b.scale
        m = measured(d.a.splits, d.b.splits, request.split, request.samples or EVAL_SAMPLES,
                     independent=request.reference is not None)
        xa, ya, xb, yb = m.xa, m.ya, m.xb, m.yb
        ab, aba, ba, bab = translations(model, xa, xb, scale_a, scale_b)
        grid_path = run.root / "eval_translations.png"
        images.save_png(images.grid(np.concatenate([xa[:8], ab[:8], xb[:8], ba[:8]]), 4), grid_path)
        out = {"status": "completed", "task": self.name, "run_dir": str(run.root), "split": m.split,
               "key": samples_key("samples" if request.reference is None else "reference", request.split),
               "samples": int(len(xa)), "grid": str(grid_path),
               "diversity": diversity(in_scale(ba, scale_a), in_scale(xa, scale_a)),
               "cycle_error_a": float(cycle_errors(xa, aba).mean()), "cycle_error_b": float(cycle_errors(xb, bab).mean())}
        if request.reference is None:
            return out
        from dlkit.tasks.reference import Reference

        ref = Reference(request.reference, request.unsafe)
        real_feat, ba_feat = ref.predict(xa)[0], ref.predict(ba)[0]
        # the translations measured against real A images none of B's was made from (`measured`), and the
        # real-vs-real floor is the measured A images against those, at the same count
        ind_feat = ref.predict(m.independent)[0]
        out.update({"reference_run": str(request.reference.root),
                    "frechet_distance": metrics.feature_distance(ba_feat, ind_feat)})  # B->A against real A
        if d.a.spec.num_classes and d.b.spec.num_classes:  # the accuracies read the domains' labels
            out.update(accuracies(ref, xa, ya, aba, xb, yb, ba))
        out.update(ref.floor(len(ba_feat), ind_feat, real_feat))  # the measured A images against the same set
        return out

    def _evaluate_on(self, run, model, data, request: EvalRequest) -> dict:
        """evaluate --data: images of one's own, a folder's A/ and B/ (either alone will do), read as `generate
        --input` reads them; up to -n of each, a fixed draw, translated there and back. Measured: each domain's
        round-trip error, the worst round trips named; with --reference (both domains), the B->A translations'
        Fréchet distance to the first of the A images' two shuffled halves, the second half giving the floor,
        and the run's training A images' distance to it; and where a domain's folder is a folder of class
        folders (A/3/0001.png, the run's classes), its labels are read and the split's accuracies measured."""
        out = {"status": "completed", "task": self.name, "run_dir": str(run.root), **own_data(request.data)}
        folders = domain_folders(Path(out["data"]))
        classes = run.read_json(run.manifest)["data_spec"].get("class_names")
        n = request.samples or EVAL_SAMPLES
        given, names, labels, found = {}, {}, {}, {}
        for d, g in (("a", model.generator_ab), ("b", model.generator_ba)):
            if folders[d] is not None:
                x, named = sources.read_images([folders[d]], tuple(int(k) for k in g.input_shape[1:]))
                keep, y = drawn(np.arange(len(x)), n), folder_labels(named, classes)
                given[d], names[d] = x[keep], [f"{folders[d].name}/{named[i]}" for i in keep]
                found[d] = len(x)
                labels[d] = None if y is None else y[keep]
        xa, xb = given.get("a"), given.get("b")
        if request.reference is not None:  # what it needs is said before anything is measured or drawn
            from dlkit.tasks.reference import Reference

            if len(given) < 2:
                raise UsageError(f"{out['data']} has no {'A' if xa is None else 'B'}/ folder: --reference measures B->A "
                                 "translations against real A images, and needs both domains' (A/ and B/, or testA/ "
                                 "and testB/)")
            if len(xb) < 2:
                raise UsageError(f"{folders['b']}: {len(xb)} image; --reference measures B->A translations, two or more "
                                 "(one has no spread to measure)")
            if len(xa) < 4:  # own_halves' error, with what -n drew where it drew fewer than the folder holds
                cut = f" (-n {n} of the {found['a']} there)" if found["a"] > len(xa) else ""
                raise UsageError(f"{folders['a']}: {len(xa)} image(s){cut}; --reference cuts the A images in two halves, "
                                 "the translations measured against one and the floor from the other, two or more "
                                 "each: four or more" + ("; give -n 4 or more" if cut and found["a"] >= 4 else ""))
            # B->A against the first of A's shuffled halves, as many translations as that half holds, the
            # second half against it as the floor
            count = min(len(xb), len(xa) // 2)
            real, other_real = own_halves(xa, count)
            ref = Reference(request.reference, request.unsafe)
        scale_a, scale_b = run_scale(run), run_scale(run, "scale_b")
        ab, aba, ba, bab = translations(model, xa, xb, scale_a, scale_b)
        rows, worst = [], []
        for d, x, there, back in (("a", xa, ab, aba), ("b", xb, ba, bab)):
            if x is None:
                continue
            errors = cycle_errors(x, back)
            out[f"cycle_error_{d}"], out[f"{d}_examples"] = float(errors.mean()), int(len(x))
            # each domain's own worst: the two domains' errors are of different images, not of one scale
            worst += [{"input": names[d][i], "cycle_error": float(errors[i])}
                      for i in np.argsort(-errors, kind="stable")[:WORST]]
            rows.append((x, there))
        out["worst"] = worst
        # rows A, A->B, B, B->A of as many images each, a fixed draw (a folder of class folders is read class by
        # class: its first eight would be all of one class)
        shown = min(8, *(len(x) for x, _ in rows))
        picks = [drawn(np.arange(len(x)), shown) for x, _ in rows]
        grid_path = run.image(f"eval_translations_{data_slug(out['data'])}.png")
        images.save_png(images.bands([r[pick] for pair, pick in zip(rows, picks) for r in pair]), grid_path)
        out["grid"] = str(grid_path)
        if request.reference is None:
            return out
        real_feat = ref.predict(real)[0]
        # a fixed draw of the translations: a folder of class folders is read class by class, and its first
        # `count` would be its first classes
        out.update({"reference_run": str(request.reference.root), "samples": int(count),
                    "frechet_distance": metrics.feature_distance(ref.predict(drawn(ba, count))[0], real_feat)})
        out.update(accuracies(ref, xa, labels["a"], aba, xb, labels["b"], ba))
        out.update(ref.floor(count, real_feat, ref.predict(other_real)[0]))
        # where a translator giving back the run's own training A images would sit
        training, unread = training_draw(lambda: data().a.splits.x_train, count)
        if training is not None:
            out["training_frechet_distance"] = metrics.feature_distance(ref.predict(training)[0], real_feat)
        out["warnings"] += unread
        return out

    def report(self, result: dict) -> list:
        keys = ("frechet_distance", "real_frechet_distance", "training_frechet_distance", "translated_accuracy",
                "cycled_accuracy", "untranslated_accuracy", "source_accuracy",
                ("cycle_error_a", "cycle error A->B->A"), ("cycle_error_b", "cycle error B->A->B"))
        if "data" not in result:
            return report_table(result, keys)
        counts = ", ".join(f"{result[f'{d}_examples']:,} {d.upper()}" for d in "ab" if f"{d}_examples" in result)
        worst = [f"  {w['input']}: {w['cycle_error']:.4g}" for w in result["worst"]]
        return measures(result, f"{Path(result['data']).name}, {counts} images", present(result, keys),
                        after=["worst round trips (cycle error):", *worst, f"translations: {result['grid']}"])

    def exported(self, run, recipe, model, domain: str = "A"):
        """The generator from `domain` (export's --from) to the other."""
        if domain == "B":
            return model.generator_ba, "the B-to-A generator"
        return model.generator_ab, "the A-to-B generator"

    def generate(self, run, recipe, model, data, request: GenerateRequest) -> dict:
        """n test images of each domain (picked by the seed), translated. Rows: A, A->B, B, B->A. With --input,
        the images given, as domain A (or --from's): rows of them and their translations to the other."""
        if request.label is not None or request.code is not None or request.interpolate:
            raise UsageError("--label, --code and --interpolate are for GANs drawing from noise; a translation model "
                             "translates test images (-n, --seed) or the images given (--input)")
        if request.inputs:  # each domain read and scaled as its own
            g, scales, name = ((model.generator_ab, ("scale", "scale_b"), "translations-input.png")
                               if request.domain == "A" else
                               (model.generator_ba, ("scale_b", "scale"), "translations-input-b_to_a.png"))
            x, names = sources.read_images(request.inputs, tuple(int(d) for d in g.input_shape[1:]))
            path = None if request.out_dir else output_path(request.out or run.root / name, request.force, png=True)
            scale_in, scale_out = (run_scale(run, artifact) for artifact in scales)
            fake = images.to_uint8(g.predict(in_scale(x, scale_in), verbose=0), scale_out)
            direction = "a_to_b" if request.domain == "A" else "b_to_a"
            if request.out_dir:  # each translation under its input's name (class folders kept)
                return write_images(run, fake, request.out_dir, input_names(names), translation=direction,
                                    inputs=[str(p) for p in request.inputs])
            images.save_png(images.bands([x, fake]), path)
            return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(len(x)),
                    "translation": direction}
        d = data()
        pools = [(s.x_test if s.x_test is not None else s.x_train) for s in (d.a.splits, d.b.splits)]
        n = min(request.n, *map(len, pools))  # as many of each domain, so that the rows align
        rows = []
        for x, domain, g in zip(pools, (d.a, d.b), (model.generator_ab, model.generator_ba)):
            real = in_scale(x[np.random.default_rng(request.seed).choice(len(x), n, replace=False)], domain.scale)
            rows += [real, g.predict(real, verbose=0)]
        scale = run_scale(run)
        pictures = [images.to_uint8(r, scale) for r in rows]
        if request.out_dir:  # the test images of each domain and their translations, side by side by name
            names = [f"{folder}/{name}" for folder in ("a", "a_to_b", "b", "b_to_a") for name in numbered(n)]
            return write_images(run, np.concatenate(pictures), request.out_dir, names, n=int(n), seed=request.seed,
                                translation=True)
        path = output_path(request.out or run.root / f"translations-seed{request.seed}.png", request.force, png=True)
        images.save_png(images.bands(pictures), path)
        return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(n),
                "seed": request.seed, "translation": True}
