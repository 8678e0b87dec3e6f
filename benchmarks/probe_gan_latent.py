"""Where a trained GAN's sample quality comes from in its latent space, scored by a reference classifier
(5,000 samples from the generator that draws the samples, the weight average if there is one):

- the mean prediction entropy and the share of it carried by the most ambiguous samples;
- for models without labels, how well the discriminator's score picks out the ambiguous samples: the mean
  entropy in each tenth of the samples ranked by that score, and the classifier score of the top 90%,
  70% and 50% (a diagnostic for top-k training, not a sampler);
- for unconditional models, the classifier score with the noise truncated (redrawn until |z| < t) or
  shrunk (times s) at sampling time;
- for InfoGAN, the categorical-code accuracy with the continuous codes pinned at 0, 0.5 and 1 against
  drawn from their uniform prior.

    python benchmarks/probe_gan_latent.py RUN_DIR REFERENCE_CLASSIFIER_RUN

How the truncation and continuous-code figures for gan_mnist and infogan_mnist in docs/benchmarks.md
were taken.
"""

from __future__ import annotations

import sys

import numpy as np

SAMPLES = 5000


def main(run_dir: str, reference: str) -> None:
    from dlkit import backend

    backend.setup()
    import keras

    from dlkit import images as image_tools
    from dlkit import metrics
    from dlkit.models import register_keras_classes
    from dlkit.models.gan import latent_inputs
    from dlkit.rundir import RunDir
    from dlkit.tasks.generative import in_scale, run_scale
    from dlkit.tasks.reference import Reference

    register_keras_classes()
    run = RunDir.open(run_dir)
    gan, scale = keras.saving.load_model(run.model), run_scale(run)
    ref = Reference(RunDir.open(reference))

    def images(z):
        return image_tools.to_uint8(gan.sampler.predict(z, verbose=0, batch_size=500), scale)

    def classify(fake):
        return ref.predict(fake)[1]

    def probabilities(z):
        return classify(images(z))

    def line(tag, p, asked=None):
        text = f"{tag}: classifier score {metrics.classifier_score(p):.3f}, classes {np.bincount(p.argmax(1), minlength=p.shape[1]).tolist()}"
        if asked is not None:
            accuracy, mapping = metrics.matched_accuracy(asked, p.argmax(1), gan.categorical_codes, p.shape[1])
            text += f", code accuracy {accuracy:.4f} (code -> class {mapping})"
        print(text, flush=True)

    rng = np.random.default_rng(0)
    asked = rng.integers(0, gan.categorical_codes, SAMPLES) if gan.categorical_codes else None
    z = latent_inputs(gan, SAMPLES, rng, **({"categorical": asked} if asked is not None else {}))
    fake = images(z)
    p = classify(fake)
    line("as drawn", p, asked)
    entropy = -(p * np.log(p + 1e-12)).sum(1)
    ambiguous = entropy > 0.5
    print(f"mean prediction entropy {entropy.mean():.4f} nats; {ambiguous.mean():.1%} of samples above 0.5 nats "
          f"carry {entropy[ambiguous].sum() / entropy.sum():.1%} of it")

    if not gan.num_classes:  # the discriminator takes the image alone
        score = gan.discriminator.predict(in_scale(fake, scale), verbose=0, batch_size=500)
        order = np.argsort(-np.reshape(score[0] if isinstance(score, list) else score, -1))
        tenths = [round(float(entropy[part].mean()), 3) for part in np.array_split(order, 10)]
        print(f"mean entropy by tenth of the discriminator's ranking, highest score first: {tenths}")
        for keep in (0.9, 0.7, 0.5):
            line(f"top {keep:.0%} by discriminator score", p[order[: int(keep * len(order))]])

    noise = slice(0, gan.latent_dim)
    if not (gan.num_classes or gan.codes):
        redraw = np.random.default_rng(1)
        for t in (2.0, 1.5, 1.0, 0.5):
            zt = z.copy()
            out = np.abs(zt[:, noise]) > t
            while out.any():
                zt[:, noise][out] = redraw.standard_normal(int(out.sum()))
                out = np.abs(zt[:, noise]) > t
            line(f"noise truncated to |z| < {t}", probabilities(zt))
        for s in (0.8, 0.6):
            zs = z.copy()
            zs[:, noise] *= s
            line(f"noise times {s}", probabilities(zs))
    if gan.continuous_codes:
        for value in (0.0, 0.5, 1.0):
            pinned = np.full((SAMPLES, gan.continuous_codes), value)
            zc = latent_inputs(gan, SAMPLES, np.random.default_rng(1), categorical=asked, continuous=pinned)
            line(f"continuous codes pinned at {value}", probabilities(zc), asked)


if __name__ == "__main__":
    main(*sys.argv[1:3])
