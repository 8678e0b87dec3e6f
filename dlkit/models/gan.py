"""What the GAN architectures share: their recipe sections, the two convolutional networks, and the
adversarial `GAN` model whose `train_step` alternates critic and generator updates.

Each architecture module (dcgan, cgan, wgan, wgan_gp, infogan) is a thin face over this: its `Config`
sets the defaults that define it (objective, conditioning, n_critic, ...), and `build` calls `build_gan`.

Images are generated in [-1, 1] (tanh), so GAN recipes use `data.scale: symmetric`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dlkit.models.knobs import Activation, InitializerConfig, KnobOverrides, ModelBase

# each critic step is written out in the traced training step (a Python loop): a two-step run of wgan_mnist
# took 262 s and 5 GB at n_critic 200 on the 2-core CPU machine (50: 62 s, 2.4 GB; 5: 13 s, 1.3 GB). Papers
# use 5; WGAN's 100 (its critic's first steps) is the most, so no run trained before this bound is refused
MAX_CRITIC_STEPS = 100


class GeneratorConfig(KnobOverrides):
    """latent -> dense to (H/2^n, W/2^n, filters[0]) -> n transposed convs (x2 each) -> image (tanh)."""

    filters: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    kernel_size: int = Field(4, ge=1)
    activation: Activation | None = "relu"
    batch_norm: Literal["none", "before", "after"] | None = "before"


class DiscriminatorConfig(KnobOverrides):
    """image -> strided convs (/2 each) -> flatten -> one unscaled logit (a critic score for WGANs)."""

    filters: list[int] = Field(default_factory=lambda: [64, 128], min_length=1)
    kernel_size: int = Field(4, ge=1)
    activation: Activation | None = "leaky_relu"
    dropout: float | None = Field(0.3, ge=0, lt=1)
    batch_norm: Literal["none", "before", "after"] | None = "none"
    # divide every weight layer's kernel (the convs and the logit) by its largest singular value, estimated by
    # one power iteration per training call (Miyato et al., 2018), so the discriminator stays 1-Lipschitz
    spectral_norm: bool = False


def spectral(layer, config: "GanConfig"):
    """The layer wrapped in Keras's SpectralNormalization when the discriminator asks for it."""
    import keras

    if not config.discriminator.spectral_norm:
        return layer
    return keras.layers.SpectralNormalization(layer, dtype=layer.dtype_policy)  # a float32 output stays so


class GanConfig(ModelBase):
    latent_dim: int = Field(64, ge=1)
    # standard deviation of the Gaussian noise next to the labels or codes (ClusterGAN's sigma); below 1 the
    # one-hot label or code, not the noise, becomes the main source of variation the generator sees
    noise_scale: float = Field(1.0, gt=0)
    initializer: InitializerConfig = InitializerConfig(name="random_normal", stddev=0.02)  # DCGAN paper
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    objective: Literal["minimax", "wasserstein"] = "minimax"  # minimax: non-saturating BCE on logits
    conditional: bool = False  # labels into both networks (cgan, stackgan)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # one-sided: real targets become 1 - this
    instance_noise: float = Field(0.0, ge=0)  # stddev of Gaussian noise added to D's real and fake inputs
    n_critic: int = Field(1, ge=1, le=MAX_CRITIC_STEPS)  # discriminator steps per generator step
    gp_weight: float = Field(0.0, ge=0)  # WGAN-GP gradient penalty weight
    clip_value: float = Field(0.0, ge=0)  # WGAN weight clipping of the critic; 0 turns it off
    categorical_codes: int = Field(0, ge=0)  # InfoGAN: size of the categorical code (0: none)
    continuous_codes: int = Field(0, ge=0)  # InfoGAN: number of uniform(-1, 1) codes
    info_weight: float = Field(1.0, ge=0)  # InfoGAN: weight of the mutual-information loss
    # InfoGAN: the continuous codes' share of that loss. The paper keeps it below the categorical code's 1:
    # at full weight the cheapest way to make a continuous code readable is to change the digit with it.
    continuous_weight: float = Field(0.1, ge=0)
    # decay of an exponential moving average of the generator's weights, which then draws the samples
    # (grids, generate, evaluate); 0 turns it off. 0.999 averages over roughly the last thousand steps.
    ema: float = Field(0.0, ge=0, lt=1)
    # top-k training (Sinha et al., 2020): the generator learns only from the share of each batch's fakes that
    # the discriminator rates most real. The share falls linearly from 1 to `top_k` over the first
    # `top_k_epochs` epochs (0: `top_k` from the start); 1 turns it off.
    top_k: float = Field(1.0, gt=0, le=1)
    top_k_epochs: float = Field(0.0, ge=0)

    IDLE = (
        ("label_smoothing", lambda c: c.objective == "wasserstein",
         "label_smoothing softens the minimax objective's real targets; the wasserstein critic has no targets "
         "(remove it)"),
        ("top_k_epochs", lambda c: c.top_k >= 1,
         "top_k_epochs is how long the share falls from 1 to top_k, and top_k is 1 (off): set top_k below 1 (0.5), "
         "or remove top_k_epochs"),
        ("info_weight", lambda c: not (c.categorical_codes or c.continuous_codes),
         "info_weight weighs InfoGAN's code loss, and this GAN has no codes (categorical_codes and continuous_codes "
         "are 0): set one, or remove info_weight"),
        ("continuous_weight", lambda c: not c.continuous_codes,
         "continuous_weight weighs the continuous codes' share of the code loss, and continuous_codes is 0: set it, "
         "or remove continuous_weight"),
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.objective == "minimax" and (self.gp_weight or self.clip_value):
            raise ValueError("gp_weight and clip_value belong to the wasserstein objective")
        return self


# ---------------------------------------------------------------- networks


def _check_geometry(spec, n: int):
    from dlkit.errors import Problem, RecipeError

    h, w = spec.input_shape[:2]
    if len(spec.input_shape) != 3 or h % 2**n or w % 2**n:
        raise RecipeError([Problem("model.generator.filters", f"{n} upsampling stages need image sides divisible by "
                                   f"{2 ** n}; the data has shape {spec.input_shape}",
                                   hint="use fewer generator filters entries")])


def scaled_noise(config: GanConfig, latent, extra_inputs: int):
    """The latent with its noise part multiplied by `noise_scale` (a fixed layer inside the generator, so
    that every sampler keeps drawing standard normal noise)."""
    import keras

    if config.noise_scale == 1.0:
        return latent
    scale = [config.noise_scale] * config.latent_dim + [1.0] * extra_inputs
    return keras.layers.Rescaling(scale, name="noise_scale")(latent)


def generator(config: GanConfig, spec, extra_inputs: int):
    """latent (+ one-hot label or codes) -> image in [-1, 1]."""
    import keras

    from dlkit.models import layers

    net = config.generator
    knobs = net.resolve(config)
    n = len(net.filters)
    _check_geometry(spec, n)
    h, w, channels = spec.input_shape
    z = keras.Input((config.latent_dim + extra_inputs,), name="latent")
    x = keras.layers.Dense((h >> n) * (w >> n) * net.filters[0], **layers.weights(knobs))(
        scaled_noise(config, z, extra_inputs))
    x = layers.finish(x, knobs, dropout=False)
    x = keras.layers.Reshape((h >> n, w >> n, net.filters[0]))(x)
    for filters in net.filters[1:] + [net.filters[-1]]:
        x = keras.layers.Conv2DTranspose(filters, net.kernel_size, strides=2, padding="same", **layers.weights(knobs))(x)
        x = layers.finish(x, knobs, dropout=False)
    # the outputs of a GAN's nets in float32 under a mixed precision (layers.classifier_head): the losses
    # and the gradient penalty mix them with float32 images and constants
    image = keras.layers.Conv2D(channels, 3, padding="same", activation="tanh", name="image", dtype="float32",
                                kernel_initializer=layers.initializer(knobs.initializer))(x)
    return keras.Model(z, image, name="generator")


def discriminator_trunk(config: GanConfig, spec, label_channels: int):
    """image (+ one-hot label planes) -> flat features."""
    import keras

    from dlkit.models import layers

    net = config.discriminator
    knobs = net.resolve(config)
    h, w, channels = spec.input_shape
    image = keras.Input((h, w, channels + label_channels), name="image")
    # no normalisation on the first layer (DCGAN paper): it would wash out the input statistics
    first = knobs.model_copy(update={"batch_norm": "none"})
    x = image
    for i, filters in enumerate(net.filters):
        layer_knobs = knobs if i else first
        conv = keras.layers.Conv2D(filters, net.kernel_size, strides=2, padding="same", **layers.weights(layer_knobs))
        x = layers.finish(spectral(conv, config)(x), layer_knobs)
    return image, keras.layers.Flatten()(x)


def ema_copy(generator):
    """A frozen copy of a generator with its weights, to hold their moving average."""
    import keras

    copy = keras.models.clone_model(generator)
    copy.set_weights(generator.get_weights())
    copy.trainable = False
    copy.name = "generator_ema"
    return copy


def build_gan(config: GanConfig, spec, name: str):
    import keras

    from dlkit.models.gan_model import GAN, GanSettings

    from dlkit.models.steps import check_backend

    check_backend(config.arch)
    k = spec.num_classes if config.conditional else 0
    codes = config.categorical_codes + config.continuous_codes
    g = generator(config, spec, extra_inputs=k + codes)
    image, features = discriminator_trunk(config, spec, label_channels=k)
    logit = spectral(keras.layers.Dense(1, name="logit", dtype="float32"), config)(features)
    outputs = logit
    if codes:
        # InfoGAN's Q head: a second output on the discriminator's trunk, predicting the codes
        h = keras.layers.Dense(128, activation="leaky_relu", name="q_hidden")(features)
        outputs = [logit, keras.layers.Dense(codes, name="codes", dtype="float32")(h)]
    d = keras.Model(image, outputs, name="discriminator")
    return GAN(generator=g, discriminator=d, generator_ema=ema_copy(g) if config.ema else None,
               settings=GanSettings.of(config, num_classes=k), name=name)


# ---------------------------------------------------------------- sampling inputs (numpy: the same whatever the model's RNG state)


def latent_inputs(gan, n: int, rng: np.random.Generator, labels=None, categorical=None, continuous=None) -> np.ndarray:
    """The generator's input, built with numpy so that it is the same whatever the model's RNG state."""
    parts = [rng.standard_normal((n, gan.latent_dim)).astype(np.float32)]
    if gan.num_classes:
        labels = rng.integers(0, gan.num_classes, n) if labels is None else np.asarray(labels)
        parts.append(np.eye(gan.num_classes, dtype=np.float32)[labels])
    if gan.categorical_codes:
        categorical = rng.integers(0, gan.categorical_codes, n) if categorical is None else np.asarray(categorical)
        parts.append(np.eye(gan.categorical_codes, dtype=np.float32)[categorical])
    if gan.continuous_codes:
        cont = rng.uniform(-1, 1, (n, gan.continuous_codes)) if continuous is None else np.asarray(continuous)
        parts.append(np.broadcast_to(cont, (n, gan.continuous_codes)).astype(np.float32))
    return np.concatenate(parts, axis=1)


def grid_layout(gan, columns: int = 8) -> tuple[int, dict]:
    """Rows and latent arguments of a fixed sample grid: a row per class (or per categorical code) if any."""
    k = gan.num_classes or gan.categorical_codes
    if k:
        per_row = np.repeat(np.arange(k), columns)
        key = "labels" if gan.num_classes else "categorical"
        extra = {key: per_row}
        if gan.continuous_codes:
            extra["continuous"] = np.zeros((k * columns, gan.continuous_codes))
        return k, extra
    return columns, {}
