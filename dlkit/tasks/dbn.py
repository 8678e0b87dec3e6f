"""The DBN: greedy layer-wise pretraining of stacked RBMs, then fine-tuning as a classifier.

A run has a phase per hidden layer (`rbm1`, `rbm2`, ...; `train.pretrain_epochs` each, with
`train.pretrain_optimizer`), then `finetune` (`train.epochs`, `train.optimizer`). RBM k trains on the
hidden probabilities of RBM k-1 given the data (binary states drawn from them at each step); with
`model.top_labels`, the top RBM also sees the one-hot labels. Each phase keeps its own history,
checkpoints and model under phases/<name>/ and `dlkit resume` continues inside the phase a run stopped in.
The finished run is a classifier (model.keras): its test accuracy, confusion matrix and `dlkit evaluate`
are a classifier's. `dlkit generate` samples from the top RBM (its label clamped with --label when it was
trained with labels) and passes the sample down through the RBMs' generative weights.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from dlkit import images, optim
from dlkit.data import pipeline
from dlkit.data.sources import Arrays
from dlkit.errors import UsageError
from dlkit.models import dbn as dbn_arch
from dlkit.recipe.schema import FitTrain, OptimizerConfig, ScheduleConfig
from dlkit.tasks.base import Callbacks, FitContext, GenerateRequest, Phase, by_itself
from dlkit.tasks.boltzmann import UNIT, filter_images
from dlkit.tasks.classification import Classification
from dlkit.tasks.generative import output_path, write_images


class DbnTrain(FitTrain):
    pretrain_epochs: int = Field(10, ge=1)  # per RBM
    # the CD estimate as the gradient: Hinton's practical guide's momentum SGD with weight decay
    pretrain_optimizer: OptimizerConfig = OptimizerConfig(name="sgd", learning_rate=0.05, momentum=0.9,
                                                          weight_decay=0.0002)


def _probabilities(rbm, x: np.ndarray | None, batch: int = 2000) -> np.ndarray | None:
    if x is None:
        return None
    with by_itself(rbm):  # between the phases of a run over several processes too
        return np.concatenate([rbm.predict(x[i:i + batch], verbose=0)
                               for i in range(0, len(x), batch)]).astype(np.float32)


def _with_labels(h, y, num_classes):
    return None if h is None else np.concatenate([h, np.eye(num_classes, dtype=np.float32)[y]], axis=1)


class Dbn(Classification):
    name = "dbn"
    summary = "stacked RBMs pretrained greedily, then fine-tuned as a classifier (deep belief net)"
    Train = DbnTrain
    # generate's -n and --out-dir, evaluate's --data (its fine-tuned classifier reads images)
    options = frozenset({"n", "data", "out_dir"})

    def needs_labels(self, recipe):
        return "a DBN is fine-tuned as a classifier"

    def phases(self, recipe):
        fine = Phase("finetune", recipe.train.epochs)
        if not recipe.model.pretrain:
            return [fine]
        return [Phase(f"rbm{i + 1}", recipe.train.pretrain_epochs) for i in range(len(recipe.model.layers))] + [fine]

    def _rbm_index(self, phase):
        return int(phase.name[3:]) - 1 if phase.name.startswith("rbm") else None

    def phase_data(self, recipe, data, phase, earlier):
        index = self._rbm_index(phase)
        if not index:  # the first RBM and the fine-tuning see the data itself
            return data
        s = data.splits
        splits = {k: getattr(s, k) for k in ("x_train", "x_val", "x_test")}
        for i in range(index):  # up through the RBMs below, as probabilities
            rbm = earlier[f"rbm{i + 1}"]
            splits = {k: _probabilities(rbm, pipeline_input(v, data.scale, i == 0)) for k, v in splits.items()}
        top = index == len(recipe.model.layers) - 1
        if top and recipe.model.top_labels:
            k = data.spec.num_classes
            splits = {"x_train": _with_labels(splits["x_train"], s.y_train, k),
                      "x_val": _with_labels(splits["x_val"], s.y_val, k),
                      "x_test": _with_labels(splits["x_test"], s.y_test, k)}
        arrays = Arrays(splits["x_train"], s.y_train, splits["x_test"], s.y_test, data.spec.class_names,
                        f"{data.origin}, through {index} RBM(s)", modality="features")
        cfg = recipe.data.model_copy(update={"scale": "none", "validation_split": 0.0, "limit": None,
                                             "test_limit": None})
        features = pipeline.build(arrays, cfg, recipe.seed)
        if splits["x_val"] is not None:  # the validation images, carried up as they are
            features.splits.x_val, features.splits.y_val = splits["x_val"], s.y_val
            features = features.fresh()
        return features

    def build(self, recipe, spec, phase, earlier):
        index = self._rbm_index(phase)
        config = recipe.model
        if index is None:
            rbms = [earlier[f"rbm{i + 1}"] for i in range(len(config.layers))] if config.pretrain else []
            return dbn_arch.build(config, spec, rbms)
        visible = math.prod(spec.input_shape) if index == 0 else config.layers[index - 1]
        if index == len(config.layers) - 1 and config.top_labels:
            visible += spec.num_classes
        return dbn_arch.build_rbm(config, visible, index)

    def initialize(self, model, recipe, data, phase):
        if self._rbm_index(phase) == 0:  # the first RBM's visible biases: the data's log-odds
            from dlkit.tasks.boltzmann import log_odds

            model.visible_bias.assign(log_odds(data.splits.x_train).astype("float32"))

    def compile(self, model, recipe, steps_per_epoch, phase):
        if self._rbm_index(phase) is None:
            return super().compile(model, recipe, steps_per_epoch, phase)
        # the pretraining optimizer's schedule (its own, else constant) runs over the pretraining epochs
        train = recipe.train.model_copy(update={"epochs": recipe.train.pretrain_epochs, "schedule": ScheduleConfig()})
        model.compile(optimizer=optim.optimizer(train, steps_per_epoch, recipe.train.pretrain_optimizer),
                      **optim.compile_options(recipe.train, steps_per_epoch))
        return model

    def monitor(self, recipe, has_val, phase):
        return None if self._rbm_index(phase) is not None else super().monitor(recipe, has_val, phase)

    def monitored(self, recipe, has_val, phase):
        return {} if self._rbm_index(phase) is not None else super().monitored(recipe, has_val, phase)

    def callbacks(self, ctx: FitContext) -> Callbacks:
        if self._rbm_index(ctx.phase) is None:
            return super().callbacks(ctx)
        shape = ctx.data.spec.input_shape
        if self._rbm_index(ctx.phase) != 0 or len(shape) != 3:
            return Callbacks()
        from dlkit.tasks.sample_grid import EpochGrid

        rbm = ctx.model
        return Callbacks(before=[EpochGrid(ctx.where, lambda: filter_images(rbm.numpy_parameters()[0], shape), 10,
                                           UNIT, ctx.where.image("filters.png"), ctx.initial_epoch)])

    def generate(self, run, recipe, model, data, request: GenerateRequest) -> dict:
        """n samples: Gibbs chains in the top RBM (1,000 steps, the label units clamped to --label K when it was
        trained with labels), then down through each RBM's generative weights to the pixels."""
        from dlkit import models
        from dlkit.models.rbm_model import sigmoid_np as sigmoid

        config = recipe.model
        if not config.pretrain:
            raise UsageError("this DBN was trained from random init: it has no RBMs to sample from")
        if request.code is not None or request.interpolate or request.inputs:
            raise UsageError("a DBN samples from its top RBM (-n, --seed, and --label when it learnt labels)")
        if request.label is not None and not config.top_labels:
            raise UsageError("--label: this DBN's top RBM was trained without labels (model.top_labels)")
        if len(model.input_shape) != 4:  # its pixels' picture was a traceback
            raise UsageError(f"samples are drawn as pictures of images; this DBN learnt feature vectors "
                             f"{model.input_shape[1:]}")
        rbms = [models.load(run.phase(f"rbm{i + 1}", True).model, compile=False) for i in range(len(config.layers))]
        rng = np.random.default_rng(request.seed)
        kernel, b, c = rbms[-1].numpy_parameters(np.float32)  # float32: as chain_snapshots
        v = (rng.random((request.n, kernel.shape[0]), np.float32) < 0.5).astype(np.float32)
        # the top RBM's visible units: the layer below's (or the pixels), then the labels' when it learnt them
        below = config.layers[-2] if len(config.layers) > 1 else math.prod(model.input_shape[1:])
        labels = None
        if config.top_labels:
            classes = kernel.shape[0] - below
            chosen = np.full(request.n, request.label) if request.label is not None else np.arange(request.n) % classes
            labels = np.eye(classes)[chosen]
        for _ in range(1000):
            if labels is not None:
                v[:, below:] = labels
            h = (rng.random((request.n, kernel.shape[1]), np.float32) < sigmoid(v @ kernel + c)).astype(np.float32)
            v = (rng.random(v.shape, np.float32) < sigmoid(h @ kernel.T + b)).astype(np.float32)
        x = v[:, :below] if len(rbms) > 1 else sigmoid(h @ kernel.T + b)[:, :below]
        for rbm in reversed(rbms[:-1]):  # down: each layer's mean given the one above
            w, vb, _ = rbm.numpy_parameters(np.float32)
            x = sigmoid(x @ w.T + vb)
        shape = tuple(model.input_shape[1:])
        if request.out_dir is not None:  # with labels learnt, in a folder per class
            return write_images(run, images.to_uint8(x.reshape((-1, *shape)), UNIT), request.out_dir,
                                labels=chosen if config.top_labels else None,
                                classes=classes if config.top_labels else 0, seed=request.seed, label=request.label)
        path = output_path(request.out or run.root / (f"samples-seed{request.seed}"
                                                      + (f"-label{request.label}" if request.label is not None else "")
                                                      + ".png"), request.force, png=True)
        images.save_png(images.grid(images.to_uint8(x.reshape((-1, *shape)), UNIT),
                                    max(1, int(math.sqrt(request.n)))), path)
        return {"status": "completed", "run_dir": str(run.root), "out": str(path), "n": int(request.n),
                "seed": request.seed, "label": request.label}


def pipeline_input(x, scale, first: bool):
    """What the RBM below takes: the images in the model's scale (the first), or the probabilities."""
    if x is None or not first:
        return x
    return x.astype(np.float32) * scale[0] + scale[1]
