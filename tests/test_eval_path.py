"""The measuring path of `dlkit evaluate --reference`, checked with real digits where a generator's samples
would be: a perfect generator must score like real data, a wrong one must not.

A conditional GAN's samples are replaced by real digits of the asked classes, digits that neither the
real set, nor the floor's set, nor the reference classifier's training uses (a perfect generator makes new
digits, not ones the classifier has learnt); the Fréchet distance must sit at the real-vs-real floor,
the classifier score near the real digits' and the label accuracy near the reference classifier's own
accuracy. Digits of the wrong class must collapse the label accuracy; noise must lift the distance far
above the floor. A CycleGAN whose B->A translation gives back exactly the digit each B image was made from
must score the floor, not 0: its distance is measured against real A images independent of domain B."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA
from dlkit import metrics
from dlkit.cli import app
from dlkit.training.train import train

N = 200  # samples measured against test digits :N; the floor's are training digits :N; the stand-ins are
# training digits N..599 (MNIST's test digits are more alike than its training ones: stand-ins from the test
# set sit below the train-vs-test floor); the reference classifier learns from training digits 600..999


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """16x16 MNIST crops (1,000 training, 500 test digits), a reference classifier trained on them, a
    one-epoch cGAN run and a two-domain npz pair for CycleGAN."""
    from dlkit.data import sources

    tmp = tmp_path_factory.mktemp("eval_path")
    a = sources.load_builtin("mnist", str(DATA), allow_download=False)
    crop = lambda x: x[:, 6:22, 6:22]  # noqa: E731
    digits, rest = tmp / "digits16.npz", tmp / "digits16_rest.npz"
    np.savez(digits, x_train=crop(a.x_train), y_train=a.y_train, x_test=crop(a.x_test), y_test=a.y_test)
    np.savez(rest, x_train=crop(a.x_train[600:]), y_train=a.y_train[600:], x_test=crop(a.x_test), y_test=a.y_test)
    (tmp / "clf.yaml").write_text(
        f"name: clf\nseed: 1\ndata: {{dataset: npz, path: {rest}, batch_size: 50, validation_split: 0}}\n"
        "model: {arch: cnn, blocks: [{filters: 16}], dense: [32]}\n"
        "train: {epochs: 8, optimizer: {name: adam, learning_rate: 0.003}}\n")
    clf = train(tmp / "clf.yaml", runs_root=tmp / "runs")
    (tmp / "cgan.yaml").write_text(f"""
name: cgan
data: {{dataset: npz, path: {digits}, scale: symmetric, validation_split: 0, batch_size: 100}}
model: {{arch: cgan, latent_dim: 8, generator: {{filters: [16, 8]}}, discriminator: {{filters: [8, 16]}}}}
train: {{epochs: 1, steps_per_epoch: 2}}
""")
    cgan = train(tmp / "cgan.yaml", runs_root=tmp / "runs")
    return {"tmp": tmp, "digits": digits, "clf": clf, "cgan": cgan["run_dir"],
            "x_train": crop(a.x_train), "y_train": a.y_train, "x_test": crop(a.x_test), "y_test": a.y_test}


def stand_in(monkeypatch, setup, wrong_class: bool = False, noise: bool = False):
    """The cGAN's samples become real training digits (N..599) of the asked class (or of the next class)."""
    from dlkit.tasks import adversarial

    pool_x, pool_y = setup["x_train"][N:600], setup["y_train"][N:600]

    def draw(gan, latent):
        asked = latent[:, gan.latent_dim: gan.latent_dim + gan.num_classes].argmax(1)
        want = (asked + 1) % 10 if wrong_class else asked
        rng = np.random.default_rng(0)
        picks = np.zeros(len(want), int)
        for c in range(10):  # distinct digits of each class (the pool has enough of each for the asked draw)
            picks[want == c] = rng.permutation(np.flatnonzero(pool_y == c))[: np.sum(want == c)]
        x = pool_x[picks].astype(np.float32)
        if noise:
            x = rng.uniform(0, 255, x.shape).astype(np.float32)
        return (x[..., None] / 127.5 - 1.0)  # the model's scale, symmetric [-1, 1]

    monkeypatch.setattr(adversarial, "draw", draw)


def evaluate(setup, n=N, data=None):
    res = CliRunner().invoke(app, ["evaluate", setup["cgan"], "--reference", setup["clf"]["run_dir"], "-n", str(n),
                                   "--json", *(["--data", str(data)] if data else [])])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_real_digits_score_like_real_digits(setup, monkeypatch):
    stand_in(monkeypatch, setup)
    ev = evaluate(setup)
    floor = ev["real_frechet_distance"]
    assert ev["real_frechet_samples"] == N and floor > 0
    # two real-vs-real distances at the same count: the same up to sampling noise, which at a few hundred
    # samples of 32 features is large (300-digit subsets measured from 1.0x to 1.8x one another)
    assert 0.5 * floor < ev["frechet_distance"] < 2 * floor, (ev["frechet_distance"], floor)
    assert ev["classifier_score"] == pytest.approx(ev["real_classifier_score"], rel=0.15)
    test_accuracy = setup["clf"]["test"]["accuracy"]
    assert test_accuracy > 0.75  # a reference that can tell digits apart, or the next checks mean little
    assert abs(ev["label_accuracy"] - test_accuracy) < 0.08, (ev["label_accuracy"], test_accuracy)
    assert ev["class_coverage"] == 1.0
    # 200 samples is few: the distance comes with a warning naming the floor
    assert any("biased upward" in w and "200 samples" in w for w in ev["warnings"])


def test_digits_of_the_wrong_class_collapse_label_accuracy(setup, monkeypatch):
    stand_in(monkeypatch, setup, wrong_class=True)
    ev = evaluate(setup)
    assert ev["label_accuracy"] < 0.2
    assert 0.5 * ev["real_frechet_distance"] < ev["frechet_distance"] < 2 * ev["real_frechet_distance"]


def test_noise_is_far_above_the_floor(setup, monkeypatch):
    stand_in(monkeypatch, setup, noise=True)
    ev = evaluate(setup)
    assert ev["frechet_distance"] > 10 * ev["real_frechet_distance"], ev
    assert ev["label_accuracy"] < 0.3


def test_real_digits_score_like_your_own_digits_and_noise_does_not(setup, monkeypatch, tmp_path):
    """evaluate --data: a folder of one's own digits (the first 400 test digits as class folders, read class by
    class) in place of the test split. The perfect stand-ins (training digits) sit where the training digits
    themselves sit against those digits, above the floor of the digits' two halves (MNIST's test digits are
    more alike than its training ones: 10.4 and 9.9 against 2.4 when this was written); noise sits far above."""
    from dlkit import images

    for i in range(2 * N):
        label = setup["y_test"][i]
        (tmp_path / "mine" / str(label)).mkdir(parents=True, exist_ok=True)
        images.save_png(setup["x_test"][i][..., None], tmp_path / "mine" / str(label) / f"{i:03d}.png")
    stand_in(monkeypatch, setup)
    ev = evaluate(setup, data=tmp_path / "mine")
    assert ev["real_examples"] == ev["real_frechet_samples"] == N
    assert 0.5 * ev["training_frechet_distance"] < ev["frechet_distance"] < 2 * ev["training_frechet_distance"], ev
    assert abs(ev["label_accuracy"] - setup["clf"]["test"]["accuracy"]) < 0.08
    stand_in(monkeypatch, setup, noise=True)
    noise = evaluate(setup, data=tmp_path / "mine")
    assert noise["frechet_distance"] > 10 * noise["real_frechet_distance"], noise
    assert noise["real_frechet_distance"] == ev["real_frechet_distance"]  # the same halves of the same digits


def test_cyclegan_distance_is_against_real_images_independent_of_domain_b(setup, monkeypatch, tmp_path):
    """Domain B is domain A's own digits, inverted and coloured (as MNIST-M blends MNIST's). A B->A that
    returns exactly each B image's source digit is a perfect translation; measured against those same source
    digits its distance would be 0. Measured against independent real A images it sits at the floor. On folders
    of one's own (--data), it sits where real digits independent of A's do, and keeps their classes."""
    from dlkit.tasks import translation

    b = setup["tmp"] / "digits16_b.npz"
    colour = lambda x: np.stack([255 - x, x // 2, 255 - x // 3], -1).astype(np.uint8)  # noqa: E731
    np.savez(b, x_train=colour(setup["x_train"]), y_train=setup["y_train"], x_test=colour(setup["x_test"]),
             y_test=setup["y_test"])
    (tmp_path / "cyc.yaml").write_text(f"""
name: cyc
data:
  dataset: npz
  path: {setup['digits']}
  scale: symmetric
  validation_split: 0
  batch_size: 100
  domain_b: {{dataset: npz, path: {b}}}
model: {{arch: cyclegan, filters: 4, residual_blocks: 1}}
train: {{epochs: 1, steps_per_epoch: 1, checkpoint_every: null, run_eagerly: true}}
""")
    # one step, taken eagerly (train.run_eagerly): tracing the CycleGAN's step would cost more than the step
    fits, fit = [], keras.Model.fit

    def eager_or_not(model, *args, **kwargs):
        fits.append(model.run_eagerly)
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", eager_or_not)
    run = train(tmp_path / "cyc.yaml", runs_root=tmp_path / "runs")["run_dir"]
    assert fits == [True]
    real = translation.translations

    def perfect(model, xa, xb, scale_a, scale_b):
        ab, aba, _, bab = real(model, xa, xb, scale_a, scale_b)
        return ab, aba, xa.copy(), bab  # each B test image's own source digit: B's test images are A's, coloured

    monkeypatch.setattr(translation, "translations", perfect)
    res = CliRunner().invoke(app, ["evaluate", run, "--reference", setup["clf"]["run_dir"], "-n", str(N), "--json"])
    assert res.exit_code == 0, res.stderr
    ev = json.loads(res.stdout)
    assert ev["frechet_distance"] == pytest.approx(ev["real_frechet_distance"], rel=1e-6)
    assert ev["frechet_distance"] > 0.05 * ev["real_frechet_distance"] + 1e-3  # not the 0 a leak would give
    assert ev["translated_accuracy"] == pytest.approx(ev["source_accuracy"])

    # --data: A/ holds 2N test digits, B/ 2N training digits coloured, each as PNGs in class folders (read class
    # by class); a perfect B->A gives back each B image's source digit (colour's first channel, inverted), which
    # none of A's are: it sits where real training digits do against those test digits, near the run's
    # training_frechet_distance, well above the test digits' own floor, and keeps the digits' classes as the
    # reference reads real ones; noise sits far above both. N of the 2N translations are measured against the
    # first half of A: a fixed draw of every class, not the first N read (digits 0 to 4)
    from PIL import Image

    mine = tmp_path / "mine"
    for domain, x, y in (("A", setup["x_test"][: 2 * N], setup["y_test"][: 2 * N]),
                         ("B", colour(setup["x_train"][N: 3 * N]), setup["y_train"][N: 3 * N])):
        for i, (image, label) in enumerate(zip(x, y)):
            (mine / domain / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(mine / domain / str(label) / f"{i:03d}.png")

    measured = {}
    for name in ("perfect", "noise"):
        def made(model, xa, xb, scale_a, scale_b, name=name):
            ab, aba, _, bab = real(model, xa, xb, scale_a, scale_b)
            source = np.repeat((255 - xb[..., :1]).astype(np.uint8), 3, -1)  # as the generators take and make them
            ba = source if name == "perfect" else np.random.default_rng(0).integers(0, 256, xb.shape, np.uint8)
            return ab, aba, ba, bab

        monkeypatch.setattr(translation, "translations", made)
        res = CliRunner().invoke(app, ["evaluate", run, "--reference", setup["clf"]["run_dir"], "--data", str(mine),
                                       "--json"])
        assert res.exit_code == 0, res.output
        measured[name] = json.loads(res.stdout)
    ev = measured["perfect"]
    assert ev["samples"] == ev["real_frechet_samples"] == N and (ev["a_examples"], ev["b_examples"]) == (2 * N, 2 * N)
    # (measured against the first N read, digits 0 to 4, it was 19.4, twice the training figure)
    assert 0.5 * ev["training_frechet_distance"] < ev["frechet_distance"] < 1.5 * ev["training_frechet_distance"], ev
    assert ev["frechet_distance"] > 1.5 * ev["real_frechet_distance"], ev
    assert abs(ev["translated_accuracy"] - ev["source_accuracy"]) < 0.08, ev
    assert measured["noise"]["frechet_distance"] > 10 * ev["frechet_distance"], measured
    assert measured["noise"]["real_frechet_distance"] == ev["real_frechet_distance"]
    assert measured["noise"]["translated_accuracy"] < 0.3


def test_matched_accuracy_when_two_codes_share_a_class():
    """Codes 0 and 1 both draw fives, code 2 sevens. A per-code majority vote would call that 100%; codes are
    matched to distinct classes, so one of codes 0 and 1 cannot count: 2/3."""
    codes = np.repeat([0, 1, 2], 10)
    predicted = np.array([5] * 10 + [5] * 10 + [7] * 10)
    accuracy, mapping = metrics.matched_accuracy(codes, predicted, num_codes=3, num_classes=10)
    assert accuracy == pytest.approx(2 / 3)
    assert len(set(mapping)) == 3 and mapping[2] == 7 and 5 in mapping[:2]


def test_classifier_score_with_unequal_per_sample_kls():
    """exp of the mean KL(p(y|x) || p(y)), not the mean of the exps, nor the KL of the mean. Two confident
    samples and one uniform: p(y) = (4/9, 4/9, 1/9); KLs log(9/4), log(9/4) and (2 log(3/4) + log 3) / 3."""
    probs = np.array([[1.0, 0, 0], [0, 1.0, 0], [1 / 3, 1 / 3, 1 / 3]])
    kls = [np.log(9 / 4), np.log(9 / 4), (2 * np.log(3 / 4) + np.log(3)) / 3]
    expected = np.exp(np.mean(kls))  # 1.8199...
    assert metrics.classifier_score(probs) == pytest.approx(expected, rel=1e-9)
    assert abs(expected - np.mean(np.exp(kls))) > 0.05  # the wrong averages give another number
