"""Architectures. Each module has the same small face: a pydantic `Config` (its `model:` recipe section)
and `build(config, spec) -> keras.Model`. Adding an architecture takes one module and one line here.

These modules import Keras only inside `build`, so validating a recipe never waits for TensorFlow.
"""

from dlkit.models import cgan, cnn, cyclegan, dcgan, infogan, lenet5, mlp, perceptron, resnet, stackgan, vgg, wgan, wgan_gp

ARCHITECTURES = {
    "perceptron": perceptron,
    "mlp": mlp,
    "cnn": cnn,
    "lenet5": lenet5,
    "vgg": vgg,
    "resnet": resnet,
    "dcgan": dcgan,
    "cgan": cgan,
    "wgan": wgan,
    "wgan_gp": wgan_gp,
    "infogan": infogan,
    "stackgan": stackgan,
    "cyclegan": cyclegan,
}


def family(arch: str) -> str:
    """"classifier" or "gan": what training, evaluation and pictures a run gets."""
    return getattr(ARCHITECTURES[arch], "FAMILY", "classifier")
