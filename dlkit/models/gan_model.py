"""The adversarial models: `GAN` (a generator and a discriminator, with InfoGAN's Q head and StackGAN's
second stage as options) and `CycleGAN` (two of each), on a shared `Adversarial` base.

Keras 3 style, on dlkit.models.steps.StepModel: the training `step` is written once, statefully, in
`keras.ops`; loss trackers are listed in `metrics`; randomness comes from the model's `SeedGenerator`
(saved with the model, so a checkpoint carries the RNG state); updates go through `StepModel.descend`.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from dlkit.models.steps import StepModel


class Adversarial(StepModel):
    """What adversarial models share: named sub-models, a generator and a discriminator optimizer, and the
    saving and loading of both.

    Subclasses list their sub-models in SUBMODELS, say which variables each optimizer trains
    (`g_variables`, `d_variables`), write their `step` and return their own arguments from `hyper_config`.
    """

    SUBMODELS: tuple = ()

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        super().compile(optimizer=None, **kwargs)
        if self.dtype_policy.name == "mixed_float16":  # each scales its losses, as Keras's compile has it
            g_optimizer, d_optimizer = (o if isinstance(o, keras.optimizers.LossScaleOptimizer) else
                                        keras.optimizers.LossScaleOptimizer(o, name=f"{o.name}_loss_scale")
                                        for o in (g_optimizer, d_optimizer))
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        # the optimizers' variables are made now, not at the first step: Keras's JAX trainer threads them
        # through its stateless train function, and under a TensorFlow MirroredStrategy a variable cannot be
        # created inside the replicas' traced step
        g_optimizer.build(self.g_variables())
        d_optimizer.build(self.d_variables())
        if keras.backend.backend() == "jax":
            self.optimizer = _OptimizerPair(g_optimizer, d_optimizer)

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return keras.saving.serialize_keras_object({"g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer})

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        # build the optimizers now, so that their saved state (iterations, moments) can be loaded into them
        for optimizer, variables in ((self.g_optimizer, self.g_variables()), (self.d_optimizer, self.d_variables())):
            if not optimizer.built:
                optimizer.build(variables)

    def hyper_config(self) -> dict:
        return {}

    def get_config(self):
        sub = {k: keras.saving.serialize_keras_object(getattr(self, k)) for k in self.SUBMODELS}
        return {**super().get_config(), **sub, **self.hyper_config(), "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for k in cls.SUBMODELS:
            config[k] = keras.saving.deserialize_keras_object(config[k]) if config.get(k) else None
        return cls(**config)


class _OptimizerPair:
    """What Keras's JAX trainer needs of `model.optimizer`: the variables of both optimizers, built."""

    built = True

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def variables(self):
        return [v for opt in self.optimizers for v in opt.variables]

    def build(self, variables):
        pass


def top_k_mask(scores, share):
    """1 for the ceil(share * batch) highest scores (at least one; ties all kept), else 0."""
    scores = ops.stop_gradient(ops.reshape(scores, (-1,)))
    k = ops.maximum(1, ops.cast(ops.ceil(share * ops.cast(ops.shape(scores)[0], "float32")), "int32"))
    threshold = ops.take(-ops.sort(-scores), k - 1)  # the k-th highest score
    return ops.cast(scores >= threshold, scores.dtype)


@dataclasses.dataclass(frozen=True)
class GanSettings:
    """The scalars that shape a GAN's training step, saved in its config. `of` takes them from a recipe's
    model section by name (`ema` is the section's name for `ema_decay`)."""

    latent_dim: int = 64
    num_classes: int = 0  # conditional models: labels as one-hot inputs to both networks
    categorical_codes: int = 0
    continuous_codes: int = 0
    objective: str = "minimax"
    label_smoothing: float = 0.0
    instance_noise: float = 0.0
    n_critic: int = 1
    gp_weight: float = 0.0
    clip_value: float = 0.0
    info_weight: float = 1.0
    continuous_weight: float = 0.1
    top_k: float = 1.0
    top_k_steps: int = 0  # set at compile time, from top_k_epochs and the epoch's length
    ema_decay: float = 0.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def of(cls, config, **given):
        from_config = {name: getattr(config, name) for name in cls.names() if name in type(config).model_fields}
        return cls(**{**from_config, "ema_decay": config.ema, **given})


@keras.saving.register_keras_serializable(package="dlkit")
class GAN(Adversarial):
    """Generator and discriminator trained against each other. For InfoGAN the discriminator has a second
    output, the Q head's code predictions, on the same trunk; for StackGAN the generator is two stages and
    `low_discriminator` judges the first.

    >>> gan = GAN(generator=g, discriminator=d, latent_dim=64)
    >>> gan.compile(g_optimizer=keras.optimizers.Adam(2e-4), d_optimizer=keras.optimizers.Adam(2e-4))
    >>> gan.fit(dataset_of_image_label_pairs, epochs=5)
    """

    SUBMODELS = ("generator", "discriminator", "low_discriminator", "generator_ema")

    def __init__(self, generator, discriminator, low_discriminator=None, generator_ema=None, settings=None,
                 seed=None, **kwargs):
        # the settings arrive as one GanSettings from build_gan, or as flat keys from a saved config
        flat = {k: kwargs.pop(k) for k in list(kwargs) if k in GanSettings.names()}
        settings = settings if settings is not None else GanSettings(**flat)
        super().__init__(seed=seed, **kwargs)
        self.generator, self.discriminator, self.low_discriminator = generator, discriminator, low_discriminator
        # an exponential moving average of the generator's weights, updated after each generator step;
        # it draws the samples (grids, generate, evaluate) when present
        self.generator_ema = generator_ema
        for key, value in dataclasses.asdict(settings).items():
            setattr(self, key, value)
        names = ["d_loss", "g_loss"]
        names += ["d_accuracy"] if self.objective == "minimax" else ["wasserstein"]
        names += ["gradient_penalty"] if self.gp_weight else []
        names += ["info_loss"] if self.codes else []
        self.track(*names)

    def call(self, latent, training=False):
        return self.sampler(latent, training=training)

    @property
    def sampler(self):
        """The generator that draws samples: the weight average if there is one, else the generator."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    def hyper_config(self):
        return {name: getattr(self, name) for name in GanSettings.names()}

    def g_variables(self):
        return self.generator.trainable_variables

    def d_variables(self):
        low = self.low_discriminator.trainable_variables if self.low_discriminator is not None else []
        return self.discriminator.trainable_variables + low

    # ------------------------------------------------------------ inputs

    @property
    def codes(self) -> int:
        return self.categorical_codes + self.continuous_codes

    def latent(self, batch, labels=None):
        """Generator input: noise, then one-hot labels (conditional) or codes (InfoGAN). Returns (input, codes)."""
        parts = [keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)]
        if self.num_classes:
            parts.append(ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), self.num_classes))
        codes = None
        if self.codes:
            code_parts = []
            if self.categorical_codes:
                cat = keras.random.randint((batch,), 0, self.categorical_codes, seed=self.seed_generator)
                code_parts.append(ops.one_hot(cat, self.categorical_codes))
            if self.continuous_codes:
                code_parts.append(keras.random.uniform((batch, self.continuous_codes), -1.0, 1.0,
                                                       seed=self.seed_generator))
            codes = ops.concatenate(code_parts, axis=-1)
            parts.append(codes)
        return (ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]), codes

    def with_labels(self, images, labels):
        """Conditional discriminators see the label as one-hot planes stacked on the image channels."""
        if not self.num_classes:
            return images
        onehot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), self.num_classes)
        shape = ops.shape(images)
        planes = ops.broadcast_to(onehot[:, None, None, :], (shape[0], shape[1], shape[2], self.num_classes))
        return ops.concatenate([images, ops.cast(planes, images.dtype)], axis=-1)

    def noisy(self, images):
        if not self.instance_noise:
            return images
        return images + self.instance_noise * keras.random.normal(ops.shape(images), seed=self.seed_generator)

    # ------------------------------------------------------------ losses

    def d_loss_fn(self, real, fake):
        if self.objective == "wasserstein":
            return ops.mean(fake) - ops.mean(real)
        bce = keras.losses.binary_crossentropy
        real_target = ops.full_like(real, 1.0 - self.label_smoothing)  # one-sided label smoothing
        return ops.mean(bce(real_target, real, from_logits=True)) + ops.mean(
            bce(ops.zeros_like(fake), fake, from_logits=True))

    def g_loss_fn(self, fake, share=1.0):
        """The generator's loss; with `share` < 1, over only that share of the fakes (top-k training)."""
        if self.objective == "wasserstein":
            per_sample = -ops.reshape(fake, (-1,))
        else:  # non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z)))
            per_sample = keras.losses.binary_crossentropy(ops.ones_like(fake), fake, from_logits=True)
        if self.top_k >= 1.0:
            return ops.mean(per_sample)
        keep = top_k_mask(fake, share)
        return ops.sum(per_sample * keep) / ops.sum(keep)

    def top_k_share(self):
        """The share of fakes the generator learns from at the current generator step (top-k training): 1
        falling linearly to `top_k` over `top_k_steps` generator steps."""
        if self.top_k >= 1.0 or not self.top_k_steps:
            return self.top_k
        progress = ops.minimum(1.0, ops.cast(self.g_optimizer.iterations, "float32") / float(self.top_k_steps))
        return 1.0 - (1.0 - self.top_k) * progress

    def fakes(self, z, y):
        """Generated discriminator inputs: [full] or, for StackGAN, [full, stage-I low resolution]."""
        if self.low_discriminator is None:
            return [self.with_labels(self.generator(z, training=True), y)]
        low = self.generator.get_layer("stage1")(z, training=True)
        full = self.generator.get_layer("stage2")([low, z], training=True)
        return [self.with_labels(full, y), self.with_labels(low, y)]

    def reals(self, x, y):
        if self.low_discriminator is None:
            return [self.with_labels(x, y)]
        return [self.with_labels(x, y), self.with_labels(ops.average_pool(x, 2, 2, padding="valid"), y)]

    def critic(self, images):
        """(logit, code predictions or None) from the discriminator."""
        out = self.discriminator(images, training=True)
        return (out[0], out[1]) if self.codes else (out, None)

    def info_loss_fn(self, predicted, codes):
        """-log Q(c|x): cross-entropy for the categorical code plus `continuous_weight` times the squared error
        of the continuous ones."""
        loss = 0.0
        k = self.categorical_codes
        if k:
            loss += ops.mean(keras.losses.categorical_crossentropy(codes[:, :k], predicted[:, :k], from_logits=True))
        if self.continuous_codes:
            loss += self.continuous_weight * ops.mean(ops.square(codes[:, k:] - predicted[:, k:]))
        return loss

    # ------------------------------------------------------------ training

    def step(self, data):
        x, y = data if isinstance(data, (tuple, list)) else (data, None)
        batch = ops.shape(x)[0]
        reals = self.reals(x, y)
        d_vars = self.d_variables()
        judges = [self.critic] + ([self.low_critic] if self.low_discriminator is not None else [])

        def d_objective(z, codes):
            fakes = self.fakes(z, y)
            d_loss = 0.0
            for judge, real_in, fake_in in zip(judges, reals, fakes):
                real_out, _ = judge(self.noisy(real_in))
                fake_out, predicted = judge(self.noisy(fake_in))
                d_loss += self.d_loss_fn(real_out, fake_out)
                if judge == self.critic:
                    main_real, main_fake, main_predicted = real_out, fake_out, predicted
            total = d_loss + sum(self.discriminator.losses)
            aux = {"d_loss": d_loss, "real": main_real, "fake": main_fake}
            if self.gp_weight:
                aux["gp"] = self.gradient_penalty(reals[0], fakes[0])
                total += self.gp_weight * aux["gp"]
            if self.codes:  # the Q head learns to read the codes back
                aux["info"] = self.info_loss_fn(main_predicted, codes)
                total += self.info_weight * aux["info"]
            return total, aux

        for _ in range(self.n_critic):
            z, codes = self.latent(batch, y)
            d_aux = self.descend(self.d_optimizer, lambda: d_objective(z, codes), d_vars)
            if self.clip_value:
                for v in d_vars:
                    v.assign(ops.clip(v, -self.clip_value, self.clip_value))

        z, codes = self.latent(batch, y)
        g_vars = self.g_variables()
        share = self.top_k_share()  # read here: the optimizer's step counter is not visible inside a JAX gradient

        def g_objective():
            g_loss = 0.0
            for judge, fake_in in zip(judges, self.fakes(z, y)):
                fake_out, predicted = judge(self.noisy(fake_in))
                g_loss += self.g_loss_fn(fake_out, share)
                if judge == self.critic:
                    main_predicted = predicted
            total = g_loss + sum(self.generator.losses)
            aux = {"g_loss": g_loss}
            if self.codes:  # and the generator learns to keep them readable
                aux["info"] = self.info_loss_fn(main_predicted, codes)
                total += self.info_weight * aux["info"]
            return total, aux

        g_aux = self.descend(self.g_optimizer, g_objective, g_vars)
        if self.generator_ema is not None:
            self.update_ema()

        d_loss, g_loss, main_real, main_fake = d_aux["d_loss"], g_aux["g_loss"], d_aux["real"], d_aux["fake"]
        gp, info = d_aux.get("gp"), g_aux.get("info")
        t = self.trackers
        t["d_loss"].update_state(d_loss)
        t["g_loss"].update_state(g_loss)
        if "d_accuracy" in t:
            correct = ops.concatenate([ops.cast(main_real > 0, "float32"), ops.cast(main_fake < 0, "float32")], axis=0)
            t["d_accuracy"].update_state(ops.mean(correct))
        else:
            t["wasserstein"].update_state(ops.mean(main_real) - ops.mean(main_fake))
        if "gradient_penalty" in t:
            t["gradient_penalty"].update_state(gp)
        if "info_loss" in t:
            t["info_loss"].update_state(info)
        return {m.name: m.result() for m in self.metrics}

    def update_ema(self):
        """average <- d * average + (1 - d) * weights, with d warmed up as (1 + t) / (10 + t) early on so
        that the average is not dominated by the random initial weights (batch-norm statistics included)."""
        step = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        for average, current in zip(self.generator_ema.weights, self.generator.weights):
            average.assign(decay * average + (1.0 - decay) * ops.cast(current, average.dtype))

    def low_critic(self, images):
        return self.low_discriminator(images, training=True), None

    def gradient_penalty(self, real_in, fake_in):
        """WGAN-GP: (||grad_x D(x_hat)|| - 1)^2 at random points between real and fake inputs."""
        eps = keras.random.uniform((ops.shape(real_in)[0], 1, 1, 1), seed=self.seed_generator)
        mixed = eps * real_in + (1.0 - eps) * fake_in
        grads = self.input_grad(lambda images: self.critic(images)[0], mixed)
        norm = ops.sqrt(ops.sum(ops.square(grads), axis=(1, 2, 3)) + 1e-12)
        return ops.mean(ops.square(norm - 1.0))


@keras.saving.register_keras_serializable(package="dlkit")
class CycleGAN(Adversarial):
    """Two generators and two discriminators; data is ((x_a, x_b), labels), the domains unpaired."""

    SUBMODELS = ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")

    def __init__(self, generator_ab, generator_ba, discriminator_a, discriminator_b, cycle_weight=10.0,
                 identity_weight=5.0, cycle_weight_b=10.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.generator_ab, self.generator_ba = generator_ab, generator_ba
        self.discriminator_a, self.discriminator_b = discriminator_a, discriminator_b
        self.cycle_weight, self.identity_weight = cycle_weight, identity_weight
        self.cycle_weight_b = cycle_weight_b  # the B -> A -> B cycle's own weight
        self.track("d_loss", "g_loss", "cycle_loss", "identity_loss")

    def call(self, images_a, training=False):
        return self.generator_ab(images_a, training=training)

    def hyper_config(self):
        return {"cycle_weight": self.cycle_weight, "cycle_weight_b": self.cycle_weight_b,
                "identity_weight": self.identity_weight}

    def g_variables(self):
        return self.generator_ab.trainable_variables + self.generator_ba.trainable_variables

    def d_variables(self):
        return self.discriminator_a.trainable_variables + self.discriminator_b.trainable_variables

    def step(self, data):
        (a, b), _ = data
        mse = lambda out, target: ops.mean(ops.square(out - target))  # noqa: E731 - least-squares GAN
        l1 = lambda x, y: ops.mean(ops.abs(x - y))  # noqa: E731
        g_vars = self.g_variables()

        def g_objective():
            fake_b, fake_a = self.generator_ab(a, training=True), self.generator_ba(b, training=True)
            cycle_a = l1(self.generator_ba(fake_b, training=True), a)
            cycle_b = l1(self.generator_ab(fake_a, training=True), b)
            identity = 0.0
            if self.identity_weight:
                identity = l1(self.generator_ba(a, training=True), a) + l1(self.generator_ab(b, training=True), b)
            adversarial = mse(self.discriminator_b(fake_b, training=True), 1.0) + \
                mse(self.discriminator_a(fake_a, training=True), 1.0)
            cycle = cycle_a + cycle_b  # logged unweighted, as before
            g_loss = adversarial + self.cycle_weight * cycle_a + self.cycle_weight_b * cycle_b + \
                self.identity_weight * identity
            return g_loss, {"adversarial": adversarial, "cycle": cycle, "identity": identity,
                            "fake_a": fake_a, "fake_b": fake_b}

        g_aux = self.descend(self.g_optimizer, g_objective, g_vars)
        # the discriminators judge this step's translations (as before the generator update), held fixed
        fake_a, fake_b = ops.stop_gradient(g_aux["fake_a"]), ops.stop_gradient(g_aux["fake_b"])

        d_vars = self.d_variables()

        def d_objective():
            d_loss = 0.5 * (mse(self.discriminator_a(a, training=True), 1.0) +
                            mse(self.discriminator_a(fake_a, training=True), 0.0) +
                            mse(self.discriminator_b(b, training=True), 1.0) +
                            mse(self.discriminator_b(fake_b, training=True), 0.0))
            return d_loss, d_loss

        d_loss = self.descend(self.d_optimizer, d_objective, d_vars)
        adversarial, cycle, identity = g_aux["adversarial"], g_aux["cycle"], g_aux["identity"]
        for name, value in (("d_loss", d_loss), ("g_loss", adversarial), ("cycle_loss", cycle),
                            ("identity_loss", identity)):
            self.trackers[name].update_state(value)
        return {m.name: m.result() for m in self.metrics}
