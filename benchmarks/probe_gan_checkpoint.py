"""Score a GAN run's latest checkpoint while it trains: classifier score (and, for InfoGAN, categorical-code
accuracy after matching) of 5,000 samples from the trained generator and from its weight average.

    python benchmarks/probe_gan_checkpoint.py RUN_DIR REFERENCE_CLASSIFIER_RUN

How the mid-training figures for gan_mnist and infogan_mnist in docs/benchmarks.md were taken.
"""

from __future__ import annotations

import sys

import numpy as np


def main(run_dir: str, reference: str) -> None:
    from dlkit import backend

    backend.setup()
    import keras

    from dlkit import gan_eval as E
    from dlkit import images as I
    from dlkit.generate import run_scale
    from dlkit.models import gan_model  # noqa: F401 - registers the GAN classes
    from dlkit.rundir import RunDir
    from dlkit.training.samples import latent_inputs

    run = RunDir(run_dir)
    gan = keras.saving.load_model(run.last_checkpoint)
    scale = run_scale(run)
    classifier, ref_scale, features = E._classifier(RunDir(reference))
    rng = np.random.default_rng(0)
    asked = rng.integers(0, gan.categorical_codes, 5000) if gan.categorical_codes else None
    z = latent_inputs(gan, 5000, rng, **({"categorical": asked} if asked is not None else {}))
    step = int(keras.ops.convert_to_numpy(gan.g_optimizer.iterations))
    for name, generator in (("trained", gan.generator), ("average", gan.sampler)):
        fake = I.to_uint8(generator.predict(z, verbose=0, batch_size=500), scale)
        _, probs = features.predict(E._as_input(fake, classifier, ref_scale), verbose=0, batch_size=500)
        line = f"{name}: generator step {step}, classifier score {E.classifier_score(probs):.3f}"
        if asked is not None:
            accuracy, mapping = E.matched_accuracy(asked, probs.argmax(1), gan.categorical_codes, probs.shape[1])
            line += f", code accuracy {accuracy:.4f} (code -> class {mapping})"
        print(line)


if __name__ == "__main__":
    main(*sys.argv[1:3])
