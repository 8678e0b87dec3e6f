"""Models and training knobs: assert on the built Keras layers and optimizers, not on the recipe."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dlkit import catalog
from conftest import build
from dlkit.data.spec import DataSpec
from dlkit.tasks import load_recipe

MNIST = DataSpec(input_shape=(28, 28, 1), num_classes=10, num_train=1000)
CIFAR = DataSpec(input_shape=(32, 32, 3), num_classes=10, num_train=1000)


def make(write_recipe, model: str, train: str = "", spec=MNIST, steps=10):
    r = load_recipe(write_recipe(f"model:\n{model}\ntrain:\n  epochs: 3\n{train}"))
    return r, build(r, spec, steps)


def layers_of(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


# ---------------------------------------------------------------- catalog <-> keras


@pytest.mark.parametrize("name", catalog.OPTIMIZERS)
def test_optimizer_names_resolve_in_keras(name):
    assert isinstance(keras.optimizers.get(catalog.OPTIMIZERS[name]), keras.optimizers.Optimizer)


@pytest.mark.parametrize("name", catalog.INITIALIZERS)
def test_initializer_names_resolve_in_keras(name):
    from dlkit.models.knobs import InitializerConfig
    from dlkit.models.layers import initializer

    assert isinstance(initializer(InitializerConfig(name=name)), keras.initializers.Initializer)


@pytest.mark.parametrize("name", catalog.ACTIVATIONS)
def test_activation_names_resolve_in_keras(name):
    assert callable(keras.activations.get(name))


def test_augmentations_and_regularizers_exist_in_keras():
    for cls in catalog.AUGMENTATIONS.values():
        assert hasattr(keras.layers, cls)
    for cls in catalog.REGULARIZERS.values():
        assert hasattr(keras.regularizers, cls)


def test_the_loss_and_metric_names_are_the_installed_keras_own():
    """catalog.LOSSES and METRICS, which a recipe's train.loss and train.metrics are checked against without
    importing Keras, are exactly the names keras.losses.get and keras.metrics.get resolve (less the abstract
    bases; metrics: and compile's "acc", and dlkit's "rmse"): a Keras upgrade that adds or drops one fails here."""
    from keras.src import losses, metrics

    assert catalog.LOSSES == set(losses.ALL_OBJECTS_DICT) - {"Loss", "LossFunctionWrapper"}
    assert catalog.METRICS == (set(metrics.ALL_OBJECTS_DICT) | {"acc", "rmse"}) - {
        "Metric", "metric", "MeanMetricWrapper", "mean_metric_wrapper"}
    for name in ("huber", "CategoricalCrossentropy", "kld"):
        assert keras.losses.get(name) is not None
    for name in ("f1_score", "AUC", "r2_score"):
        assert keras.metrics.get(name) is not None


# ---------------------------------------------------------------- parameter counts of the presets


@pytest.mark.parametrize("arch,spec,params", [
    ("lenet5", MNIST, 61_706),  # the 1998 figure for 10 classes
    ("vgg", MNIST, 586_282),
    ("resnet", CIFAR, 274_042),  # ~0.27M, as in the paper
    ("cnn", MNIST, 421_642),
    ("mlp", MNIST, 235_146),
    ("perceptron", MNIST, 7_850),
])
def test_preset_parameter_counts(write_recipe, arch, spec, params):
    _, model = make(write_recipe, f"  arch: {arch}", spec=spec)
    assert model.count_params() == params


def test_resnet_depth_sets_blocks(write_recipe):
    _, m20 = make(write_recipe, "  arch: resnet\n  depth: 20", spec=CIFAR)
    _, m32 = make(write_recipe, "  arch: resnet\n  depth: 32", spec=CIFAR)
    assert len(layers_of(m20, keras.layers.Add)) == 9 and len(layers_of(m32, keras.layers.Add)) == 15


# ---------------------------------------------------------------- layer knobs land on the layers


@pytest.mark.parametrize("name,cls", [
    ("zeros", keras.initializers.Zeros), ("ones", keras.initializers.Ones),
    ("random_normal", keras.initializers.RandomNormal), ("random_uniform", keras.initializers.RandomUniform),
    ("glorot_normal", keras.initializers.GlorotNormal), ("xavier_uniform", keras.initializers.GlorotUniform),
    ("xavier_normal", keras.initializers.GlorotNormal), ("he_normal", keras.initializers.HeNormal),
    ("he_uniform", keras.initializers.HeUniform), ("lecun_normal", keras.initializers.LecunNormal),
    ("orthogonal", keras.initializers.Orthogonal),
])
def test_initializer_lands_on_layers(write_recipe, name, cls):
    _, model = make(write_recipe, f"  arch: mlp\n  hidden: [8]\n  initializer: {name}")
    for layer in layers_of(model, keras.layers.Dense):
        assert type(layer.kernel_initializer) is cls


def test_initializer_arguments_and_values(write_recipe):
    _, model = make(write_recipe, "  arch: mlp\n  hidden: [64]\n  initializer: {name: random_normal, stddev: 0.5}")
    dense = layers_of(model, keras.layers.Dense)[0]
    assert dense.kernel_initializer.stddev == 0.5
    assert 0.4 < float(np.std(keras.ops.convert_to_numpy(dense.kernel))) < 0.6
    _, model = make(write_recipe, "  arch: mlp\n  hidden: [8]\n  initializer: zeros")
    assert not np.any(keras.ops.convert_to_numpy(layers_of(model, keras.layers.Dense)[0].kernel))


@pytest.mark.parametrize("reg,cls,attrs", [
    ("{l2: 0.001}", keras.regularizers.L2, {"l2": 0.001}),
    ("{l1: 0.002}", keras.regularizers.L1, {"l1": 0.002}),
    ("{l1: 0.001, l2: 0.003}", keras.regularizers.L1L2, {"l1": 0.001, "l2": 0.003}),
])
def test_regularizer_lands_on_layers(write_recipe, reg, cls, attrs):
    _, model = make(write_recipe, f"  arch: cnn\n  blocks: [{{filters: 4}}]\n  regularizer: {reg}")
    weighted = layers_of(model, keras.layers.Conv2D) + layers_of(model, keras.layers.Dense)
    assert weighted
    for layer in weighted:
        assert type(layer.kernel_regularizer) is cls
        for k, v in attrs.items():
            assert float(getattr(layer.kernel_regularizer, k)) == pytest.approx(v)
    assert len(model.losses) == len(weighted)  # the penalties reach the loss


def test_block_overrides_model_knobs(write_recipe):
    _, model = make(write_recipe, "  arch: cnn\n  activation: relu\n  blocks:\n"
                    "    - {filters: 4, activation: tanh, dropout: 0.3}\n    - {filters: 8}\n  dense: []")
    acts = [layer.activation.__name__ for layer in layers_of(model, keras.layers.Activation)]
    assert acts == ["tanh", "relu"]
    assert [layer.rate for layer in layers_of(model, keras.layers.Dropout)] == [0.3]


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "elu", "selu", "gelu", "swish", "sigmoid", "tanh", "softmax"])
def test_activation_lands_on_layers(write_recipe, act):
    _, model = make(write_recipe, f"  arch: mlp\n  hidden: [8, 8]\n  activation: {act}")
    names = [layer.activation.__name__ for layer in layers_of(model, keras.layers.Activation)]
    assert names == [{"swish": "silu"}.get(act, act)] * 2  # keras names swish by its other name


@pytest.mark.parametrize("where", ["before", "after"])
def test_batch_norm_placement(write_recipe, where):
    _, model = make(write_recipe, f"  arch: mlp\n  hidden: [8]\n  batch_norm: {where}")
    kinds = [type(layer).__name__ for layer in model.layers]
    bn, act = kinds.index("BatchNormalization"), kinds.index("Activation")
    assert (bn < act) == (where == "before")
    assert layers_of(model, keras.layers.Dense)[0].use_bias == (where == "after")


def test_dropout_rate(write_recipe):
    _, model = make(write_recipe, "  arch: mlp\n  hidden: [8, {units: 4, dropout: 0.1}]\n  dropout: 0.25")
    assert [layer.rate for layer in layers_of(model, keras.layers.Dropout)] == [0.25, 0.1]


def test_cnn_block_geometry(write_recipe):
    _, model = make(write_recipe, "  arch: cnn\n  blocks:\n    - {filters: 6, kernel_size: 5, strides: 2, "
                    "padding: valid, convs: 2, pool: avg}\n    - {filters: 3, dilation: 2, pool: none}\n  head: global_avg")
    convs = layers_of(model, keras.layers.Conv2D)
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5), (3, 3)]
    assert [c.strides for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert convs[2].dilation_rate == (2, 2) and convs[0].padding == "valid"
    assert layers_of(model, keras.layers.AveragePooling2D) and layers_of(model, keras.layers.GlobalAveragePooling2D)


@pytest.mark.parametrize("model,spec,key,says", [
    # was Keras's traceback: "Computed output size would be zero or negative"
    ("{arch: cnn, blocks: [{filters: 4, pool_size: 30}]}", MNIST, "model.blocks.0.pool_size",
     "block 0's max pooling pools 30x30, but its feature maps are 28x28 by then"),
    ("{arch: cnn, blocks: [{filters: 4, strides: 15}, {filters: 4, pool: avg}]}", MNIST, "model.blocks.1.pool_size",
     "block 1's avg pooling pools 2x2, but its feature maps are 1x1 by then"),
    ("{arch: lenet5, blocks: [{filters: 4, kernel_size: 11, dilation: 3, padding: valid}]}", MNIST,
     "model.blocks.0.kernel_size", "block 0's convolution 1 a 11x11 kernel dilated by 3 spans 31 pixels, with "
     "padding: valid, but its feature maps are 28x28"),
    ("{arch: cnn, blocks: [{filters: 4, kernel_size: 5, padding: valid, convs: 7, pool: none}]}", MNIST,
     "model.blocks.0.kernel_size", "block 0's convolution 7 a 5x5 kernel spans 5 pixels, with padding: valid, but "
     "its feature maps are 4x4"),
    ("{arch: vgg, widths: [4, 4, 4, 4, 4, 4]}", CIFAR, "model.widths",
     "6 stages of 2x2 max pooling need images of at least 64x64; the data's are 32x32"),
])
def test_a_conv_stack_its_inputs_are_too_small_for_is_refused_at_its_key(write_recipe, model, spec, key, says):
    from dlkit.errors import RecipeError

    with pytest.raises(RecipeError) as e:
        make(write_recipe, f"  {model}", spec=spec)
    (p,) = e.value.problems
    assert p.path == key and says in p.message


def test_a_net_that_fits_its_inputs_exactly_builds(write_recipe):
    """The edge of the check above: a valid 5x5 kernel on 5x5 maps gives 1x1, and pooling 2x2 over 2x2 gives 1x1."""
    _, model = make(write_recipe, "  arch: cnn\n  blocks:\n    - {filters: 2, pool_size: 14}\n"
                    "    - {filters: 2, strides: 2, pool: none}\n    - {filters: 2, pool_size: 1}\n")
    assert model.layers[-1].output.shape == (None, 10)
    _, lenet = make(write_recipe, "  arch: lenet5\n  blocks:\n    - {filters: 2, pool_size: 4}\n"
                    "    - {filters: 2, kernel_size: 7, padding: valid, pool: none}\n")
    assert [tuple(c.output.shape[1:3]) for c in layers_of(lenet, keras.layers.Conv2D)] == [(28, 28), (1, 1)]


def test_the_conv_stack_check_refuses_exactly_what_keras_cannot_build(monkeypatch):
    """Property-based, both ways: random conv blocks on random image sizes either build, or are refused at a
    block's key; and each refused one, built with the check taken away, is one Keras cannot build."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dlkit.errors import RecipeError
    from dlkit.models import cnn

    blocks = st.lists(st.fixed_dictionaries({
        "filters": st.just(1), "kernel_size": st.integers(1, 6), "strides": st.integers(1, 4),
        "padding": st.sampled_from(["same", "valid"]), "dilation": st.just(1) | st.integers(2, 3),
        "convs": st.integers(1, 2), "pool": st.sampled_from(["max", "avg", "none"]), "pool_size": st.integers(1, 5),
    }).filter(lambda b: b["strides"] == 1 or b["dilation"] == 1), min_size=1, max_size=3)
    check = cnn._check_fits

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(blocks=blocks, side=st.integers(3, 20))
    def run(blocks, side):
        config = cnn.Config(blocks=blocks, dense=[])
        spec = DataSpec(input_shape=(side, side + 1, 1), num_classes=2, num_train=10)
        monkeypatch.setattr(cnn, "_check_fits", check)
        try:
            cnn.build(config, spec)
            return
        except RecipeError as e:
            (p,) = e.problems
            assert p.path.startswith("model.blocks.") and p.path.endswith(("kernel_size", "pool_size"))
        monkeypatch.setattr(cnn, "_check_fits", lambda *a, **k: None)
        with pytest.raises(ValueError):
            cnn.build(config, spec)

    run()


_TOKENS = DataSpec(input_shape=(6,), modality="token_windows", vocabulary_size=9)
_PAIRS = DataSpec(input_shape=(6,), modality="tokens", vocabulary_size=9, source_vocabulary_size=9, target_shape=(4, 5))


@pytest.mark.parametrize("model,spec", [
    ("{arch: cnn, blocks: [{filters: 2}], dense: []}", MNIST), ("{arch: perceptron}", MNIST),
    ("{arch: autoencoder, hidden: [4], code_size: 2}", MNIST),
    ("{arch: autoencoder, encoder: conv, filters: [2], code_size: 2}", MNIST),
    ("{arch: rnn_forecaster, units: [3]}\ndata: {dataset: airline_passengers}",
     DataSpec(input_shape=(5, 2), modality="series", target_shape=(2, 1))),
    ("{arch: rnn_lm, units: [3], embedding_dim: 2}", _TOKENS),
    ("{arch: seq2seq, units: [3], embedding_dim: 2, attention: luong}", _PAIRS),
    ("{arch: transformer_translator, layers: 1, d_model: 8, heads: 1, ff_units: 4}", _PAIRS),
    ("{arch: cnn_rnn_reader, blocks: [{filters: 2}], units: [3], code_size: 3}",
     DataSpec(input_shape=(8, 16, 1), target_shape=(3,), vocabulary_size=5)),
], ids=["cnn", "perceptron", "dense-autoencoder", "conv-autoencoder", "rnn_forecaster", "rnn_lm", "seq2seq",
        "transformer", "cnn_rnn_reader"])
def test_the_outputs_are_float32_under_a_mixed_precision(write_recipe, model, spec):
    """Keras's mixed-precision guide: the hidden layers compute in 16 bits, the output (a softmax, logits, a
    forecast, a reconstruction) in float32: a float16 softmax rounds small probabilities to 0."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        _, built = make(write_recipe, f"  {model}\n", spec=spec)
    finally:
        keras.config.set_dtype_policy("float32")
    assert "bfloat16" in {layer.compute_dtype for layer in built.layers}
    assert [keras.backend.standardize_dtype(o.dtype) for o in built.outputs] == ["float32"]


# ---------------------------------------------------------------- optimizers, clipping, schedules


@pytest.mark.parametrize("opt,cls,attrs", [
    ("{name: sgd, learning_rate: 0.1}", keras.optimizers.SGD, {"momentum": 0.0}),
    ("{name: sgd, momentum: 0.8, nesterov: true}", keras.optimizers.SGD, {"momentum": 0.8, "nesterov": True}),
    ("{name: momentum}", keras.optimizers.SGD, {"momentum": 0.9}),
    ("{name: adagrad}", keras.optimizers.Adagrad, {}),
    ("{name: rmsprop, rho: 0.8}", keras.optimizers.RMSprop, {"rho": 0.8}),
    ("{name: adam, beta_1: 0.5}", keras.optimizers.Adam, {"beta_1": 0.5}),
    ("{name: adamw, weight_decay: 0.01}", keras.optimizers.AdamW, {"weight_decay": 0.01}),
    ("{name: nadam}", keras.optimizers.Nadam, {}),
    ("{name: adam, clipnorm: 1.5}", keras.optimizers.Adam, {"clipnorm": 1.5}),
    ("{name: adam, clipvalue: 0.5}", keras.optimizers.Adam, {"clipvalue": 0.5}),
    ("{name: sgd, global_clipnorm: 2.0}", keras.optimizers.SGD, {"global_clipnorm": 2.0}),
])
def test_optimizer_and_clipping_land(write_recipe, opt, cls, attrs):
    _, model = make(write_recipe, "  arch: perceptron\n  rule: gradient", f"  optimizer: {opt}\n")
    assert type(model.optimizer) is cls
    for k, v in attrs.items():
        assert getattr(model.optimizer, k) == pytest.approx(v)


def test_optimizer_argument_it_does_not_take(write_recipe):
    from dlkit.errors import RecipeError

    with pytest.raises(RecipeError) as info:
        make(write_recipe, "  arch: mlp", "  optimizer: {name: adam, momentum: 0.9}\n")
    (p,) = info.value.problems
    assert p.path == "train.optimizer.momentum" and "optimizer 'adam' takes no momentum" in p.message


def lr_at(model, step):
    return float(keras.ops.convert_to_numpy(model.optimizer._learning_rate(step)))  # the schedule object


def test_schedules(write_recipe):
    steps = 10  # per epoch; 3 epochs
    _, m = make(write_recipe, "  arch: mlp", "  optimizer: {name: sgd, learning_rate: 0.1}\n"
                "  schedule: {name: step, step_epochs: 1, factor: 0.5}\n", steps=steps)
    assert [round(lr_at(m, s), 6) for s in (0, 9, 10, 25)] == [0.1, 0.1, 0.05, 0.025]
    _, m = make(write_recipe, "  arch: mlp", "  optimizer: {name: sgd, learning_rate: 0.1}\n"
                "  schedule: {name: exponential, decay_rate: 0.5}\n", steps=steps)
    assert lr_at(m, 20) == pytest.approx(0.025)
    _, m = make(write_recipe, "  arch: mlp", "  optimizer: {name: sgd, learning_rate: 0.1}\n"
                "  schedule: {name: cosine, warmup_epochs: 1}\n", steps=steps)
    assert lr_at(m, 0) == pytest.approx(0.0) and lr_at(m, 5) == pytest.approx(0.05)
    assert lr_at(m, 10) == pytest.approx(0.1) and lr_at(m, 30) == pytest.approx(0.0, abs=1e-6)


def test_a_schedule_whose_first_part_outlasts_the_run_is_noted(write_recipe):
    """A cosine warm-up as long as the run (dlkit.optim cuts it to end at the last step) and a step schedule's
    first cut at or past the end are said, for train.schedule and an optimizer role's own; a schedule that fits
    says nothing."""
    from dlkit.tasks import load_recipe
    from dlkit.training.session import schedule_notes

    recipe = write_recipe("data: {dataset: mnist}\nmodel: {arch: mlp}\ntrain:\n  epochs: 2\n"
                          "  schedule: {name: cosine, warmup_epochs: 2}\n")
    (note,) = schedule_notes(load_recipe(recipe).train)
    assert note.startswith("train.schedule.warmup_epochs: 2, not less than train.epochs (2): the warm-up is cut")
    assert schedule_notes(load_recipe(recipe, ["train.schedule.warmup_epochs=1.5"]).train) == []
    assert schedule_notes(load_recipe(recipe, ["train.schedule={name: step, step_epochs: 1}"]).train) == []
    (note,) = schedule_notes(load_recipe(recipe, ["train.schedule={name: step, hold_epochs: 2}"]).train)
    assert note == ("train.schedule: the first cut, after 2 epochs (hold_epochs), is not before train.epochs (2) "
                    "ends: the learning rate is never cut")
    gan = write_recipe("data: {dataset: mnist}\nmodel: {arch: dcgan}\ntrain:\n  epochs: 1\n  optimizers:\n"
                       "    generator: {name: adam, schedule: {name: step, step_epochs: 4}}\n", "gan.yaml")
    assert [n.partition(":")[0] for n in schedule_notes(load_recipe(gan).train)] == [
        "train.optimizers.generator.schedule"]


def rates_read(steps=(0, 5, 10, 29)) -> list:
    """(dlkit's read, Keras's own) of the learning rate of optimizers with a warm-up cosine schedule, a
    rollback's ScaledSchedule on it, float16's loss scaling around it, and a plain rate, at several steps."""
    from dlkit import optim

    def warm():
        return keras.optimizers.schedules.CosineDecay(0.0, 20, alpha=0.01, warmup_target=0.1, warmup_steps=10)

    optimizers = [keras.optimizers.Adam(warm()), keras.optimizers.SGD(optim.scaled_schedule_class()(warm(), 0.5)),
                  keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(warm())), keras.optimizers.SGD(0.03)]
    out = []
    for opt in optimizers:
        opt.build([keras.Variable(np.zeros(2, "float32"))])
        for step in steps:
            getattr(opt, "inner_optimizer", opt).iterations.assign(step)
            out.append((optim.current_learning_rate(opt), float(keras.ops.convert_to_numpy(opt.learning_rate))))
    return out


def test_the_learning_rate_read_is_the_optimizers_own():
    """What history.csv's learning_rate column holds (optim.current_learning_rate) is the optimizer's current
    rate, for a schedule (with a warm-up, scaled after a rollback, under float16's loss scaling) and a plain
    rate, at each step."""
    read = rates_read()
    assert len({round(theirs, 6) for _, theirs in read}) >= 7  # the steps give different rates
    for ours, theirs in read:
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-9)


JAX_RATES = """
import json, jax, jax.monitoring, test_models
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None)
first = test_models.rates_read(steps=(0,))
before = len(compiles)
read = test_models.rates_read(steps=(3, 7, 12, 25)) + test_models.rates_read(steps=(1, 2))
ours = len(compiles) - before
print(json.dumps({"read": read, "compiles": ours}))
"""


def test_reading_a_scheduled_rate_under_jax_compiles_once_per_schedule(tmp_path):
    """On JAX, Keras's eager read of a warm-up schedule compiled its cond anew at every read (twice an epoch,
    about what a whole GPU epoch of MNIST takes; docs/benchmarks.md): dlkit's read compiles the schedule once.
    After one read of each, reading at other steps compiles only the Keras reads' conds beside it."""
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    out = subprocess.run([sys.executable, "-c", JAX_RATES], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for ours, theirs in got["read"]:
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-9)
    # new schedules (rates_read builds them anew): dlkit's read compiles each once, Keras's each time
    keras_reads = 3 * 6  # three schedules, six steps
    assert got["compiles"] >= keras_reads and got["compiles"] <= keras_reads + 3 * 2


# ---------------------------------------------------------------- the perceptron rule


def test_perceptron_rule_is_sgd_on_the_perceptron_criterion(write_recipe):
    """One SGD step with batch size 1 must equal w_y += lr*x, w_pred -= lr*x on a mistake, nothing otherwise."""
    spec = DataSpec(input_shape=(3,), num_classes=2)
    r = load_recipe(write_recipe("model: {arch: perceptron, rule: perceptron, initializer: zeros}\n"
                                 "train: {optimizer: {name: sgd, learning_rate: 0.5}}\n"))
    model = build(r, spec, 1)
    dense = model.get_layer("scores")
    # all-zero weights tie, and a tie predicts class 0: a mistake for class 1, so the rule updates
    x = np.array([[1.0, 2.0, 3.0]], "float32")
    model.train_on_batch(x, np.array([1]))  # a mistake: true class 1
    w = keras.ops.convert_to_numpy(dense.kernel)
    np.testing.assert_allclose(w[:, 1], 0.5 * x[0])
    np.testing.assert_allclose(w[:, 0], -0.5 * x[0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.bias), [-0.5, 0.5])
    before = w.copy()
    model.train_on_batch(x, np.array([1]))  # now correct (score 1 wins by a margin): no update
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.kernel), before)


def test_a_class_weighted_loss_is_keras_class_weight():
    """ClassWeighted is Keras's `class_weight` (each example's term times its class's weight, summed over the
    batch and divided by its size), whatever the loss inside: cross-entropy and the perceptron criterion."""
    from dlkit.models.losses import ClassWeighted, PerceptronCriterion

    y = np.array([0, 2, 1, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3], [0.5, 0.25, 0.25]], "float32")
    w = np.array([1.0, 4.0, 0.5])
    keras_weighted = keras.losses.SparseCategoricalCrossentropy()(y, p, sample_weight=w[y])
    assert float(ClassWeighted("sparse_categorical_crossentropy", w)(y, p)) == pytest.approx(float(keras_weighted))
    inner = PerceptronCriterion()
    assert float(ClassWeighted(inner, w)(y, p)) == pytest.approx(float(inner(y, p, sample_weight=w[y])))
    again = ClassWeighted.from_config(ClassWeighted(inner, w).get_config())  # a saved model's loss, read back
    assert float(again(y, p)) == pytest.approx(float(inner(y, p, sample_weight=w[y])))


# ---------------------------------------------------------------- every shipped recipe builds


SPECS = {
    "mnist": MNIST, "fashion_mnist": MNIST, "cifar10": CIFAR,
    # the recurrent recipes' data, as their sources give it (vocabulary sizes of the full datasets)
    "sentiment": DataSpec(input_shape=(48,), modality="tokens", num_classes=2, vocabulary_size=1800),
    "tinyshakespeare": DataSpec(input_shape=(100,), modality="token_windows", vocabulary_size=67),
    "ptb": DataSpec(input_shape=(20,), modality="token_windows", vocabulary_size=10002, batch_size=20),
    "pjm_hourly_energy": DataSpec(input_shape=(168, 7), modality="series", target_shape=(24, 1)),
    "airline_passengers": DataSpec(input_shape=(12, 3), modality="series", target_shape=(12, 1)),
    "mnist_strings": DataSpec(input_shape=(28, 140, 1), target_shape=(6,), vocabulary_size=12),
    # Tatoeba's pairs of at most 15 words: 24 source tokens, 30 target ones ([START] or [END] included)
    "diabetes": DataSpec(input_shape=(10,), modality="features", target_shape=(1,),
                         target_scale={"mean": [152.1], "std": [77.0]}),
    "tatoeba_fra_eng": DataSpec(input_shape=(55,), modality="tokens", vocabulary_size=10000,
                                source_vocabulary_size=10000, target_shape=(24, 30)),
}
RECIPES = sorted((__import__("pathlib").Path(__file__).parents[1] / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_build_and_compile(path):
    from dlkit import tasks

    r = load_recipe(path)
    task = tasks.of(r)
    model = build(r, SPECS[r.data.dataset], 100)
    assert model.count_params() > 0
    assert list(task.optimizers(model)) == list(task.roles) and all(task.optimizers(model).values())
    if task.name == "adversarial":
        assert model.generator.output_shape == (None, 28, 28, 1)
    elif task.name == "translation":
        assert model.generator_ab.output_shape == model.generator_ba.output_shape == (None, 28, 28, 1)
    elif task.name in ("reconstruction", "variational"):
        assert model(np.zeros((2, 28, 28, 1), "float32")).shape == (2, 28, 28, 1)
    elif task.phases(r)[0].name.startswith("rbm") or task.name == "boltzmann":  # an RBM: pixels to hidden units
        assert model(np.zeros((2, 28, 28, 1), "float32")).shape == (2, model.hidden)
    elif task.name == "text_classification":
        assert model.output_shape == (None, 2)
    elif task.name == "language_model":
        spec = SPECS[r.data.dataset]
        assert model.output_shape[-1] == spec.vocabulary_size
        if r.name == "ptb_lstm_small":  # Zaremba et al.'s small model: 4.65M parameters with our 10,002 ids
            trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)  # not the streams' state
            assert trainable == 4_652_402 and model.output_shape == (20, 20, 10002)
    elif task.name == "forecasting":
        assert model.output_shape == (None, *SPECS[r.data.dataset].target_shape)
    elif task.name == "image_to_sequence":
        assert model.output_shape == (None, 6, 12)
    elif task.name == "text_translation":
        assert model.output_shape == (None, 30, 10000)
        assert [i.shape for i in model.inputs] == [(None, 24), (None, 30)]
    elif task.name == "regression":  # the net, then its outputs put back in the target's units
        assert model.output_shape == (None, 1) and model.layers[-1].name == "target_scale"
    else:
        assert task.name in ("classification", "dbn") and model.output_shape == (None, 10)


def _knobs(node, path=()):
    """(key path, the values to try) of every int, list of ints and bool under a resolved recipe section."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _knobs(v, path + (k,))
    elif isinstance(node, list):
        if node and all(isinstance(v, int) and not isinstance(v, bool) for v in node):
            yield path, ([], [1], [1] * 6, [513])
        for i, v in enumerate(node):
            if isinstance(v, (dict, list)):
                yield from _knobs(v, path + (i,))
    elif isinstance(node, bool):
        yield path, (not node,)
    elif isinstance(node, int):
        yield path, (0, 1, 2, 3, 7, 33)


def _choices(config, path):
    """(key path, the other values) of every Literal field of a resolved model section (its `arch` aside),
    nested sections too (a GAN's discriminator)."""
    import typing

    import pydantic

    for name, field in type(config).model_fields.items():
        value = getattr(config, name)
        if isinstance(value, pydantic.BaseModel):
            yield from _choices(value, path + (name,))
        elif typing.get_origin(field.annotation) is typing.Literal and name != "arch":
            yield path + (name,), tuple(v for v in typing.get_args(field.annotation) if v != value)


def _readable(path):
    """(the overrides a recipe's data reads with in a few seconds, its data) for the fuzz below, or a skip."""
    from dlkit.errors import DlkitError
    from dlkit.training.session import Session

    for sets in (["data.limit=64", "data.test_limit=32"], []):  # a text or a series: too short for a batch
        try:
            return sets, Session.open(load_recipe(path, sets)).data
        except DlkitError as e:
            reason = e
    pytest.skip(f"its data: {reason}")


def _variants(base: dict, knobs):
    """(key path, value, a copy of the recipe tree `base` with that key set to that value) for each value of
    each knob; one under a section written short (train.on_nan: stop) is left out. benchmarks/command_fuzz.py
    trains and evaluates these too."""
    import copy

    for key, values in knobs:
        for value in values:
            tree = copy.deepcopy(base)
            node = tree
            for k in key[:-1]:
                node = node[k]
            if isinstance(node, dict):
                node[key[-1]] = value
                yield key, value, tree


def _tracebacks(path, sets, knobs, tmp_path, data=None) -> list[str]:
    """Each (key path, values) knob of the recipe set to each value in turn; every schema-valid variant is
    built, each phase's model (`data`: the recipe's, for an int or a list, which changes no data). What is
    neither built nor a DlkitError (the CLI's clear exit) is said."""
    import yaml

    from dlkit.errors import DlkitError
    from dlkit.training.session import Session

    found = []
    for key, value, tree in _variants(load_recipe(path, sets).to_dict(), knobs):
        variant = tmp_path / path.name
        variant.write_text(yaml.safe_dump(tree, sort_keys=False))
        try:
            recipe = load_recipe(variant, sets)
            session = Session.open(recipe)
            if data is not None and not isinstance(value, (bool, str)):
                session.__dict__["data"] = data
            earlier = {}
            for phase in session.task.phases(recipe):
                earlier[phase.name] = session.model(phase, earlier)
            next(iter(session.data.train))
        except DlkitError:
            continue
        except Exception as e:  # noqa: BLE001 - what the fuzz looks for
            found.append(f"{'.'.join(map(str, key))}={value}: {type(e).__name__}: {str(e)[:200]}")
    return found


@pytest.mark.slow  # 1,121 variants on real data: `make test-slow` (its DLKIT_DATA_DIR has the datasets)
@pytest.mark.parametrize("path", [p for p in RECIPES if p.parent.name == "recipes"], ids=lambda p: p.stem)
def test_odd_model_knobs_give_recipe_errors_never_tracebacks(path, tmp_path):
    """Fuzz: each int knob of a shipped recipe's model section at 0, 1, 2, 3, 7 and 33 (each list of ints as
    [], [1], six 1s and [513]), each bool knob the other way and each choice (a cell, an attention, an
    encoder) at its every other value; every schema-valid one is built on the recipe's own data (read again
    for a bool or a choice: `stateful` lays a text out otherwise). This found the conv stacks Keras could not
    build, resnet's `widths: []`, a DBN's `validate --build` and a language model that is not stateful, all
    tracebacks."""
    sets, data = _readable(path)
    model = load_recipe(path, sets).model
    knobs = [*_knobs(load_recipe(path, sets).to_dict()["model"], ("model",)), *_choices(model, ("model",))]
    found = _tracebacks(path, sets, knobs, tmp_path, data)
    assert not found, "\n".join(found)


@pytest.mark.slow  # 678 variants, each its data read: `make test-slow`
@pytest.mark.parametrize("path", [p for p in RECIPES if p.parent.name == "recipes"], ids=lambda p: p.stem)
def test_odd_data_and_train_choices_give_recipe_errors_never_tracebacks(path, tmp_path):
    """The same fuzz over the data and train sections' bools and choices (a text's level, a scale, a
    precision, a schedule), each variant's data read and its first batch drawn."""
    sets, _ = _readable(path)
    recipe = load_recipe(path, sets)
    knobs = [knob for section in ("data", "train") for knob in
             [*((k, v) for k, v in _knobs(recipe.to_dict()[section], (section,)) if isinstance(v[0], bool)),
              *_choices(getattr(recipe, section), (section,))]]
    found = _tracebacks(path, sets, knobs, tmp_path)
    assert not found, "\n".join(found)
