"""What a model needs to know about its data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DataSpec:
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    num_train: int = 0
    num_val: int = 0
    num_test: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
