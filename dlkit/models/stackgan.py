"""StackGAN, class-conditional (Zhang et al., 2017): two generator stages, each with its own discriminator.

Stage I draws a low-resolution image (half the data's size, e.g. 14x14 for MNIST) from noise and the
one-hot label. Stage II refines it to full resolution, conditioned on the stage-I image and the same
latent vector (noise and label), through residual blocks and one upsampling. A low-resolution
discriminator judges stage I against real images average-pooled by 2; the full-resolution one judges
stage II. Both stages train together on the sum of their adversarial losses (as in StackGAN++), so one
recipe trains the whole stack. The run's generator is the composite: latent -> stage I -> stage II.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.gan import DiscriminatorConfig, GanConfig, GeneratorConfig
from dlkit.models.knobs import MAX_REPEATS, Activation, KnobOverrides

TASK = "adversarial"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class RefinerConfig(KnobOverrides):
    """Stage II: (stage-I image, latent) -> residual blocks -> x2 upsampling -> image."""

    filters: int = Field(64, ge=1)
    residual_blocks: int = Field(2, ge=0, le=MAX_REPEATS)
    activation: Activation | None = "relu"
    batch_norm: Literal["none", "before", "after"] | None = "before"


class Config(GanConfig):
    arch: Literal["stackgan"] = "stackgan"
    conditional: bool = True
    generator: GeneratorConfig = GeneratorConfig(filters=[128])  # stage I: to half resolution
    refiner: RefinerConfig = RefinerConfig()
    low_discriminator: DiscriminatorConfig = DiscriminatorConfig(filters=[64])  # judges stage I
    categorical_codes: Literal[0] = 0  # InfoGAN's codes are not part of the stack
    continuous_codes: Literal[0] = 0


def build(config: Config, spec):
    import keras

    from dlkit.models import gan, layers
    from dlkit.data.spec import DataSpec
    from dlkit.models.gan_model import GAN, GanSettings

    h, w, c = spec.input_shape
    if h % 2 or w % 2:
        from dlkit.errors import Problem, RecipeError

        raise RecipeError([Problem("data", f"stackgan needs even image sides; the data has {spec.input_shape}")])
    k = spec.num_classes
    low_spec = DataSpec(input_shape=(h // 2, w // 2, c), num_classes=k)
    stage1 = gan.generator(config, low_spec, extra_inputs=k)
    stage1.name = "stage1"

    knobs = config.refiner.resolve(config)
    low = keras.Input((h // 2, w // 2, c), name="stage1_image")
    latent = keras.Input((config.latent_dim + k,), name="latent")
    # the latent (noise and label) as a few feature planes next to the stage-I image
    planes = keras.layers.Dense((h // 2) * (w // 2) * 4)(gan.scaled_noise(config, latent, k))
    planes = keras.layers.Reshape((h // 2, w // 2, 4))(planes)
    x = keras.layers.Concatenate()([low, planes])
    x = layers.finish(keras.layers.Conv2D(config.refiner.filters, 3, padding="same", **layers.weights(knobs))(x), knobs, False)
    for _ in range(config.refiner.residual_blocks):
        y = layers.finish(keras.layers.Conv2D(config.refiner.filters, 3, padding="same", **layers.weights(knobs))(x), knobs, False)
        y = keras.layers.Conv2D(config.refiner.filters, 3, padding="same", **layers.weights(knobs))(y)
        x = keras.layers.Activation(knobs.activation)(keras.layers.Add()([x, y]))
    x = keras.layers.Conv2DTranspose(config.refiner.filters, 4, strides=2, padding="same", **layers.weights(knobs))(x)
    x = layers.finish(x, knobs, False)
    image = keras.layers.Conv2D(c, 3, padding="same", activation="tanh", name="image", dtype="float32",
                                kernel_initializer=layers.initializer(knobs.initializer))(x)
    stage2 = keras.Model([low, latent], image, name="stage2")

    z = keras.Input((config.latent_dim + k,), name="latent")
    composite = keras.Model(z, stage2([stage1(z), z]), name="generator")

    def discriminator(net_config, net_spec, name):
        net = config.model_copy(update={"discriminator": net_config})
        image_in, features = gan.discriminator_trunk(net, net_spec, label_channels=k)
        logit = gan.spectral(keras.layers.Dense(1, name="logit", dtype="float32"), net)(features)
        return keras.Model(image_in, logit, name=name)

    return GAN(
        generator=composite, discriminator=discriminator(config.discriminator, spec, "discriminator"),
        low_discriminator=discriminator(config.low_discriminator, low_spec, "low_discriminator"),
        generator_ema=gan.ema_copy(composite) if config.ema else None,
        settings=GanSettings.of(config, num_classes=k), name="stackgan",
    )
