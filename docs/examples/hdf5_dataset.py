"""Images or feature vectors and their class labels, read from an HDF5 file's datasets (h5py).

A dataset of your own, in one file: a recipe names it with `plugins: [hdf5_dataset.py]` and reads it with
`data: {dataset: hdf5, path: ...}` (docs/examples/cnn_usps_hdf5.yaml). HDF5 files hold named arrays, laid out
as their authors chose: the USPS digits as they are shared (`train/data`, `train/target`, `test/data`,
`test/target`, 16 x 16 images as rows of 256), Galaxy10 (`images`, `ans`), a lab's scans. This file's own
`data:` keys (its `Data`) say which of the file's arrays are which, so one plugin reads them all.

The face of a dataset plugin: `DATASET`, the name recipes give as data.dataset; `load(data)`, given the
recipe's validated `data:` section (dlkit's keys, `path` made absolute, and this file's own keys), giving back
the arrays as an .npz holds them (x_train, y_train, and x_test, y_test where the data has its own test split),
and `class_names` where it knows them; `READS_PATH`, what data.path should be. dlkit checks what comes back
as it checks an .npz's arrays, carves the validation split (and a test split where there is none), scales,
batches and augments, as for any dataset. The run keeps a copy of this file, so `dlkit evaluate` and `resume`
of the run read the data as it trained on it.
"""

from __future__ import annotations

import h5py
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

DATASET = "hdf5"
READS_PATH = "the HDF5 file (.h5, .hdf5)"
DESCRIPTION = "images or feature vectors and class labels in an HDF5 file's datasets (data.path)"


class Data(BaseModel):
    """This dataset's own `data:` keys: where in the file each array is."""

    model_config = ConfigDict(extra="forbid")

    x_train: str = "x_train"  # the inputs' dataset, by its path in the file
    y_train: str | None = "y_train"  # its class labels (integers from 0); null: inputs without labels
    x_test: str | None = None  # a test split of the file's own, and its labels; null: dlkit carves one
    y_test: str | None = None
    # each example's shape where the file keeps images as rows (USPS: [16, 16]); null: as the file has them
    shape: list[int] | None = Field(None, min_length=2, max_length=3)
    class_names: str | None = None  # a dataset of the classes' names (strings), in label order


def load(data) -> dict:
    with h5py.File(data.path, "r") as f:
        def read(key: str, limit: int | None) -> np.ndarray:
            if key not in f:
                held = []
                f.visititems(lambda name, item: held.append(name) if isinstance(item, h5py.Dataset) else None)
                raise KeyError(f"{data.path} has no dataset {key!r}; it holds {', '.join(held) or 'none'}")
            return f[key][:limit]  # h5py reads only the rows asked for: data.limit keeps a quick run quick

        out = {"x_train": read(data.x_train, data.limit)}
        if data.y_train:
            out["y_train"] = read(data.y_train, data.limit)
        if data.x_test:
            out["x_test"] = read(data.x_test, data.test_limit)
            if data.y_train and data.y_test:
                out["y_test"] = read(data.y_test, data.test_limit)
        if data.class_names:
            out["class_names"] = [n.decode() if isinstance(n, bytes) else str(n) for n in read(data.class_names, None)]
    if data.shape:
        for key in ("x_train", "x_test"):
            if key in out:
                out[key] = out[key].reshape(len(out[key]), *data.shape)
    return out
