"""One side of the DCGAN step benchmark: time `steps` GAN train steps on MNIST, after a warm-up.

    python benchmarks/dcgan_step.py dlkit|plain DATA_DIR [STEPS] [--set key=value ...]
    KERAS_BACKEND=jax python benchmarks/dcgan_step.py plain-jax DATA_DIR [STEPS] [--batch 256]

`dlkit` builds recipes/gan_mnist.yaml's model and data through dlkit; `plain` is the same architecture and
the same train step (label smoothing, the discriminator's batch norm, top-k training, the generator weight
average) written by hand in Keras, keras-io style, at the recipe's batch size, on TensorFlow; `plain-jax` is
that step again for JAX (the GPU host has no TensorFlow), a jitted loop over data held on the device.
Prints one JSON line.
"""

import json
import sys
import time

import numpy as np
from plain_data import read_idx


BATCH = 64  # recipes/gan_mnist.yaml's; the two sides report theirs and the benchmark checks they agree


def plain_networks(latent_dim=64):
    """The generator, the discriminator and the generator's weight average of recipes/gan_mnist.yaml."""
    import keras

    init = keras.initializers.RandomNormal(stddev=0.02)
    z = keras.Input((latent_dim,))
    x = keras.layers.Dense(7 * 7 * 256, use_bias=False, kernel_initializer=init)(z)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    x = keras.layers.Reshape((7, 7, 256))(x)  # generator filters [256, 128]: 7x7x256 -> 14x14x128 -> 28x28x128
    for _ in range(2):
        x = keras.layers.Conv2DTranspose(128, 4, strides=2, padding="same", use_bias=False, kernel_initializer=init)(x)
        x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    g = keras.Model(z, keras.layers.Conv2D(1, 3, padding="same", activation="tanh", kernel_initializer=init)(x))
    img = keras.Input((28, 28, 1))
    y = img
    for i, f in enumerate((64, 128, 256)):  # batch norm after every conv but the first (the conv's bias goes)
        y = keras.layers.Conv2D(f, 4, strides=2, padding="same", use_bias=not i, kernel_initializer=init)(y)
        y = keras.layers.Activation("leaky_relu")(keras.layers.BatchNormalization()(y) if i else y)
    d = keras.Model(img, keras.layers.Dense(1)(keras.layers.Flatten()(y)))
    g_ema = keras.models.clone_model(g)  # the moving average of the generator's weights that draws samples
    g_ema.set_weights(g.get_weights())
    g_ema.trainable = False
    return g, d, g_ema


def plain_gan(latent_dim=64, smoothing=0.1, ema_decay=0.999, top_k=0.5, top_k_steps=10 * 938):
    import keras
    import tensorflow as tf

    g, d, g_ema = plain_networks(latent_dim)

    class GAN(keras.Model):
        def __init__(self):
            super().__init__()
            self.g, self.d, self.g_ema = g, d, g_ema
            self.seed = keras.random.SeedGenerator(1)
            self.d_tracker, self.g_tracker = keras.metrics.Mean(name="d_loss"), keras.metrics.Mean(name="g_loss")

        @property
        def metrics(self):
            return [self.d_tracker, self.g_tracker]

        def compile(self, d_opt, g_opt):
            super().compile()
            self.d_opt, self.g_opt = d_opt, g_opt

        def train_step(self, data):
            real, _ = data
            n = tf.shape(real)[0]
            bce = keras.losses.binary_crossentropy
            noise = keras.random.normal((n, latent_dim), seed=self.seed)
            with tf.GradientTape() as tape:
                real_out = self.d(real, training=True)
                fake_out = self.d(self.g(noise, training=True), training=True)
                d_loss = tf.reduce_mean(bce(tf.fill(tf.shape(real_out), 1.0 - smoothing), real_out, from_logits=True)) \
                    + tf.reduce_mean(bce(tf.zeros_like(fake_out), fake_out, from_logits=True))
            self.d_opt.apply(tape.gradient(d_loss, self.d.trainable_variables), self.d.trainable_variables)
            noise = keras.random.normal((n, latent_dim), seed=self.seed)
            # top-k training: the loss over the fakes D rates highest, a share annealed from 1 to top_k
            share = 1.0 - (1.0 - top_k) * tf.minimum(1.0, tf.cast(self.g_opt.iterations, tf.float32) / top_k_steps)
            with tf.GradientTape() as tape:
                fake_out = self.d(self.g(noise, training=True), training=True)
                scores = tf.stop_gradient(tf.reshape(fake_out, [-1]))
                k = tf.maximum(1, tf.cast(tf.math.ceil(share * tf.cast(n, tf.float32)), tf.int32))
                keep = tf.cast(scores >= tf.math.top_k(scores, k).values[-1], tf.float32)
                per_sample = bce(tf.ones_like(fake_out), fake_out, from_logits=True)
                g_loss = tf.reduce_sum(per_sample * keep) / tf.reduce_sum(keep)
            self.g_opt.apply(tape.gradient(g_loss, self.g.trainable_variables), self.g.trainable_variables)
            step = tf.cast(self.g_opt.iterations, tf.float32)
            decay = tf.minimum(ema_decay, (1.0 + step) / (10.0 + step))
            for average, weight in zip(self.g_ema.weights, self.g.weights):
                average.assign(decay * average + (1.0 - decay) * weight)
            self.d_tracker.update_state(d_loss)
            self.g_tracker.update_state(g_loss)
            return {m.name: m.result() for m in self.metrics}

    gan = GAN()
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    return gan


def plain_jax(folder, steps, batch, latent_dim=64, smoothing=0.1, ema_decay=0.999, top_k=0.5, top_k_steps=10 * 235):
    """The same networks and step, hand-written for the JAX backend as keras-io's "training loop from scratch
    in JAX" guide does it: `stateless_call`, `jax.value_and_grad`, `optimizer.stateless_apply`, one jitted
    function, the whole training set on the device and each batch sliced from it there. The fastest Keras
    this step can be written as: the reference dlkit's `fit` is held against on a GPU. Returns the JSON row."""
    import jax
    import jax.numpy as jnp
    import keras

    keras.utils.set_random_seed(42)
    images = read_idx(f"{folder}/mnist/train-images-idx3-ubyte.gz")[..., None].astype("float32") * (2 / 255) - 1
    images = jnp.asarray(images[np.random.default_rng(42).permutation(len(images))])
    per_epoch = len(images) // batch
    g, d, g_ema = plain_networks(latent_dim)
    g_opt, d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5)
    g_opt.build(g.trainable_variables)
    d_opt.build(d.trainable_variables)
    bce = keras.losses.binary_crossentropy
    # where each of the generator's weights (the average's order) sits among its trainable / other variables
    ids = {id(v): (0, i) for i, v in enumerate(g.trainable_variables)}
    ids.update({id(v): (1, i) for i, v in enumerate(g.non_trainable_variables)})
    where = [ids[id(v)] for v in g.weights]

    def d_loss(d_tv, d_ntv, g_tv, g_ntv, real, key):
        noise = jax.random.normal(key, (batch, latent_dim))
        fake, g_ntv = g.stateless_call(g_tv, g_ntv, noise, training=True)
        real_out, d_ntv = d.stateless_call(d_tv, d_ntv, real, training=True)
        fake_out, d_ntv = d.stateless_call(d_tv, d_ntv, fake, training=True)
        loss = jnp.mean(bce(jnp.full_like(real_out, 1.0 - smoothing), real_out, from_logits=True)) \
            + jnp.mean(bce(jnp.zeros_like(fake_out), fake_out, from_logits=True))
        return loss, (d_ntv, g_ntv)

    def g_loss(g_tv, g_ntv, d_tv, d_ntv, key, share):
        noise = jax.random.normal(key, (batch, latent_dim))
        fake, g_ntv = g.stateless_call(g_tv, g_ntv, noise, training=True)
        fake_out, d_ntv = d.stateless_call(d_tv, d_ntv, fake, training=True)
        scores = jax.lax.stop_gradient(fake_out.reshape(-1))
        k = jnp.maximum(1, jnp.ceil(share * batch).astype("int32"))  # top-k training, as dlkit's step
        keep = (scores >= jnp.take(-jnp.sort(-scores), k - 1)).astype("float32")
        per_sample = bce(jnp.ones_like(fake_out), fake_out, from_logits=True)
        return jnp.sum(per_sample * keep) / jnp.sum(keep), (g_ntv, d_ntv)

    @jax.jit
    def step(state, images, i):
        d_tv, d_ntv, d_ov, g_tv, g_ntv, g_ov, ema, key = state
        key, k1, k2 = jax.random.split(key, 3)
        real = jax.lax.dynamic_slice_in_dim(images, (i % per_epoch) * batch, batch)
        (dl, (d_ntv, g_ntv)), grads = jax.value_and_grad(d_loss, has_aux=True)(d_tv, d_ntv, g_tv, g_ntv, real, k1)
        d_tv, d_ov = d_opt.stateless_apply(d_ov, grads, d_tv)
        share = 1.0 - (1.0 - top_k) * jnp.minimum(1.0, i / top_k_steps)
        (gl, (g_ntv, d_ntv)), grads = jax.value_and_grad(g_loss, has_aux=True)(g_tv, g_ntv, d_tv, d_ntv, k2, share)
        g_tv, g_ov = g_opt.stateless_apply(g_ov, grads, g_tv)
        decay = jnp.minimum(ema_decay, (1.0 + i) / (10.0 + i))
        ema = [decay * a + (1.0 - decay) * (g_tv, g_ntv)[kind][j] for a, (kind, j) in zip(ema, where)]
        return (d_tv, d_ntv, d_ov, g_tv, g_ntv, g_ov, ema, key), (dl, gl)

    values = lambda vs: [v.value for v in vs]  # noqa: E731
    state = (values(d.trainable_variables), values(d.non_trainable_variables), values(d_opt.variables),
             values(g.trainable_variables), values(g.non_trainable_variables), values(g_opt.variables),
             values(g_ema.weights), jax.random.PRNGKey(42))
    for i in range(20):  # trace and warm up
        state, losses = step(state, images, i)
    jax.block_until_ready(losses)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(20, 20 + steps):
        state, losses = step(state, images, i)
    jax.block_until_ready((state, losses))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    if not all(np.isfinite(float(x)) for x in losses):
        sys.exit(f"plain-jax: losses not finite after {steps} steps: {losses}")
    return {"side": "plain-jax", "steps": steps, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "steps_per_s": steps / seconds, "params": g.count_params() + d.count_params(), "batch": batch,
            "d_loss": float(losses[0]), "g_loss": float(losses[1])}


def main():
    side, folder = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    if side == "plain-jax":  # [--batch B]
        batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 256
        print(json.dumps(plain_jax(folder, steps, batch)))
        return
    if side == "dlkit":
        import os

        os.environ["DLKIT_DATA_DIR"] = folder
        from dlkit.tasks import load_recipe
        from dlkit.training.session import Session

        overrides = [a for a in sys.argv[4:] if a != "--set"]  # e.g. train.deterministic=false
        recipe = load_recipe("recipes/gan_mnist.yaml", overrides)
        session = Session.open(recipe)
        gan = session.model()
        train = session.data.feed.epochs(0, None)  # tf.data's endless stream, or (no TensorFlow) one epoch's PyDataset
        params, batch = gan.generator.count_params() + gan.discriminator.count_params(), recipe.data.batch_size
    else:
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(42)
        x = read_idx(f"{folder}/mnist/train-images-idx3-ubyte.gz")[..., None]
        y = read_idx(f"{folder}/mnist/train-labels-idx1-ubyte.gz")
        a, b = np.float32(2 / 255), np.float32(-1)
        train = (tf.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(60000, seed=42).batch(BATCH)
                 .map(lambda xb, yb: (tf.cast(xb, tf.float32) * a + b, yb)).prefetch(tf.data.AUTOTUNE).repeat())
        gan = plain_gan()
        params, batch = gan.g.count_params() + gan.d.count_params(), BATCH
    gan.fit(train, steps_per_epoch=20, epochs=1, verbose=0)  # trace and warm up
    start, cpu = time.perf_counter(), time.process_time()
    gan.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"side": side, "steps": steps, "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "steps_per_s": steps / seconds, "params": params, "batch": batch}))


if __name__ == "__main__":
    main()
