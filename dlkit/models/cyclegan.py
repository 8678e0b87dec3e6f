"""CycleGAN (Zhu et al., 2017): unpaired translation between two image domains.

Two generators (A->B and B->A: strided-conv encoder, residual blocks, transposed-conv decoder, instance
norm) and two discriminators (PatchGAN, or whole-image with `discriminator: image`), trained with
least-squares adversarial losses, the cycle losses |G_BA(G_AB(a)) - a| and |G_AB(G_BA(b)) - b| (weighted
`cycle_weight` and `cycle_weight_b`) and the identity loss |G_BA(a) - a| + |G_AB(b) - b|.

Domain A is `data`'s dataset, domain B is `data.domain_b` (e.g. `mnist_m`: MNIST digits blended over
CIFAR-10 patches). A grayscale domain is repeated to three channels when the other is in colour.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.knobs import MAX_REPEATS, Activation, InitializerConfig, ModelBase

TASK = "translation"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(ModelBase):
    arch: Literal["cyclegan"] = "cyclegan"
    filters: int = Field(32, ge=1)  # first generator layer; doubles at each of the two downsamplings
    residual_blocks: int = Field(3, ge=0, le=MAX_REPEATS)
    discriminator_filters: int = Field(32, ge=1)
    # patch: a score per overlapping patch (PatchGAN, the paper's); image: one score per image, after a third
    # stride-2 convolution, so that the whole translated image must look like the domain (a digit's shape)
    discriminator: Literal["patch", "image"] = "patch"
    cycle_weight: float = Field(10.0, ge=0)  # the paper's lambda
    # weight of the B -> A -> B cycle alone (null: cycle_weight). When B holds more than A can show (a colour
    # photo behind an MNIST-M digit), a full-weight B cycle pays the B->A generator to hide it in its output
    cycle_weight_b: float | None = Field(None, ge=0)
    identity_weight: float = Field(5.0, ge=0)  # 0.5 * lambda in the paper
    initializer: InitializerConfig = InitializerConfig(name="random_normal", stddev=0.02)
    activation: Activation = "relu"


def _norm():
    import keras

    return keras.layers.GroupNormalization(groups=-1)  # groups = channels: instance normalisation


def generator(config: Config, shape, name: str):
    import keras

    from dlkit.models import layers

    init = lambda: layers.initializer(config.initializer)  # noqa: E731 - a fresh initializer per layer
    f = config.filters
    x_in = keras.Input(shape)
    x = keras.layers.Conv2D(f, 7, padding="same", kernel_initializer=init())(x_in)
    x = keras.layers.Activation(config.activation)(_norm()(x))
    for mult in (2, 4):
        x = keras.layers.Conv2D(f * mult, 3, strides=2, padding="same", kernel_initializer=init())(x)
        x = keras.layers.Activation(config.activation)(_norm()(x))
    for _ in range(config.residual_blocks):
        y = keras.layers.Conv2D(f * 4, 3, padding="same", kernel_initializer=init())(x)
        y = keras.layers.Activation(config.activation)(_norm()(y))
        y = _norm()(keras.layers.Conv2D(f * 4, 3, padding="same", kernel_initializer=init())(y))
        x = keras.layers.Add()([x, y])
    for mult in (2, 1):
        x = keras.layers.Conv2DTranspose(f * mult, 3, strides=2, padding="same", kernel_initializer=init())(x)
        x = keras.layers.Activation(config.activation)(_norm()(x))
    # float32 under a mixed precision too (gan.generator)
    out = keras.layers.Conv2D(shape[-1], 7, padding="same", activation="tanh", kernel_initializer=init(),
                              dtype="float32")(x)
    return keras.Model(x_in, out, name=name)


def discriminator(config: Config, shape, name: str):
    """PatchGAN: a map of real/fake scores, one per overlapping patch; or one score per image."""
    import keras

    from dlkit.models import layers

    f = config.discriminator_filters
    init = lambda: layers.initializer(config.initializer)  # noqa: E731 - a fresh initializer per layer
    x_in = keras.Input(shape)
    x = keras.layers.Conv2D(f, 4, strides=2, padding="same", kernel_initializer=init())(x_in)
    x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Conv2D(f * 2, 4, strides=2, padding="same", kernel_initializer=init())(x)
    x = keras.layers.LeakyReLU(0.2)(_norm()(x))
    if config.discriminator == "image":
        x = keras.layers.Conv2D(f * 4, 4, strides=2, padding="same", kernel_initializer=init())(x)
        x = keras.layers.Flatten()(keras.layers.LeakyReLU(0.2)(_norm()(x)))
        return keras.Model(x_in, keras.layers.Dense(1, kernel_initializer=init(), dtype="float32")(x), name=name)
    out = keras.layers.Conv2D(1, 4, padding="same", kernel_initializer=init(), dtype="float32")(x)
    return keras.Model(x_in, out, name=name)


def build(config: Config, spec):
    from dlkit.errors import Problem, RecipeError
    from dlkit.models.steps import check_backend
    from dlkit.models.gan_model import CycleGAN

    check_backend(config.arch)
    h, w = spec.input_shape[:2]
    if h % 4 or w % 4:
        raise RecipeError([Problem("data", f"cyclegan downsamples twice: image sides must be divisible by 4; the "
                                   f"data has {spec.input_shape}")])
    shape = spec.input_shape
    return CycleGAN(
        generator_ab=generator(config, shape, "generator_ab"), generator_ba=generator(config, shape, "generator_ba"),
        discriminator_a=discriminator(config, shape, "discriminator_a"),
        discriminator_b=discriminator(config, shape, "discriminator_b"),
        cycle_weight=config.cycle_weight,
        cycle_weight_b=config.cycle_weight if config.cycle_weight_b is None else config.cycle_weight_b,
        identity_weight=config.identity_weight, name="cyclegan",
    )
