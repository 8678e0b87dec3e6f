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

    from dlkit import images, metrics
    from dlkit.models import register_keras_classes
    from dlkit.models.gan import latent_inputs
    from dlkit.rundir import RunDir
    from dlkit.tasks.generative import run_scale
    from dlkit.tasks.reference import Reference

    register_keras_classes()
    run = RunDir.open(run_dir)
    gan = keras.saving.load_model(run.last_checkpoint)
    scale = run_scale(run)
    ref = Reference(RunDir.open(reference))
    rng = np.random.default_rng(0)
    asked = rng.integers(0, gan.categorical_codes, 5000) if gan.categorical_codes else None
    z = latent_inputs(gan, 5000, rng, **({"categorical": asked} if asked is not None else {}))
    step = int(keras.ops.convert_to_numpy(gan.g_optimizer.iterations))
    for name, generator in (("trained", gan.generator), ("average", gan.sampler)):
        fake = images.to_uint8(generator.predict(z, verbose=0, batch_size=500), scale)
        _, probs = ref.predict(fake)
        line = f"{name}: generator step {step}, classifier score {metrics.classifier_score(probs):.3f}"
        if asked is not None:
            accuracy, mapping = metrics.matched_accuracy(asked, probs.argmax(1), gan.categorical_codes, probs.shape[1])
            line += f", code accuracy {accuracy:.4f} (code -> class {mapping})"
        print(line)


if __name__ == "__main__":
    main(*sys.argv[1:3])
