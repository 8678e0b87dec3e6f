"""Deep belief net (Hinton, Osindero & Teh, 2006): a stack of RBMs trained greedily, layer by layer, then
unrolled into a feed-forward classifier of logistic units and fine-tuned by backpropagation.

`layers` are the hidden layers' sizes, bottom up; each is an RBM's hidden layer during pretraining (CD-k
or PCD, binary states drawn from the layer below's probabilities at every step) and a sigmoid dense layer
after it, started from that RBM's weights and hidden biases. The output layer, a softmax over the classes,
starts at random. `top_labels` lets the top RBM also see the one-hot label, so that `dlkit generate
--label K` can sample a digit of class K from the top down. `pretrain: false` is the same network from
random init: the companion that shows what pretraining buys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dlkit.models.knobs import Activation, ModelBase
from dlkit.models.rbm import MAX_GIBBS_STEPS, PCD_CHAINS

TASK = "dbn"
INPUTS = ("images", "features")  # images are flattened; feature vectors (N, F) are read as they are


class Config(ModelBase):
    arch: Literal["dbn"] = "dbn"
    activation: Activation = "sigmoid"  # the RBMs' units are logistic; the unrolled net keeps them
    layers: list[int] = Field(default_factory=lambda: [500, 500, 2000], min_length=1)
    pretrain: bool = True  # false: the same network trained from random init
    cd_k: int = Field(1, ge=1, le=MAX_GIBBS_STEPS)
    persistent: bool = False
    chains: int = Field(100, ge=1)
    top_labels: bool = False  # the top RBM also sees the one-hot label (Hinton et al., 2006)

    # (pretrain: false leaves cd_k, persistent and top_labels idle too, and is not said: it is the switch a
    # recipe that extends a DBN flips, dbn_mnist_random.yaml, and those keys come with what it extends)
    IDLE = (PCD_CHAINS,)

    @model_validator(mode="after")
    def _labels_need_a_layer_below(self):
        # was a traceback at the first RBM's start: its visible units would be the pixels and the labels
        if self.top_labels and len(self.layers) < 2:
            raise ValueError("top_labels needs two layers or more: the top RBM learns the labels beside the "
                             "features of the layer below it; add a layer (layers: [500, 2000]) or set "
                             "top_labels: false")
        return self


def build_rbm(config: Config, visible: int, index: int):
    """The RBM of hidden layer `index` (0-based) over `visible` units."""
    from dlkit.models.rbm_model import RBM
    from dlkit.models.steps import check_backend

    check_backend(config.arch)
    return RBM(visible=visible, hidden=config.layers[index], cd_k=config.cd_k, persistent=config.persistent,
               chains=config.chains, binarize=True, name=f"rbm{index + 1}")


def build(config: Config, spec, rbms=()):
    """The unrolled classifier; its hidden layers start from `rbms` (trained, bottom up) when given."""
    import keras

    from dlkit.models import layers

    x_in = layers.inputs(spec)
    h = keras.layers.Flatten()(x_in)
    hidden = []
    for units in config.layers:
        dense = keras.layers.Dense(units, **layers.weights(config))
        hidden.append(dense)
        h = layers.finish(dense(h), config)
    model = keras.Model(x_in, layers.classifier_head(h, spec, config), name="dbn")
    for dense, rbm in zip(hidden, rbms):
        kernel, _, hidden_bias = (keras.ops.convert_to_numpy(w) for w in (rbm.kernel, rbm.visible_bias, rbm.hidden_bias))
        # the top RBM of a labelled stack has the label units after the features: they do not feed forward
        weights = [kernel[: dense.kernel.shape[0]]]
        if dense.use_bias:
            weights.append(hidden_bias)
        dense.set_weights(weights)
    return model
