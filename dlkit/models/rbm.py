"""Restricted Boltzmann machine: binary hidden units over binary (Bernoulli) or real (Gaussian, unit
variance) visible units, trained by contrastive divergence (CD-k) or persistent CD (PCD; Tieleman, 2008).

The learning rate, momentum and weight decay are the optimizer's (`train.optimizer`, e.g. {name: sgd,
learning_rate: 0.05, momentum: 0.9, weight_decay: 0.0002}): the CD estimate is the gradient handed to it.
`binarize: dynamic` draws a fresh binarization of the training images each step (the test images are
binarized once, with the seed). `sparsity_target` and `sparsity_weight` pull each hidden unit's mean
activation toward a target (Lee et al., 2008).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from dlkit.models.knobs import ModelBase

TASK = "boltzmann"
INPUTS = ("images", "features")  # images are flattened; feature vectors (N, F) are read as they are


# the negative phase's Gibbs steps are written out in the traced training step: cd_k 100 added 11 s of tracing
# on the 2-core CPU machine, 1,000 would be minutes before the first step; CD-25 is the most the classic papers use
MAX_GIBBS_STEPS = 1000
# an RBM's and a DBN's `chains`, which only persistent contrastive divergence reads (knobs.ModelBase.IDLE)
PCD_CHAINS = ("chains", lambda c: not c.persistent,
              "chains is the number of PCD's persistent chains, and persistent is false (CD starts each chain at "
              "the data): set persistent: true, or remove chains")


class Config(ModelBase):
    arch: Literal["rbm"] = "rbm"
    hidden: int = Field(500, ge=1)
    visible: Literal["bernoulli", "gaussian"] = "bernoulli"  # gaussian: real values, unit variance (standardize)
    cd_k: int = Field(1, ge=1, le=MAX_GIBBS_STEPS)  # Gibbs steps of the negative phase
    persistent: bool = False  # PCD: the negative phase continues chains kept across updates
    chains: int = Field(100, ge=1)  # PCD's number of persistent chains
    binarize: Literal["dynamic", "none"] = "dynamic"  # bernoulli: a fresh Bernoulli draw of the data each step
    sparsity_target: float = Field(0.0, ge=0, lt=1)
    sparsity_weight: float = Field(0.0, ge=0)  # 0: no sparsity term

    IDLE = (
        PCD_CHAINS,
        ("sparsity_target", lambda c: not c.sparsity_weight,
         "sparsity_target is what sparsity_weight pulls toward, and sparsity_weight is 0 (no sparsity term): set a "
         "weight (0.1), or remove sparsity_target"),
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.visible == "gaussian" and self.binarize == "dynamic":
            raise ValueError("binarize: dynamic draws binary data for bernoulli visible units; gaussian ones take "
                             "the values as they are: set binarize: none")
        if self.sparsity_weight and not self.sparsity_target:
            raise ValueError("sparsity_weight pulls toward sparsity_target: set a target in (0, 1)")
        return self


def build(config: Config, spec):
    from dlkit.models.rbm_model import RBM
    from dlkit.models.steps import check_backend

    check_backend(config.arch)
    return RBM(visible=math.prod(spec.input_shape), hidden=config.hidden, visible_kind=config.visible,
               cd_k=config.cd_k, persistent=config.persistent, chains=config.chains,
               sparsity_target=config.sparsity_target, sparsity_weight=config.sparsity_weight,
               binarize=config.binarize == "dynamic", name="rbm")
