"""What a model needs to know about its data, and the kinds of data (modalities) a source can yield.

A modality decides how the pipeline treats inputs: whether grayscale images get a channel axis, whether
inputs are scaled and cast to float, whether augmentation applies, and how a validation split is carved
(a random draw for independent examples; the end of the span for a series, so no future leaks into
training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Modality:
    name: str
    channel_axis: bool  # (N, H, W) gets a trailing channel axis: (N, H, W, 1)
    scaled: bool  # inputs go through data.scale (x * a + b, statistics from the training split)
    dtype: str  # what inputs are cast to
    augment: bool  # data.augment may apply (images only)
    split: Literal["random", "chronological"]  # how data.validation_split is carved from train
    shape: str  # the input shape, for messages


MODALITIES = {
    m.name: m
    for m in (
        Modality("images", channel_axis=True, scaled=True, dtype="float32", augment=True, split="random",
                 shape="(N, H, W, C)"),
        Modality("features", channel_axis=False, scaled=True, dtype="float32", augment=False, split="random",
                 shape="(N, F)"),
        # token ids index an embedding: never scaled, never cast to float
        Modality("tokens", channel_axis=False, scaled=False, dtype="int32", augment=False, split="random",
                 shape="(N, T)"),
        # windows of one token stream (a language model's text): later windows are later in the text
        Modality("token_windows", channel_axis=False, scaled=False, dtype="int32", augment=False,
                 split="chronological", shape="(N, T)"),
        # windows of a series, (N, T, F) in, (N, H, F') out; later windows are later in time. Scaled by the
        # forecasting task itself (its scaler is fitted on the training span's rows, targets included)
        Modality("series", channel_axis=False, scaled=False, dtype="float32", augment=False, split="chronological",
                 shape="(N, T, F)"),
    )
}


@dataclass
class DataSpec:
    """The shapes and sizes a model is built for."""

    input_shape: tuple[int, ...]
    modality: str = "images"
    num_classes: int = 0  # 0: the data has no class labels
    class_names: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)  # the training split's examples of each class
    target_shape: tuple[int, ...] | None = None  # targets that are not class indices (a forecast horizon, ...)
    # a regression's targets: each one's {"mean": [...], "std": [...]} over the training rows, which the model's
    # target_scale layer multiplies back (its net predicts standard deviations from the mean), and "transform":
    # "log" when they are the logarithms' (data.target_transform; an exp layer follows), else "none"
    target_scale: dict | None = None
    vocabulary_size: int = 0  # tokens: how many ids the embedding takes (a translation's target side)
    source_vocabulary_size: int = 0  # translation: the source side's
    batch_size: int = 0  # > 0: every batch has exactly this many rows (a stateful recurrent model's)
    num_train: int = 0
    num_val: int = 0
    num_test: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
