"""Finding and reading datasets, each in its own published format.

A built-in dataset is looked for, in order, in `data.dir`, `$DLKIT_DATA_DIR` (and its sub-folder named
after the dataset), the Keras download cache and system locations such as Debian's dataset packages.
Only then is it downloaded (unless `data.download: false`); if that fails too, a DataError says which
files to put where. Everything here returns numpy arrays (`Arrays`, which also say what kind of data they
are: their modality); the pipeline module turns them into batches.

`DATASETS`, at the end, is the one table of dataset names: the recipe schema, `dlkit list` and
`dlkit validate` all read it. Datasets from outside dlkit join it there (`register`): a recipe's plugin that
declares one (`DATASET`, `load`), or an installed package's entry point in the group `dlkit.datasets`.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import pickle
import re
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dlkit import ui
from dlkit.config import entry_point
from dlkit.errors import DataError, OutOfMemoryError, UsageError, first_line, frame_in
from dlkit.files import not_utf8

KERAS_CACHE = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

BUILTINS = {
    "mnist": {
        "classes": [str(i) for i in range(10)],
        "system_dirs": [],
        "downloads": {"mnist.npz": KERAS_DATASETS + "mnist.npz"},
        "expect": "the four IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or keras' mnist.npz)",
    },
    "fashion_mnist": {
        "classes": ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                    "ankle boot"],
        # `apt-get install dataset-fashion-mnist` (or `make data`) puts the four IDX files here.
        "system_dirs": [Path("/usr/share/datasets/fashion-mnist")],
        "downloads": {f + ".gz": KERAS_DATASETS + "fashion-mnist/" + f + ".gz" for f in MNIST_FILES.values()},
        "expect": "the four IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
    },
    "cifar10": {
        "classes": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "system_dirs": [],
        "downloads": {"cifar-10-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"},
        "expect": "the official python batches (cifar-10-batches-py/data_batch_1..5, test_batch) or an .npz "
        "with x_train, y_train, x_test, y_test in the keras.datasets layout",
    },
}


@dataclass
class Arrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    origin: str  # where the data was read from, for the manifest
    modality: str = "images"  # a key of dlkit.data.spec.MODALITIES
    columns: dict | None = None  # a CSV's feature columns and label column by name (what `predict --csv` reads)
    notes: list[str] = field(default_factory=list)  # what reading did that the user should hear of (rows left out)


# ---------------------------------------------------------------- published formats


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic 0x0000 08 NDIM, NDIM big-endian uint32 sizes, then uint8 data."""
    try:
        with _open(path) as f:
            zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
            if zero != 0 or dtype != 0x08:
                raise DataError(f"{path} is not an unsigned-byte IDX file (magic {zero:#x} {dtype:#x})")
            shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except (OSError, EOFError, struct.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_folder(folder: Path) -> dict | None:
    paths = {key: _find(folder, stem) for key, stem in MNIST_FILES.items()}
    if paths["x_train"] is None or paths["y_train"] is None:
        return None
    out = {key: read_idx(p) if p else None for key, p in paths.items()}
    return out


NPZ_HOW = "np.savez(path, x_train=..., y_train=...)"


def read_npz(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            head = f.read(6)
        # numpy reads a file that is not a zip as a pickle, and says so ("contains pickled data")
        if not head:
            raise DataError(f"{path} is empty; expected an .npz file of named arrays ({NPZ_HOW})")
        if head == b"\x93NUMPY":
            raise DataError(f"{path} is one .npy array, not an .npz file of named arrays; save them with {NPZ_HOW}")
        if not head.startswith(b"PK"):
            raise DataError(f"{path} is not an .npz file (a zip of .npy arrays, which {NPZ_HOW} writes); it "
                            f"begins {head!r}")
        with np.load(path, allow_pickle=False) as z:
            if "x_train" not in z:  # y_train may be left out: unlabelled inputs, for the tasks that need no labels
                raise DataError(
                    f"{path} has arrays {sorted(z.files)}; expected x_train, y_train (left out: unlabelled) and "
                    "optionally x_test, y_test"
                )
            if "y_test" in z and "x_test" not in z:
                raise DataError(f"{path} has arrays {sorted(z.files)}: y_test labels test inputs, and there is no "
                                "x_test; add x_test, or leave y_test out")
            if "x_test" in z and ("y_test" in z) != ("y_train" in z):
                raise DataError(f"{path} has arrays {sorted(z.files)}: x_test is labelled (y_test) exactly when "
                                "x_train is (y_train)")
            return {k: z[k] if k in z else None for k in ("x_train", "y_train", "x_test", "y_test")}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {type(e).__name__}: {first_line(e, 200)}") from None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and strings, and refuses anything else: a pickle can name any
    Python callable to run on loading, and a data folder is not trusted code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "list"), ("builtins", "dict")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"{getattr(self, 'path', 'a CIFAR batch')} names {module}.{name}; a CIFAR batch holds "
                            "numpy arrays only, and dlkit does not run code from data files")
        return super().find_class(module, name)


def read_cifar_batches(folder: Path) -> dict | None:
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train = sorted(folder.glob("data_batch_*"))
    if not train:
        return None

    def load(p):
        try:
            with open(p, "rb") as f:
                unpickler = _ArraysOnly(f, encoding="bytes")  # the official format: a pickle of numpy arrays
                unpickler.path = p
                d = unpickler.load()
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            y = np.asarray(d[b"labels"], dtype=np.uint8)
        except DataError:
            raise
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"cannot read CIFAR batch {p}: {type(e).__name__}: {first_line(e, 200)}") from None
        if len(x) != len(y):
            raise DataError(f"{p}: {len(x)} images but {len(y)} labels")
        return x, y

    xs, ys = zip(*(load(p) for p in train))
    out = {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys), "x_test": None, "y_test": None}
    if (folder / "test_batch").is_file():
        out["x_test"], out["y_test"] = load(folder / "test_batch")
    return out


def has_builtin_files(name: str, folder: Path) -> bool:
    """Whether `folder` holds the dataset's files, checked by name only (validate reads nothing)."""
    if not folder.is_dir():
        return False
    if name in ("mnist", "fashion_mnist"):
        idx = all(_find(folder, MNIST_FILES[k]) for k in ("x_train", "y_train"))
        return idx or (name == "mnist" and (folder / "mnist.npz").is_file())
    return (folder / "cifar-10-batches-py").is_dir() or any(folder.glob("data_batch_*")) or any(folder.glob("*.npz"))


def read_builtin_folder(name: str, folder: Path) -> dict | None:
    if not has_builtin_files(name, folder):
        return None
    if name in ("mnist", "fashion_mnist"):
        found = read_idx_folder(folder)
        if found is None and name == "mnist" and (folder / "mnist.npz").is_file():
            found = read_npz(folder / "mnist.npz")
        return found
    found = read_cifar_batches(folder)
    if found is None:
        for npz in sorted(folder.glob("*.npz")):
            return read_npz(npz)
    return found


# ---------------------------------------------------------------- lookup and download


def local_dirs(data_dir: str | None, *folders: str) -> list[Path]:
    """The folders a dataset's files are looked for in first: data.dir and $DLKIT_DATA_DIR, each with its
    sub-folders named after the dataset, then itself. A data.dir that does not exist is an error: a typo in
    it would have read the dataset from the next place in silence, or downloaded it."""
    if data_dir and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"data.dir {data_dir} is not a folder; point it at the folder that holds the dataset's "
                        "files (or remove it: $DLKIT_DATA_DIR, the Keras cache and a download come next)")
    dirs = []
    for base in (data_dir, os.environ.get("DLKIT_DATA_DIR")):
        if base:
            base = Path(base).expanduser()
            dirs += [base / f for f in dict.fromkeys(folders)] + [base]
    return dirs


def search_dirs(name: str, data_dir: str | None) -> list[Path]:
    return local_dirs(data_dir, name) + [KERAS_CACHE / name] + BUILTINS[name]["system_dirs"]


DOWNLOAD_TIMEOUT = 60.0  # seconds a download may wait for the server at a time: connecting, or for more bytes


def fetch(fname: str, url: str, cache: Path, subdir: str, extract: bool = False) -> Path:
    """One published file into the cache (`cache/subdir/fname`) with keras.utils.get_file: its progress to
    stderr (stdout may be --json's), and a server that goes silent for DOWNLOAD_TIMEOUT seconds a failure,
    not a hang (urllib waits forever by default)."""
    import contextlib
    import socket
    import sys

    import keras

    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return Path(keras.utils.get_file(fname, origin=url, cache_dir=str(cache), cache_subdir=subdir,
                                             extract=extract))
    except TimeoutError:
        raise TimeoutError(f"no answer from {url} for {DOWNLOAD_TIMEOUT:g} s") from None
    finally:
        socket.setdefaulttimeout(before)


def download(name: str) -> Path:
    """Fetch the dataset's published files into the Keras cache."""
    target = KERAS_CACHE / name
    for fname, url in BUILTINS[name]["downloads"].items():
        fetch(fname, url, KERAS_CACHE.parent, f"datasets/{name}", extract=fname.endswith(".tar.gz"))
    # get_file extracts archives next to the download, into a folder named after it
    for extracted in target.glob("*_extracted"):
        return extracted
    return target


def _partial(name: str, folder: Path) -> str:
    """What a folder lacks of an IDX dataset's four files when it holds some of them (Fashion-MNIST's test set
    alone): said beside it, so the missing file is named rather than the whole folder passed over."""
    if name not in ("mnist", "fashion_mnist") or not folder.is_dir():
        return ""
    missing = [stem + ".gz" for stem in MNIST_FILES.values() if _find(folder, stem) is None]
    if not missing or len(missing) == len(MNIST_FILES):
        return ""
    return f" (has {len(MNIST_FILES) - len(missing)} of the four files; not {', '.join(missing)})"


def load_builtin(name: str, data_dir: str | None, allow_download: bool) -> Arrays:
    dirs = search_dirs(name, data_dir)
    for folder in dirs:
        found = read_builtin_folder(name, folder)
        if found is not None:
            return _arrays(found, BUILTINS[name]["classes"], str(folder))
    failure = "downloading is off (data.download: false)"
    if allow_download and os.environ.get("DLKIT_OFFLINE") != "1":
        try:
            folder = download(name)
            found = read_builtin_folder(name, folder)
            if found is not None:
                return _arrays(found, BUILTINS[name]["classes"], str(folder))
            failure = f"the download in {folder} has none of the expected files"
        except Exception as e:  # noqa: BLE001 - any network failure means the same to the user
            failure = f"the download failed ({type(e).__name__}: {first_line(e)})"
    looked = "\n".join(f"    {d}{_partial(name, d)}" for d in dirs)
    raise DataError(
        f"dataset {name!r} not found, and {failure}.\n"
        f"  Looked in:\n{looked}\n"
        f"  Put {BUILTINS[name]['expect']} in one of those folders, or point data.dir "
        f"(or $DLKIT_DATA_DIR) at the folder that holds them."
    )


MAX_CLASSES = 100_000  # class indices of an npz's labels: ImageNet-21k has 21,841 classes


NAMES_FROM = "a csv file or an image_folder reads them"  # where a dataset's class names come from, for the error


def class_indices(y, name: str, origin: str, names_from: str = NAMES_FROM) -> np.ndarray:
    """Class indices 0, 1, 2, ... as given (integers, or floats that are whole numbers), else a DataError: a
    negative label failed inside the loss with a TensorFlow traceback, and 0.5 was cut to 0 in silence."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(f"{origin}: {name} has shape {y.shape}, one-hot rows; give class indices "
                        f"(np.argmax({name}, axis=1))")
    y = y.reshape(-1)
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all() or y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" and len(y):
        i = int(np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))[0]) if y.dtype.kind == "f" else 0
        bad = y[i].item() if isinstance(y[i], np.generic) else y[i]
        raise DataError(f"{origin}: {name} holds {bad!r} at index {i} ({y.dtype} labels); labels are class indices "
                        f"0, 1, 2, ... (class names: {names_from})")
    if len(y) and y.min() < 0:
        raise DataError(f"{origin}: {name} holds the label {y.min()} at index {int(np.argmin(y))}; labels are class "
                        "indices from 0")
    return y


def _arrays(found: dict, classes: list[str], origin: str, names_from: str = NAMES_FROM) -> Arrays:
    """The arrays read, checked. Inputs without labels (no y_train) get label 0 throughout and no class names:
    DataSpec.num_classes 0, which the tasks that learn from labels refuse."""
    x_train, x_test = np.asarray(found["x_train"]), found.get("x_test")
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x is None:
            continue
        x = np.asarray(x)
        # strings failed inside numpy's min, and complex numbers lost their imaginary part without a word
        if x.dtype.kind not in "biuf":
            raise DataError(f"{origin}: {name} holds {x.dtype} values; inputs are numbers (pixel values or "
                            "features: bool, integer or float)")
        if x.ndim < 2 or not len(x):  # each was a traceback: len() of a scalar, numpy's max of nothing
            raise DataError(f"{origin}: {name} has shape {x.shape}, " + (
                "no examples" if x.ndim >= 2 else "not one example per row") + "; expected images (N, H, W[, C]) "
                "or feature vectors (N, F)" + ("; leave x_test out to carve a test split (data.test_split)"
                                                if name == "x_test" and x.ndim >= 2 else ""))
        if name == "x_test" and x.shape[1:] != x_train.shape[1:]:  # it met the model's weights as a traceback
            raise DataError(f"{origin}: x_test's examples have shape {x.shape[1:]}, x_train's {x_train.shape[1:]}; "
                            "the model is built for x_train's, and tested on the same")
        # a NaN input would show as a diverged run
        bad = ~np.isfinite(x) if x.dtype.kind == "f" else None
        if bad is not None and bad.any():
            raise DataError(f"{origin}: {name} holds NaN or infinite values ({int(bad.sum()):,}), the first in "
                            f"example {np.argwhere(bad)[0][0]}; inputs must be finite (fill or drop them first)")
    if found.get("y_train") is None:
        return Arrays(x_train, np.zeros(len(x_train), np.int64), x_test,
                      None if x_test is None else np.zeros(len(x_test), np.int64), [], origin)
    if not classes:
        found, classes = _named_labels(found)
    y_train = class_indices(found["y_train"], "y_train", origin, names_from)
    y_test = None if found.get("y_test") is None else class_indices(found["y_test"], "y_test", origin, names_from)
    if len(x_train) != len(y_train):
        raise DataError(f"{origin}: {len(x_train)} training inputs but {len(y_train)} labels")
    if y_test is not None and len(x_test) != len(y_test):
        raise DataError(f"{origin}: {len(x_test)} test inputs but {len(y_test)} labels")
    if classes and names_from != PLUGIN_NAMES:  # a dataset of known classes (a plugin's: named_classes says it)
        for name, y in (("y_train", y_train), ("y_test", y_test)):
            if y is not None and len(y) and y.max() >= len(classes):  # it met the loss as a traceback, after training
                raise DataError(f"{origin}: {name} holds the label {y.max()} at index {int(np.argmax(y))}, but the "
                                f"dataset has {len(classes)} classes (labels 0 to {len(classes) - 1}); the file is "
                                "damaged or not this dataset's: fetch it again")
    if not classes:
        for name, y in (("y_train", y_train), ("y_test", y_test)):
            if y is not None and len(y) and y.max() >= MAX_CLASSES:  # 2**40 named 2**40 classes until memory ran out
                raise DataError(f"{origin}: {name} holds the label {y.max()} at index {int(np.argmax(y))}: class "
                                f"indices run from 0 to the number of classes - 1, and dlkit takes at most "
                                f"{MAX_CLASSES:,} classes; number them from 0 (np.unique({name}, "
                                "return_inverse=True)[1] gives such indices)")
        n = int(max(y_train.max(), y_test.max() if y_test is not None else 0)) + 1
        classes = [str(i) for i in range(n)]
    return Arrays(x_train, y_train, x_test, y_test, classes, origin)


# ---------------------------------------------------------------- user formats


def _user_npz(path: str) -> tuple[Path, dict]:
    """data.path's .npz file and its arrays (read_npz), or a DataError saying it is not there."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"npz file not found: {p} (data.path)")
    return p, read_npz(p)


def load_npz(path: str) -> Arrays:
    """x_train, y_train[, x_test, y_test]: images when the inputs are (N, H, W[, C]), feature vectors when (N, F)."""
    p, found = _user_npz(path)
    return _of_shape(_arrays(found, [], str(p)), str(p))


def _named_labels(found: dict) -> tuple[dict, list[str]]:
    """Labels given as class names (strings, as scikit-learn takes them: y_train = ["cat", "dog", ...]) made class
    indices, the names in natural order over y_train and y_test together; they were refused ("labels are class
    indices"). Other labels as they are, and no names."""
    given = {k: np.asarray(found[k]) for k in ("y_train", "y_test") if found.get(k) is not None}
    if not given or any(y.dtype.kind not in "US" for y in given.values()):
        return found, []
    text = {k: [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v) for v in y.ravel()]
            for k, y in given.items()}
    names = sorted({v for cells in text.values() for v in cells}, key=natural)
    index = {name: i for i, name in enumerate(names)}
    return {**found, **{k: np.array([index[v] for v in text[k]], np.int64).reshape(given[k].shape)
                        for k in given}}, names


def _of_shape(arrays: Arrays, where: str) -> Arrays:
    """Arrays whose inputs are images (N, H, W[, C]), or feature vectors (N, F) (their modality set so)."""
    if arrays.x_train.ndim == 2:
        arrays.modality = "features"
    elif arrays.x_train.ndim not in (3, 4):
        raise DataError(f"{where}: x_train has shape {arrays.x_train.shape}; expected images (N, H, W[, C]) or "
                        "feature vectors (N, F)")
    elif arrays.x_train.ndim == 4 and arrays.x_train.shape[1] in (1, 3) and arrays.x_train.shape[3] > 4:
        # PyTorch's layout: it trained as images 3 pixels high with 32 channels, in silence
        n, c, h, w = arrays.x_train.shape
        raise DataError(f"{where}: x_train has shape {arrays.x_train.shape}: images with their channels first (N, "
                        f"C, H, W), as PyTorch keeps them; dlkit reads them channels last (N, H, W, C), and would "
                        f"read {c} x {h} images of {w} channels: save x_train (and x_test) as np.transpose(x, (0, 2, "
                        f"3, 1)), of shape ({n}, {h}, {w}, {c})")
    return arrays


# a number written with a decimal comma ("1,5"), as a file's cell holds it
DECIMAL_COMMA = r"\s*[-+]?\d*,\d+\s*"


def separator_in(header_cell: str, separator: str) -> str | None:
    """The separator a CSV header read as one cell seems to use instead of `separator`, or None."""
    return next((c for c in ";\t|," if c != separator and c in header_cell), None)


def excel_separator_line(path: Path, separator: str) -> int:
    """1 where the file's first line is Excel's `sep=;`, which names the separator of its cells, and it is
    `separator` (the line is then not a header); 0 where there is none. One that names another is a DataError
    saying what to set: the line was read as the header (`no column 'label'; columns are sep=`)."""
    import re

    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError:
        return 0  # said by the reader
    said = re.fullmatch(r"\s*sep=(.)\s*", first)
    if said is None:
        return 0
    if said[1] != separator:
        raise DataError(f"{path}: its first line, {first.strip()!r} (as Excel writes it), says its cells are "
                        f"separated by {said[1]!r}: set data.separator: {said[1]!r}")
    return 1


def _csv_rows(path: Path, separator: str = ",", limit: int | None = None) -> list[tuple[int, list[str]]]:
    """A CSV file's rows with their line numbers, blank lines (and lines of spaces) left out: a header and at
    least one row (`limit`: the first rows, at most, the file read no further; 1: the header alone). Excel's
    `sep=` line is no row (excel_separator_line)."""
    import csv
    import itertools

    skip = excel_separator_line(path, separator)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            # a blank line, or one of spaces alone (one cell of whitespace), is no row
            rows = ((line, r) for line, r in enumerate(csv.reader(f, delimiter=separator), start=1)
                    if line > skip and r and (len(r) > 1 or r[0].strip()))
            rows = list(itertools.islice(rows, limit) if limit else rows)
    except UnicodeDecodeError:
        raise DataError(not_utf8(path)) from None
    except (OSError, csv.Error) as e:
        raise DataError(f"cannot read CSV file {path}: {e}") from None
    if len(rows) < (1 if limit == 1 else 2):
        raise DataError(f"{path}: expected a header row and at least one data row")
    return rows


def _features(path: Path, line: int, row: list[str], header: list[str], picks: list[int],
              decimal: str = ".", categories: dict[str, list[str]] | None = None,
              training: bool = False, fill: dict[str, float] | None = None) -> list[float]:
    """The feature values of one CSV row (the columns `picks`): finite numbers, or an error naming the line
    and column (float() reads "nan" and "inf", which would show as a diverged run, later). A column of
    `categories` is one-hot encoded over its values, in their order. `training`: the file is the recipe's
    (its errors may name recipe keys to set), not one read by a trained run. `fill` (data.missing: mean): an
    empty cell is its column's value there (NaN while training, for the training rows' mean to replace), an
    empty category none of its values (all its 0/1 inputs 0)."""
    if len(row) != len(header):
        raise DataError(f"{path}, line {line}: {len(row)} columns where the header has {len(header)}")
    empty = ("empty: fill or drop the row's missing values, or set data.missing: drop (leave such rows out) or "
             "mean" if training else "empty: the model needs a value there (a run trained with data.missing: mean "
             "fills it)")
    out = []
    for j in picks:
        values = (categories or {}).get(header[j])
        if values is not None:
            cell = row[j].strip()
            if not cell and fill is not None:
                out.extend(0.0 for _ in values)
                continue
            if cell not in values:
                what = empty if not cell else f"{cell!r}, a value training never saw (it saw {', '.join(map(repr, values))})"
                raise DataError(f"{path}, line {line}: column {header[j]!r} is {what}")
            out.extend(float(cell == v) for v in values)
            continue
        if fill is not None and not row[j].strip():
            out.append(fill.get(header[j], math.nan))
            continue
        try:
            value = float(row[j].replace(",", ".") if decimal == "," else row[j])
        except ValueError:
            if not row[j].strip():
                what = empty
            elif decimal == "." and re.fullmatch(DECIMAL_COMMA, row[j]):
                what = f"{row[j]!r}, a number written with a comma: if the comma is the decimal mark, set data.decimal: ','"
            elif not training:  # a file read by a trained run (predict): its columns are what they are
                what = f"{row[j]!r}, not a number: feature columns must be numeric"
            else:
                what = (f"{row[j]!r}, not a number: feature columns must be numeric; if the column holds categories, "
                        "list it in data.categorical_columns to one-hot encode it, or in data.ignore_columns to "
                        "leave it out (an id, a name, a note)")
            raise DataError(f"{path}, line {line}: column {header[j]!r} is {what}") from None
        if not math.isfinite(value):
            raise DataError(f"{path}, line {line}: column {header[j]!r} is {row[j]!r}; features must be finite "
                            "numbers (fill or drop the row's missing values before training)")
        out.append(value)
    return out


def _fractional(labels: list[str]) -> int | None:
    """The index of the first label that is a number with a fraction, when every label is a number; else None."""
    first = None
    for i, v in enumerate(labels):
        try:
            number = float(v)
        except ValueError:
            return None
        if first is None and math.isfinite(number) and not number.is_integer():
            first = i
    return first


def natural(value: str):
    """A sort key that puts whole numbers first, in numeric order ("2" before "10"), then names. A number is
    decimal digits (isdecimal: "²" and "①" are digits to isdigit, and not to int)."""
    digits = value[1:] if value.startswith("-") else value
    number = digits.isdecimal()
    return not number, int(value) if number else 0, value


def table_columns(p: Path, header: list[str], label_columns: list[str] | None, categorical, separator: str,
                  key: str = "data.label_column", ignored: list[str] | tuple = ()) -> list[str]:
    """The label columns of a feature CSV's header (the last column when the recipe names none), once the
    header is checked against the recipe's `key` (data.label_column, or a regression's data.target_columns)
    and categorical_columns (load_csv, and `dlkit validate`, which reads the header alone)."""
    if len(header) == 1:  # the header read as one cell: the file separates its cells with something else
        other = separator_in(header[0], separator)
        hint = f"; if the file separates cells with {other!r}, set data.separator: {other!r}" if other else ""
        raise DataError(f"{p}: the header reads as one column, {header[0][:60]!r}: a feature CSV has feature "
                        f"columns and a {_noun(key)} column{hint}")
    labels = list(label_columns or [header[-1]])
    unknown = [c for c in labels if c not in header]
    if unknown:
        raise DataError(f"{p}: no column {', '.join(map(repr, unknown))} ({key}); columns are {', '.join(header)}")
    unknown = [c for c in categorical if c not in header]
    if unknown:
        raise DataError(f"{p}: no column {', '.join(map(repr, unknown))} (data.categorical_columns); columns are "
                        f"{', '.join(header)}")
    unknown = [c for c in ignored if c not in header]
    if unknown:
        raise DataError(f"{p}: no column {', '.join(map(repr, unknown))} (data.ignore_columns); columns are "
                        f"{', '.join(header)}")
    taken = [c for c in ignored if c in labels or c in categorical]
    if taken:
        what = f"the {_noun(key)} column" if taken[0] in labels else "in data.categorical_columns"
        raise DataError(f"{p}: {taken[0]!r} is {what} and in data.ignore_columns: a column is read or left out, "
                        "not both (remove it from one)")
    both = [c for c in labels if c in categorical]
    if both:
        why = "class names need no encoding" if key == "data.label_column" else "targets are numbers"
        raise DataError(f"{p}: {both[0]!r} is the {_noun(key)} column{'' if label_columns else ' (the last one)'}, "
                        f"not a feature: remove it from data.categorical_columns ({why})")
    if len(labels) + len(set(ignored)) >= len(header):
        raise DataError(f"{p}: every column is a {_noun(key)} ({key})" + (" or left out (data.ignore_columns)"
                        if ignored else "") + "; a feature CSV needs feature columns too")
    return labels


def _noun(key: str) -> str:
    return "label" if key == "data.label_column" else "target"


def table_header(cfg, label_columns: list[str] | None, key: str = "data.label_column") -> str:
    """A feature CSV's header checked without reading its rows (`dlkit validate`): its path, or a DataError."""
    p = Path(cfg.path).expanduser()
    header = [h.strip() for h in _csv_rows(p, cfg.separator, limit=1)[0][1]]
    table_columns(p, header, label_columns, cfg.categorical_columns, cfg.separator, key,
                  getattr(cfg, "ignore_columns", ()))
    return cfg.path


@dataclass
class Table:
    """A feature CSV's rows read as feature vectors, with what a label or target reader needs of them."""

    path: Path
    header: list[str]
    labels: list[int]  # the label (or target) columns' indices
    cells: list[list[str]]  # each label column's cells, row by row, as the file has them
    x: np.ndarray
    columns: dict  # the `columns` artifact: feature names (one-hot ones `name=value`), the file's inputs
    notes: list[str]
    separator: str
    lines: list[int] | None  # each row's line; None where pandas read the file (`line` finds them)

    def line(self, i: int) -> int:
        """The line of row i, for a message about it: a file pandas read had every row, so the row reader's
        rows are the same ones."""
        if self.lines is None:
            self.lines = [line for line, _ in _csv_rows(self.path, self.separator)[1:]]
        return self.lines[i]


def read_table(path: str, label_columns: list[str] | None, separator: str = ",", decimal: str = ".",
               categorical: list[str] | tuple = (), missing: str = "error", key: str = "data.label_column",
               fast: bool = True, ignored: list[str] | tuple = ()) -> Table:
    """Numeric feature columns, the `categorical` ones one-hot encoded (one column per value the file holds),
    beside the label columns (`key` names them in messages). `missing` (data.missing) is what an empty cell
    does: `error`; `drop` leaves its row out; `mean` makes it NaN, for `pipeline.build` to fill with the
    training rows' mean (an empty category: all its 0/1 inputs 0). An empty label is an error, or its row
    left out under `drop`. The `ignored` columns (data.ignore_columns: an id, a name, a note) are not read.

    A file with nothing to report is read by pandas' C parser (`fast`; 9 times quicker on a table of 200,000
    rows, docs/benchmarks.md);
    any doubt (an empty cell, a row of another length, a cell that is not a number) sends it to the row reader,
    which reads it again and says what is wrong and on which line. Both give the same arrays."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"CSV file not found: {p} (data.path)")
    head = _csv_rows(p, separator, limit=2)  # the header, and the first row (pandas cannot tell a long first row)
    header = [h.strip() for h in head[0][1]]  # "a, b" names b, as `dlkit predict --csv` reads it
    labels = [header.index(c) for c in table_columns(p, header, label_columns, categorical, separator, key, ignored)]
    picks = [j for j in range(len(header)) if j not in labels and header[j] not in ignored]
    fits = len(head[1][1]) == len(header)
    read = _pandas_table(p, header, labels, picks, separator, decimal, categorical) if fast and fits else None
    if read is not None:
        x, cells, categories = read
        return Table(p, header, labels, cells, x, _table_columns(header, picks, categories), [], separator, None)
    rows = _csv_rows(p, separator)
    notes, data_rows = [], rows[1:]
    if missing == "drop":
        data_rows = [(line, row) for line, row in data_rows
                     if len(row) != len(header) or all(row[j].strip() for j in [*labels, *picks])]
        if not data_rows:
            raise DataError(f"{p}: every row has an empty cell, and data.missing: drop leaves them all out")
        if len(data_rows) < len(rows) - 1:
            notes.append(f"data.missing: drop left out {len(rows) - 1 - len(data_rows)} of {len(rows) - 1} rows of "
                         f"{p.name}, those with an empty cell")
    for line, row in data_rows:  # a class named "" would be learnt in silence
        empty = next((j for j in labels if len(row) == len(header) and not row[j].strip()), None)
        if empty is not None:
            raise DataError(f"{p}, line {line}: the {_noun(key)} ({header[empty]!r}) is empty: fill it or drop the "
                            "row, or set data.missing: drop to leave such rows out")
    at = {c: header.index(c) for c in categorical}
    categories = {c: sorted({row[j].strip() for _, row in data_rows if len(row) > j} - {""}, key=natural)
                  for c, j in at.items()}
    fill = {} if missing == "mean" else None  # NaN: the training rows' mean, once the splits are drawn
    x = np.array([_features(p, line, row, header, picks, decimal, categories, training=True, fill=fill)
                  for line, row in data_rows], dtype=np.float32)
    cells = [[row[j] for _, row in data_rows] for j in labels]
    return Table(p, header, labels, cells, x, _table_columns(header, picks, categories), notes, separator,
                 [line for line, _ in data_rows])


def _table_columns(header: list[str], picks: list[int], categories: dict[str, list[str]]) -> dict:
    """The `columns` artifact of a table's features: their names (a one-hot column's `name=value`), and with
    categories, the file's columns (`inputs`) and their values, for `dlkit predict --csv` to encode alike."""
    names = [name for j in picks for name in ([f"{header[j]}={v}" for v in categories[header[j]]]
                                              if header[j] in categories else [header[j]])]
    columns = {"features": names}
    if categories:
        columns.update(inputs=[header[j] for j in picks], categories=categories)
    return columns


def _pandas_table(p: Path, header: list[str], labels: list[int], picks: list[int], separator: str, decimal: str,
                  categorical) -> tuple[np.ndarray, list[list[str]], dict] | None:
    """(features, each label column's cells, each categorical column's values) of a table read by pandas' C
    parser, or None where the row reader must judge: a repeated column name, an empty cell (or a short row,
    which pandas fills with empty ones), a long row (but the first, which pandas cuts short without a word:
    read_table checks it), a number column with a cell that is not a finite number
    (pandas then reads the column as text; the row reader's float() reads "1_000" too), a file it cannot
    parse. pandas' default float parser gives float()'s value for each number (tests/test_data.py checks)."""
    import warnings

    import pandas as pd

    if len(set(header)) != len(header):
        return None
    text = set(labels) | {header.index(c) for c in categorical}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = pd.read_csv(p, sep=separator, decimal=decimal, header=0, names=header, index_col=False,
                                skiprows=excel_separator_line(p, separator),
                                dtype={header[j]: str for j in text}, keep_default_na=False, na_values=[""],
                                skip_blank_lines=True, encoding="utf-8-sig", engine="c", on_bad_lines="error",
                                low_memory=False)
    except (ValueError, OSError, UnicodeError, pd.errors.ParserError):
        return None
    if frame.shape[1] != len(header) or not len(frame) or frame.iloc[:, [*labels, *picks]].isna().to_numpy().any():
        return None
    columns, categories = [], {}
    for j in picks:
        column = frame.iloc[:, j]
        if j in text:  # categorical: stripped, as the row reader strips them; a cell of spaces is empty
            values = column.str.strip().to_numpy(dtype=object)
            names = sorted(set(values), key=natural)
            if "" in names:
                return None
            categories[header[j]] = names
            columns.append((values[:, None] == np.array(names, dtype=object)[None, :]).astype(np.float32))
            continue
        if column.dtype.kind not in "fiu":  # text (a word, "nan", "1_000"), or True/False read as booleans
            return None
        numbers = column.to_numpy(np.float64)
        if not np.isfinite(numbers).all():
            return None
        columns.append(numbers.astype(np.float32)[:, None])
    cells = [frame.iloc[:, j].to_numpy(dtype=object).tolist() for j in labels]
    if any(not c.strip() for column in cells for c in column):  # a label of spaces: empty, as the row reader says
        return None
    x = np.concatenate(columns, axis=1) if columns else np.zeros((len(frame), 0), np.float32)
    return x, cells, categories


def load_csv(path: str, label_column: str | None, separator: str = ",", decimal: str = ".",
             categorical: list[str] | tuple = (), missing: str = "error", ignored: list[str] | tuple = ()) -> Arrays:
    """A feature CSV (read_table) and its one label column: class indices or class names."""
    t = read_table(path, [label_column] if label_column else None, separator, decimal, categorical, missing,
                   ignored=ignored)
    p, label = t.path, t.header[t.labels[0]]
    labels = t.cells[0]
    classes = sorted(set(labels), key=natural)
    quantity = _fractional(labels)
    if quantity is not None:  # a price or a temperature: each value would be learnt as a class of its own
        line = t.line(quantity)
        raise DataError(f"{p}, line {line}: the label ({label!r}) is {labels[quantity]!r}, a number with a fraction: "
                        "a classifier's labels name classes (indices or names), and this column looks like a quantity "
                        "to predict: train arch mlp_regressor on it (data.target_columns), or, if another column is "
                        "the label, set data.label_column")
    notes = list(t.notes)
    if len(classes) > max(20, len(labels) // 2):
        notes.append(f"the label column {label!r} holds {len(classes)} classes for {len(labels)} rows: if that is "
                     "not what you meant, set data.label_column (or, for a quantity, train arch mlp_regressor)")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], dtype=np.int64)
    return Arrays(t.x, y, None, None, classes, str(p), modality="features", columns={**t.columns, "label": label},
                  notes=notes)


def load_targets_csv(path: str, target_columns: list[str] | None, separator: str = ",", decimal: str = ".",
                     categorical: list[str] | tuple = (), missing: str = "error", positive: bool = False,
                     ignored: list[str] | tuple = ()) -> Arrays:
    """A feature CSV (read_table) and its target columns, numbers to predict (a regression's): y is
    (N, targets) float32. A target cell that is not a finite number, or with `positive` (a log transform's)
    not above 0, is an error naming its line."""
    t = read_table(path, target_columns, separator, decimal, categorical, missing, key="data.target_columns",
                   ignored=ignored)
    names = [t.header[j] for j in t.labels]
    y = np.empty((len(t.x), len(names)), np.float32)
    for i in range(len(y)):  # row by row: the first line with a bad target is the one named
        for k, cells in enumerate(t.cells):
            raw = cells[i]
            try:
                value = float(raw.replace(",", ".") if decimal == "," else raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                comma = decimal == "." and re.fullmatch(DECIMAL_COMMA, raw)
                raise DataError(f"{t.path}, line {t.line(i)}: the target ({names[k]!r}) is {raw!r}, not a finite number"
                                + ("; if the comma is the decimal mark, set data.decimal: ','" if comma else
                                   ": a regression predicts numbers (a column of class names is a classifier's "
                                   "label: arch mlp, data.label_column)"))
            if positive and not np.float32(value) > 0:
                raise DataError(f"{t.path}, line {t.line(i)}: the target ({names[k]!r}) is {raw}; "
                                "data.target_transform: log takes targets above 0 only (remove the key, or the "
                                "row)")
            y[i, k] = value
    return Arrays(t.x, y, None, None, [], str(t.path), modality="features", columns={**t.columns, "targets": names},
                  notes=list(t.notes))


def load_targets_npz(path: str, positive: bool = False) -> Arrays:
    """A regression's arrays: x_train (N, F) feature vectors and y_train (N,) or (N, K) numbers to predict, and
    optionally x_test, y_test (then the test split). The targets are named y, or y0, y1, ... Every value must be
    a finite number, and with `positive` (a log transform's) a target above 0; the first that is not is named
    by its example."""
    p, found = _user_npz(path)
    return _target_arrays(found, str(p), positive)


def _target_arrays(found: dict, p: str, positive: bool, names: list[str] | None = None) -> Arrays:
    """A regression's arrays (load_targets_npz), checked; read from `p`; `names`: the targets' (else y, y0, ...)."""
    if found.get("y_train") is None:
        raise DataError(f"{p} has no y_train: a regression learns the numbers it holds, one row (or one number) "
                        "per row of x_train")
    arrays = {}
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a = found.get(name)
        if a is None:
            continue
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise DataError(f"{p}: {name} holds {a.dtype} values; a regression's arrays hold numbers")
        a = a.astype(np.float32)
        if name.startswith("y") and a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise DataError(f"{p}: {name} has shape {a.shape}; mlp_regressor reads " + (
                "feature vectors, (N, F)" if name.startswith("x") else "one number per example (N,), or K (N, K)"))
        if not a.size:  # no rows (or no columns) trained on nothing, or tested nothing, without a word
            raise DataError(f"{p}: {name} has shape {a.shape}: no " + ("examples" if not len(a) else
                            "features" if name.startswith("x") else "targets") + (
                            "; leave x_test and y_test out to carve a test split (data.test_split)"
                            if name.endswith("test") and not len(a) else ""))
        bad = ~np.isfinite(a) | ((a <= 0) if positive and name.startswith("y") else False)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            what = ("not above 0; data.target_transform: log takes targets above 0 only"
                    if np.isfinite(a[i, j]) else "not a finite number")
            raise DataError(f"{p}: {name}[{i}, {j}] is {a[i, j]:g}, {what}")
        arrays[name] = a
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        if x in arrays and len(arrays[x]) != len(arrays[y]):
            raise DataError(f"{p}: {x} has {len(arrays[x])} rows but {y} {len(arrays[y])}")
    if "x_test" in arrays and arrays["x_test"].shape[1:] != arrays["x_train"].shape[1:]:
        raise DataError(f"{p}: x_test rows have {arrays['x_test'].shape[1]} features, x_train's "
                        f"{arrays['x_train'].shape[1]}")
    if "y_test" in arrays and arrays["y_test"].shape[1] != arrays["y_train"].shape[1]:
        raise DataError(f"{p}: y_test rows have {arrays['y_test'].shape[1]} targets, y_train's "
                        f"{arrays['y_train'].shape[1]}")
    k = arrays["y_train"].shape[1]
    if names is not None and len(names) != k:
        raise DataError(f"{p}: {len(names)} target_names for {k} targets (y_train's columns)")
    return Arrays(arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"), [], str(p),
                  modality="features", columns={"targets": names or (["y"] if k == 1 else [f"y{j}" for j in range(k)])})


def load_diabetes() -> Arrays:
    """Efron, Hastie, Johnstone and Tibshirani's diabetes table (2004): 442 patients, ten baseline measures (age,
    sex, body mass index, blood pressure, six blood serum measures) and a measure of the disease's progression
    a year later, the target. Read from scikit-learn's own copy, installed with it (no download), in its
    original units: age in years, sex 1 or 2, and so on."""
    from sklearn.datasets import load_diabetes as bundled

    table = bundled(scaled=False)
    names = [str(n) for n in table.feature_names]
    return Arrays(np.asarray(table.data, np.float32), np.asarray(table.target, np.float32)[:, None], None, None, [],
                  "scikit-learn's copy of the diabetes data (Efron et al. 2004)", modality="features",
                  columns={"features": names, "targets": ["progression"]})


def a_file(path: Path, what: str = "") -> Path:
    """`path`, a file to read; else a UsageError saying it is a folder or is not there, then `what` is read
    instead ("a forecaster is measured on a CSV file of its series")."""
    if not path.is_file():
        raise UsageError(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such file'}"
                         + (f"; {what}" if what else ""))
    return path


def read_feature_rows(path: Path, columns: dict | None, width: int, separator: str = ",",
                      decimal: str = ".") -> tuple[np.ndarray, list[str]]:
    """Feature vectors to classify (`dlkit predict RUN --csv FILE`), one a row under a header, and a name for
    each ("rows.csv:2", its line). `columns` (the training CSV's, a run artifact) picks the features by name
    in training's order, so other columns, the label among them, may be there; a run without it (trained
    on an npz) reads every column, `width` of them, in order. `separator` and `decimal`: the recipe's."""
    rows = _csv_rows(a_file(path), separator)
    header = [h.strip() for h in rows[0][1]]
    if columns is not None:
        inputs = columns.get("inputs", columns["features"])  # "features" names one-hot columns one per value
        missing = [c for c in inputs if c not in header]
        if missing:
            raise DataError(f"{path}: no column {', '.join(map(repr, missing))}; the model reads "
                            f"{', '.join(inputs)} (its training CSV's feature columns)")
        picks = [header.index(c) for c in inputs]
    elif len(header) != width:
        raise DataError(f"{path}: {len(header)} columns; the model reads feature vectors of {width} values, one a "
                        "column in training's order")
    else:
        picks = list(range(width))
    categories, fill = (columns.get("categories"), columns.get("fill")) if columns else (None, None)
    values = np.array([_features(path, line, row, header, picks, decimal, categories, fill=fill)
                       for line, row in rows[1:]], np.float64)
    with np.errstate(over="ignore"):
        x = values.astype(np.float32)
    beyond = np.argwhere(np.isfinite(values) & ~np.isfinite(x))
    if len(beyond):  # 1e300 is a number, but the model would read inf
        r, c = beyond[0]
        raise DataError(f"{path}, line {rows[1 + r][0]}: {values[r, c]:g} is beyond what the model's float32 inputs "
                        "hold (about 3.4e38)")
    return x, [f"{path.name}:{line}" for line, _ in rows[1:]]


def read_target_rows(path: Path, columns: dict, width: int, separator: str = ",",
                     decimal: str = ".") -> tuple[np.ndarray, np.ndarray]:
    """A CSV to measure a trained regression on (`dlkit evaluate RUN --data FILE`): its feature vectors, read
    as `dlkit predict --csv` reads them (read_feature_rows), and (N, K) float targets from the run's target
    columns (`columns["targets"]`), by name. A run trained on an npz names no feature columns: the columns
    other than the targets are its features, in order."""
    rows = _csv_rows(a_file(path, "a regression is measured on a CSV file with its feature columns and its target "
                            "columns"), separator)
    header = [h.strip() for h in rows[0][1]]
    targets = columns["targets"]
    missing = [t for t in targets if t not in header]
    if missing:
        raise DataError(f"{path}: no target column {', '.join(map(repr, missing))}; the run predicts "
                        f"{', '.join(targets)}, and is measured against them")
    features = columns if "features" in columns else {"features": [h for h in header if h not in targets]}
    if "features" not in columns and len(features["features"]) != width:
        raise DataError(f"{path}: {len(features['features'])} columns beside the targets ({', '.join(targets)}); the "
                        f"model reads feature vectors of {width} values, one a column in training's order")
    x, _ = read_feature_rows(path, features, width, separator, decimal)
    at = [header.index(t) for t in targets]
    y = np.empty((len(x), len(targets)), np.float64)
    for i, (line, row) in enumerate(rows[1:]):
        for k, j in enumerate(at):
            raw = row[j].strip() if j < len(row) else ""
            try:
                y[i, k] = float(raw.replace(",", ".") if decimal == "," else raw)
            except ValueError:
                y[i, k] = math.nan
            if not math.isfinite(y[i, k]):
                raise DataError(f"{path}, line {line}: the target ({targets[k]!r}) is {raw!r}, not a finite number")
    return x, y


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PILLOW_ONLY = {".tif", ".tiff"}  # what tf.io.decode_image does not read: Pillow decodes it on every backend


def tf_reason(message: str) -> str:
    """A TensorFlow op's error message without its graph node and op name: "{{function_node ...}} Unknown
    image file format. ... [Op:DecodeImage] name: " reads "Unknown image file format. ..."."""
    import re

    return re.sub(r"\s*\[Op:\w+\].*$", "", re.sub(r"\{\{.*?\}\}\s*", "", message), flags=re.S).strip()


def read_image(f: Path, image_size: list[int] | None) -> np.ndarray:
    """One image file as uint8 (H, W, C), resized (bilinear) to image_size. TensorFlow decodes where it is
    installed; Pillow decodes where it is not, and decodes TIFF everywhere, to the same pixels: 16-bit images
    keep their high byte, as TensorFlow's PNG decoder does (a 16-bit PNG read by Pillow's own conversion came out
    white), and float images (a TIFF) in [0, 1] are scaled to 0-255."""
    from dlkit import backend

    tf = backend.tensorflow()
    if tf is None or f.suffix.lower() in PILLOW_ONLY:
        from PIL import Image

        im = _pillow_image(f)
        if image_size and tf is None:
            im = im.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
        img = np.asarray(im, dtype=np.uint8)
        img = img[..., None] if img.ndim == 2 else img
        if image_size and tf is not None:  # resized as TensorFlow resizes the folder's other images
            img = tf.cast(tf.image.resize(img, image_size), tf.uint8).numpy()
        return img
    try:  # read by Python, not tf.io.read_file: a file name that is not UTF-8 (Latin-1 on disk) was a traceback
        img = tf.io.decode_image(f.read_bytes(), expand_animations=False)
    except OSError as e:
        raise DataError(f"cannot read image {f}: {e.strerror or e}") from None
    except tf.errors.OpError as e:
        raise DataError(f"cannot decode image {f}: {tf_reason(e.message)}") from None
    if image_size:
        img = tf.cast(tf.image.resize(img, image_size), tf.uint8)
    return img.numpy()


SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


def _pillow_image(f: Path):
    """An image file decoded by Pillow into 8-bit channels: its first frame (of an animation, or of a TIFF's
    pages, as tf's expand_animations=False), with the channels tf.io.decode_image gives: 1 (gray), 2 (gray +
    alpha), 3 or 4 (with alpha)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            im.seek(0)
            im.load()
            if im.mode in SIXTEEN_BIT or (im.mode == "I" and im.format == "PNG"):  # 16-bit gray: the high byte
                pixels = np.asarray(im).astype(np.int64)
                return Image.fromarray((pixels.clip(0, 65535) >> 8).astype(np.uint8), "L")
            if im.mode == "F":
                return Image.fromarray(_unit_floats(f, np.asarray(im)), "L")
            if im.mode == "I":  # 32-bit integers (a TIFF): no scale to read them by
                raise DataError(f"cannot read image {f}: its pixels are 32-bit integers; dlkit reads images of 8- "
                                "or 16-bit channels, or of floats in [0, 1] (convert it to 16-bit or to PNG)")
            to = {"1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
                  "P": "RGBA" if "transparency" in im.info else "RGB", "PA": "RGBA"}
            mode = to.get(im.mode, im.mode)
            return im.convert(mode) if mode != im.mode else im.copy()
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot decode image {f}: {e}") from None


def _unit_floats(f: Path, pixels: np.ndarray) -> np.ndarray:
    """A float image's pixels in [0, 1] as uint8 0-255; other values are refused, naming them (Pillow's own
    conversion clipped them in silence)."""
    if not np.isfinite(pixels).all():
        raise DataError(f"cannot read image {f}: its float pixels hold NaN or infinite values")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 1:
        raise DataError(f"cannot read image {f}: its float pixels run from {low:g} to {high:g}; dlkit reads a "
                        "float image's pixels in [0, 1] (scale it to [0, 1], or save it as 8- or 16-bit)")
    return np.round(pixels * 255).astype(np.uint8)


def read_images(paths, shape: tuple[int, ...], strip: bool = False) -> tuple[np.ndarray, list[str]]:
    """uint8 (N, H, W, C) images for a model of input `shape` (`dlkit predict`'s and `generate --input`'s), and
    a name for each ("a.npy[3]" for the rows of an array): files resized to (H, W), RGB to gray by luminance,
    gray repeated to RGB, alpha dropped. `strip`: the model reads a strip (an image-to-sequence reader's row of
    digits), and each image keeps its aspect instead, scaled to the strip's height H and set at the left of a
    black strip W wide, as the training strings were composed (a 28 x 56 image of two digits fills the first 56
    columns of 140); one wider than the strip is an error."""
    if len(shape) != 3:
        raise UsageError(f"this model reads feature vectors of shape {shape}, not images: give them as rows of a "
                         "CSV file, dlkit predict RUN --csv FILE")
    out, names = [], []
    files = _image_files(paths)
    with ui.work("reading the inputs", len(files), " files") as advance:  # a folder of photos: said as it goes
        for path, name in files:
            images, named = _input_images(path, shape, strip, name)
            out.append(images)
            names += named
            advance()
    return np.concatenate(out), names


def _input_images(path: Path, shape: tuple[int, ...], strip: bool = False,
                  name: str | None = None) -> tuple[np.ndarray, list[str]]:
    """One file's images (an image file's one, an array file's N) as uint8 (N, H, W, C) for a model of input
    `shape`, and a name for each (`name`, the file's name by default; `name[i]` for an array's); `strip` as
    read_images."""
    name = name or path.name
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    height, width, channels = shape
    fits = (lambda w: w <= width) if strip else (lambda w: w == width)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: not a numpy array file ({first_line(e)})") from None
        given = arr.shape
        # one image (H, W) or (H, W, C); else N of them (a (28, 28, 28) array is 28 MNIST digits, not one image
        # of 28 channels)
        one = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4, channels))
        arr = arr[None] if one and arr.shape[0] == height and fits(arr.shape[1]) else arr
        arr = arr[..., None] if arr.ndim == 3 else arr
        if arr.ndim != 4 or arr.shape[1] != height or not fits(arr.shape[2]):
            first = arr.ndim == 4 and arr.shape[1] in (1, 3, 4) and arr.shape[2] == height and fits(arr.shape[3])
            raise UsageError(f"{path}: an array of shape {given}; this model takes images of {height} x "
                             f"{f'up to {width}' if strip else width} (N, H, W[, C]), uint8 0-255" + (
                                 "; these are channels first, as PyTorch keeps them: save np.transpose(x, (0, 2, 3, "
                                 "1))" if first else ""))
        if arr.dtype.kind not in "iuf":
            raise UsageError(f"{path}: an array of {arr.dtype}; images are pixel values, whole numbers 0-255")
        if not arr.size:  # Keras's predict fails on no batches (an UnboundLocalError)
            raise UsageError(f"{path}: an array of shape {given}, empty: no images to read")
        if not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 255 and (arr == np.round(arr)).all()):
            # a float image in [0, 1] became all zeros as uint8, and the model answered for black images
            raise UsageError(f"{path}: {arr.dtype} values from {arr.min()} to {arr.max()}; images are read as "
                             "pixel values, whole numbers 0-255 (an image in [0, 1]: multiply it by 255)")
        names = [f"{name}[{i}]" for i in range(len(arr))]
    elif strip:
        arr = read_image(path, None)
        h, w = arr.shape[:2]
        if h != height:  # to the strip's height, its aspect kept
            arr = read_image(path, [height, max(1, round(w * height / h))])
        if arr.shape[1] > width:
            raise UsageError(f"{path}: {h} x {w} pixels, {arr.shape[1]} wide at this model's height of {height}: "
                             f"wider than the {width} it reads (crop it, or give fewer digits)")
        arr = arr[None]
        names = [name]
    else:
        arr = read_image(path, [height, width])[None]
        names = [name]
    arr = _to_channels(np.asarray(arr), channels).astype(np.uint8)
    if arr.shape[2] < width:  # a strip: black after the image, as after a training string's last digit
        arr = np.concatenate([arr, np.zeros((len(arr), height, width - arr.shape[2], channels), np.uint8)], axis=2)
    return arr, names


def class_of_folder(name: str) -> str:
    """The class a class folder's name names: itself, or for one named in Latin-1 on disk (Python's surrogate
    escapes) the name with the bytes written out ("caf\\xe9"), which every writer takes (matplotlib's confusion
    matrix raised a TypeError on the escapes, after the training)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def read_labelled_images(path: Path, shape: tuple[int, ...], classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A labelled folder to measure a trained image classifier on (`dlkit evaluate RUN --data FOLDER`): uint8
    (N, H, W, C) images for a model of input `shape`, read as read_images reads them (resized, colour converted),
    their class indices among the run's `classes`, and notes. The layout is training's: `path/<class>/<image>`,
    a class folder's sub-folders read too; a folder holding `test/` (a dataset's root) is measured on its
    `test/`. A class folder the run does not know is an error; the run's classes need not all be there."""
    if not path.is_dir():
        raise UsageError(f"{path}: {'a file' if path.exists() else 'no such folder'}; an image classifier is "
                         "measured on a folder of class folders, FOLDER/<class>/<image>")
    notes = []
    if (path / "test").is_dir() and "test" not in classes:
        path = path / "test"
        notes.append(f"measured on {path}, the test split of the folder given")
    found = sorted(d.name for d in path.iterdir() if d.is_dir() and _visible(d))
    shown = f"{', '.join(classes[:20])}{', ...' if len(classes) > 20 else ''}"
    if not found:
        raise DataError(f"{path} has no class folders; expected {path}/<class>/<image>, each class one of the run's "
                        f"({shown})")
    unknown = [name for name in found if class_of_folder(name) not in classes]
    if unknown:
        raise DataError(f"{path} has class folder(s) {', '.join(unknown[:10])}{', ...' if len(unknown) > 10 else ''} "
                        f"that the run does not know; its classes are {shown}")
    left_out = Counter()
    files = [(classes.index(class_of_folder(name)), _folder_images(path / name, left_out)) for name in found]
    height, width, channels = shape
    images, labels = [], []
    with ui.work(f"reading {path}", sum(len(f) for _, f in files), " images") as advance:
        for label, paths in files:
            for f in paths:
                images.append(_to_channels(read_image(f, [height, width]), channels).astype(np.uint8))
                advance()
            labels += [label] * len(paths)
    if not images:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the class folders of {path}"
                        + (f"; the files there are of other types ({_kinds(left_out)})" if left_out else ""))
    beside = [f for f in path.iterdir() if f.is_file() and _visible(f)]
    if beside:
        notes.append(f"{len(beside)} file(s) beside the class folders of {path} left out ({beside[0].name}"
                     f"{', ...' if len(beside) > 1 else ''}): a labelled image is in its class's folder")
    if left_out:
        notes.append(f"{sum(left_out.values())} file(s) under {path} are not images dlkit reads, and were left out "
                     f"({_kinds(left_out)})")
    return np.stack(images), np.array(labels, np.int64), notes


def read_labelled_rows(path: Path, columns: dict | None, width: int, classes: list[str], separator: str = ",",
                       decimal: str = ".") -> tuple[np.ndarray, np.ndarray]:
    """A labelled CSV to measure a trained feature classifier on (`dlkit evaluate RUN --data FILE`): its feature
    vectors, read as `dlkit predict --csv` reads them (read_feature_rows), and the class index of each row's
    label among the run's `classes`. The label column is training's (`columns["label"]`); a run trained on an
    npz, which names no columns, reads the last column as the label and the others as the features."""
    rows = _csv_rows(a_file(path, "a feature classifier is measured on a CSV file with its feature columns and a "
                            "label column"), separator)
    header = [h.strip() for h in rows[0][1]]
    label = columns.get("label", header[-1]) if columns else header[-1]
    if label not in header:
        raise DataError(f"{path}: no label column {label!r} (the run's training CSV's); columns are {', '.join(header)}")
    if columns is None and len(header) - 1 != width:
        raise DataError(f"{path}: {len(header) - 1} feature columns beside the label ({label!r}, the last column); the "
                        f"model reads feature vectors of {width} values, one a column in training's order")
    x, _ = read_feature_rows(path, columns or {"features": header[:-1]}, width, separator, decimal)
    at, index = header.index(label), {c: i for i, c in enumerate(classes)}
    y = np.empty(len(x), np.int64)
    for i, (line, row) in enumerate(rows[1:]):
        cell = row[at] if at < len(row) else ""
        found = index.get(cell, index.get(cell.strip()))
        if found is None:
            shown = f"{', '.join(classes[:20])}{', ...' if len(classes) > 20 else ''}"
            raise DataError(f"{path}, line {line}: the label ({label!r}) is {cell!r}, not one of the run's classes "
                            f"({shown})")
        y[i] = found
    return x, y


def _image_files(paths) -> list[tuple[Path, str]]:
    """The paths given, each folder among them replaced by the image and .npy files in it and in its sub-folders
    (a folder of class folders, as image_folder trains on), sorted, each with the name its images go by: a
    file's name, or its path within the folder given (`3/0001.png`). Hidden files and folders (a Mac's
    `._photo.png`, `.ipynb_checkpoints/`) are left out, as training leaves them out."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            kinds = IMAGE_EXTENSIONS | {".npy"}
            inside = sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file()
                            and p.suffix.lower() in kinds
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not inside:
                raise UsageError(f"{path}: a folder without images ({', '.join(sorted(IMAGE_EXTENSIONS))}, .npy), "
                                 "in it or in its sub-folders")
            out += [(path / p, p.as_posix()) for p in inside]
        else:
            out.append((path, path.name))
    return out


def _to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    have = x.shape[-1]
    if have in (2, 4):  # gray or colour with alpha: the alpha goes
        x, have = x[..., : have - 1], have - 1
    if have == channels:
        return x
    if channels == 1 and have == 3:
        return np.round(x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[..., None].clip(0, 255)
    if channels == 3 and have == 1:
        return np.repeat(x, 3, axis=-1)
    raise UsageError(f"images with {have} channels; this model takes {channels}")


def _visible(path: Path) -> bool:
    """Not hidden: `.DS_Store`, a Mac's `._photo.png` resource forks, `.ipynb_checkpoints/` are no data."""
    return not path.name.startswith(".")


BROKEN = "broken link(s)"  # what _folder_images counts a link whose target is gone as


def _folder_images(folder: Path, left_out: Counter, deep: bool = True) -> list[Path]:
    """The image files in a folder, sorted, hidden ones left out; `deep`: in its sub-folders too (a class
    folder's, as Keras's image_dataset_from_directory reads them). `left_out` counts the other files by type."""
    if deep:
        files = []
        for top, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            files += [Path(top) / name for name in names]
    else:
        files = [f for f in folder.iterdir() if not f.is_dir()]  # files, and links whose target is gone
    found = []
    for f in filter(_visible, files):
        if f.is_symlink() and not f.exists():  # its target gone (a link into a store since moved): no image
            left_out[BROKEN] += 1
        elif f.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(f)
        else:
            left_out[f.suffix.lower() or "(no extension)"] += 1
    return sorted(found)


def _kinds(left_out: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(left_out.items()))


def _common_channels(images: dict[str, list[np.ndarray]], root: Path, notes: list[str]) -> None:
    """Images of several kinds (gray, gray with alpha, RGB, RGBA) made one, in place: RGB where any has colour,
    else gray; alpha dropped (as a model reads one channel count)."""
    counts = Counter(im.shape[-1] for split in images.values() for im in split)
    if len(counts) < 2:
        return
    target = 3 if any(c >= 3 for c in counts) else 1
    names = {1: "gray", 2: "gray with alpha", 3: "RGB", 4: "RGBA"}
    mix = ", ".join(f"{n} {names.get(c, f'{c}-channel')}" for c, n in sorted(counts.items()))
    for split in images.values():
        split[:] = [_to_channels(im, target).astype(np.uint8) for im in split]
    notes.append(f"images under {root} mix {mix}; all are read as {names[target]}")


def load_image_folder(path: str, image_size: list[int] | None, order: str = "shuffled") -> Arrays:
    """A folder with one sub-folder per class (`root/cat/1.png`, or deeper: `root/cat/2024/1.png`), or `train/`
    and (optionally) `test/` folders of those. A folder of images without sub-folders is unlabelled (`root/1.png`,
    or `root/train/1.png`). Hidden files are left out; files of other types are counted in a note. Each split's
    examples come in a fixed shuffled order, not class by class (`order` "listed": class by class, as the
    folders list them, as runs before data.folder_order read them)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root} (data.path)")
    splits = {"train": root / "train"} if (root / "train").is_dir() else {"train": root}
    if (root / "train").is_dir() and (root / "test").is_dir():
        splits["test"] = root / "test"
    classes = sorted(d.name for d in splits["train"].iterdir() if d.is_dir() and _visible(d))
    labelled, left_out, images, labels, notes = bool(classes), Counter(), {}, {}, []
    for split, folder in splits.items():
        if labelled and split == "test":  # a class only the test split has was never learnt, and was not read
            extra = sorted(d.name for d in folder.iterdir() if d.is_dir() and _visible(d) and d.name not in classes)
            if extra:
                raise DataError(f"{folder} has class folder(s) {', '.join(extra)} that {splits['train']} does not; "
                                f"the model learns the classes of the training folder ({', '.join(classes)})")
        images[split], labels[split] = [], []
        # unlabelled: the images in the folder itself
        found = [(i, cls, _folder_images(folder / cls, left_out, deep=labelled))
                 for i, cls in enumerate(classes or [""])]
        # a folder of many photos takes minutes to decode (an 800 x 600 JPEG about 4 ms on the 2-core VM): said
        with ui.work(f"reading {folder}", sum(len(files) for *_, files in found), " images") as advance:
            for i, cls, files in found:
                for f in files:
                    images[split].append(read_image(f, image_size))
                    advance()
                labels[split] += [i] * len(files)
                if labelled and split == "train" and not files:
                    notes.append(f"class folder {folder / cls} holds no images: the model has an output for {cls!r} "
                                 "that no training example teaches")
        beside = [f for f in folder.iterdir() if f.is_file() and _visible(f)] if labelled else []
        if beside:
            notes.append(f"{len(beside)} file(s) beside the class folders of {folder} left out "
                         f"({beside[0].name}{', ...' if len(beside) > 1 else ''}): a labelled image is in its "
                         "class's folder")
        if not images[split]:
            layout = f"{folder}/<class>/<image>, or the images in {folder} itself (unlabelled)"
            raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {folder}; expected {layout}"
                            + (f"; the files there are of other types ({_kinds(left_out)}): "
                               + ("convert them to PNG" if set(left_out) - {BROKEN} else "each link's target is gone")
                               if left_out else ""))
    if left_out:
        notes.append(f"{sum(left_out.values())} file(s) under {root} are not images dlkit reads, and were left out "
                     f"({_kinds(left_out)}); it reads {', '.join(sorted(IMAGE_EXTENSIONS))}")
    sizes = Counter(f"{im.shape[0]} x {im.shape[1]}" for split in images.values() for im in split)
    if len(sizes) > 1:
        shown = ", ".join(size for size, _ in sizes.most_common(3))
        raise DataError(f"images under {root} differ in size ({shown}{', ...' if len(sizes) > 3 else ''}; "
                        f"{len(sizes)} sizes in all); set data.image_size: [height, width] to resize them")
    _common_channels(images, root, notes)
    # the examples in an order a fixed seed draws, not class by class as the folders list them (as Keras's
    # image_dataset_from_directory shuffles them): data.limit's first N, data.test_limit's and a sample of a
    # split's first images hold every class
    orders = {split: np.random.default_rng(0).permutation(len(ims)) if order == "shuffled" else np.arange(len(ims))
              for split, ims in images.items()}
    out = {f"x_{split}": np.stack(ims)[orders[split]] for split, ims in images.items()}
    out.update({f"y_{split}": np.array(labels[split])[orders[split]] if labelled else None for split in images})
    out.setdefault("x_test", None)
    out.setdefault("y_test", None)
    arrays = _arrays(out, [class_of_folder(c) for c in classes], str(root))
    arrays.notes.extend(notes)
    return arrays


def _tfds_label_key(name: str, info, wants: str) -> str:
    """The label key of a tensorflow-datasets dataset of (input, label) pairs whose inputs are what
    `wants` says ("images", "text"), read from its info before anything is downloaded; else a DataError
    saying what the dataset holds (before, text met np.stack as a traceback, audio was said to be "images of
    different sizes", and a dataset without pairs was "check the name")."""
    keys = info.supervised_keys
    if not keys:
        raise DataError(f"tfds:{name} has no (input, label) pairs (tensorflow-datasets gives it no supervised_keys); "
                        f"dlkit reads {wants} with class labels from a tfds:NAME dataset")
    if not isinstance(keys[0], str):
        raise DataError(f"tfds:{name}'s inputs are a dict of {len(keys[0])} features ({', '.join(list(keys[0])[:4])}"
                        f"{', ...' if len(keys[0]) > 4 else ''}), not {wants}; export them to a CSV file "
                        "(data.dataset: csv) to train on them")
    feature = info.features[keys[0]]
    text = np.dtype(feature.np_dtype).kind in "OSU"
    if wants == "images" and text:
        raise DataError(f"tfds:{name}'s inputs are text, not images: a text classifier reads it (model.arch: "
                        f"rnn_classifier with data.dataset: tfds:{name})")
    if wants == "images" and len(feature.shape) not in (2, 3):
        raise DataError(f"tfds:{name}'s inputs ({keys[0]}) have shape {tuple(feature.shape)}, not images (height, "
                        "width[, channels])")
    if wants == "text" and not text:
        raise DataError(f"tfds:{name}'s inputs ({keys[0]}) are not text: shape {tuple(feature.shape)}, "
                        f"{np.dtype(feature.np_dtype).name}")
    return keys[1]


def tfds_pairs(name: str, data_dir: str | None, allow_download: bool, instead: str, wants: str = "images",
               first: dict[str, int | None] | None = None, each=None,
               shape=None, first_where_test: bool = False) -> tuple[dict, list[str]]:
    """A tensorflow-datasets dataset of (input, label) pairs read into memory: {split: [(x, y), ...]} for train
    and (where it has one) test, and its class names. `wants`: the inputs it must hold ("images", "text").
    `instead` says what to use where tensorflow-datasets cannot be imported. `first`: {split: read only its
    first N examples (data.limit, data.test_limit)}; `each(x)`: made of each input as it is read (a resize), so
    that memory holds what is kept, not the dataset's full-size inputs; `shape(feature)`: an input's shape as
    kept (None where unknown), to refuse a split that would not fit in memory before reading it.
    `first_where_test`: `first` holds only where the dataset has a test split of its own (a test share
    carved from the training examples is drawn from all of them)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"data.dataset tfds:{name} needs tensorflow-datasets, which this Python cannot import "
                        f"({e}); install dlkit with `make install`, or {instead}") from None
    import keras

    quiet = not keras.config.is_interactive_logging_enabled()  # --quiet (backend.keras_console)
    try:
        if quiet:
            tfds.disable_progress_bar()
        builder = tfds.builder(name, data_dir=data_dir)
        label_key = _tfds_label_key(name, builder.info, wants)
        if allow_download:
            builder.download_and_prepare()
        kept = shape(builder.info.features[builder.info.supervised_keys[0]]) if shape else None
        found = {}
        for split in ("train", "test"):
            try:
                found[split] = builder.as_dataset(split=split, as_supervised=True)  # nothing read yet
            except (ValueError, KeyError):  # no such split: a dataset without a test split goes on without
                if split == "train":
                    raise
        if first_where_test and "test" not in found:
            first = None
        out = {}
        for split, ds in found.items():
            n = builder.info.splits[split].num_examples if split in builder.info.splits else 0
            if (first or {}).get(split):
                ds, n = ds.take(first[split]), min(n, first[split]) if n else first[split]
            _fits_in_memory(name, split, n, kept)
            out[split] = []
            with ui.work(f"reading tfds:{name} {split}", n, " examples") as advance:
                for x, y in tfds.as_numpy(ds):
                    out[split].append((each(x) if each else x, y))
                    advance()
        label = builder.info.features[label_key]
        classes = list(label.names) if hasattr(label, "names") else []
    except (DataError, OutOfMemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds; all mean "not available"
        raise DataError(
            f"tensorflow-datasets could not provide {name!r}: {type(e).__name__}: {first_line(e, 200)}. "
            "Check the name (tfds.list_builders()), or prepare it under data.dir first."
        ) from None
    finally:
        if quiet:
            tfds.enable_progress_bar()
    return out, classes


def _free_memory() -> int | None:
    """The bytes this machine can give without swapping (Linux's MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _fits_in_memory(name: str, split: str, n: int, shape: tuple[int, ...] | None) -> None:
    """Refuse, before reading, a split whose uint8 inputs would take more than 90% of the free memory: the
    kernel would kill the process partway (no error, no word) rather than say so."""
    if shape and n:
        fits_in_memory(n * math.prod(shape), f"tfds:{name}'s {split} split, {n:,} images of "
                       f"{' x '.join(map(str, shape))},", "set data.limit (its first N examples are read, and "
                       "data.test_limit for the test split) or a smaller data.image_size")


def fits_in_memory(need: int, what: str, fix: str) -> None:
    """An OutOfMemoryError, before the arrays are made, where `need` bytes are more than 90% of the free memory
    (numpy's zeros reserve them lazily, and filling them gets the process killed without a word)."""
    free = _free_memory()
    if free and need > 0.9 * free:
        raise OutOfMemoryError(f"{what} takes {need / 2**30:.1f} GB in memory, and this machine has "
                               f"{free / 2**30:.1f} GB free: {fix}")


def load_tfds(name: str, data_dir: str | None, allow_download: bool, image_size: list[int] | None = None,
              limit: int | None = None, test_limit: int | None = None) -> Arrays:
    """Any tensorflow-datasets dataset of (image, label) pairs, read into memory; each image resized (bilinear,
    as an image folder's) to `image_size` where the recipe sets it, as it is read. Most photo datasets hold
    images of many sizes (tf_flowers), and those need it. `limit`, `test_limit`: only the first N of each split
    are read (the N a recipe's data.limit and data.test_limit keep), not the whole dataset."""
    def resize(x):
        import tensorflow as tf  # tensorflow-datasets runs on it

        return tf.cast(tf.image.resize(x, image_size), tf.uint8).numpy()

    def kept(feature):  # (H, W, C) as kept, or None where the dataset's sizes vary and none is set
        h, w, *c = feature.shape
        h, w, c = *(image_size or (h, w)), (c or [1])[0]
        return (h, w, c) if None not in (h, w, c) else None

    pairs, classes = tfds_pairs(name, data_dir, allow_download,
                                "export the data to an .npz file (data.dataset: npz) on a machine that has it",
                                first={"train": limit, "test": test_limit}, each=resize if image_size else None,
                                shape=kept)
    out = {"x_test": None, "y_test": None}
    for split, items in pairs.items():
        images = [x for x, _ in items]
        sizes = sorted({x.shape for x in images})
        if len(sizes) > 1:
            shown = " and ".join("x".join(map(str, shape)) for shape in sizes[:2])
            raise DataError(f"tfds:{name}: its {split} images differ in size ({shown}, {len(sizes)} sizes in all); set "
                            "data.image_size: [height, width] to resize them")
        out[f"x_{split}"] = np.stack(images)
        out[f"y_{split}"] = np.array([y for _, y in items])
    return _arrays(out, classes, f"tfds:{name}")


def blend_over_patches(digits: np.ndarray, backgrounds: np.ndarray, seed: int) -> np.ndarray:
    """MNIST-M-style images (Ganin et al., 2015): |patch - digit| per channel, where each digit gets a
    random same-sized crop of a random colour background. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n, h, w = digits.shape[:3]
    bh, bw = backgrounds.shape[1:3]
    pick = rng.integers(0, len(backgrounds), n)
    top, left = rng.integers(0, bh - h + 1, n), rng.integers(0, bw - w + 1, n)
    rows = top[:, None] + np.arange(h)[None, :]
    cols = left[:, None] + np.arange(w)[None, :]
    patches = backgrounds[pick[:, None, None], rows[:, :, None], cols[:, None, :]]
    d = digits.reshape(n, h, w, 1).astype(np.int16)
    return np.abs(patches.astype(np.int16) - d).astype(np.uint8)


def load_mnist_m(data_dir: str | None, allow_download: bool) -> Arrays:
    """MNIST digits blended over CIFAR-10 patches, built from the two real datasets (never downloaded)."""
    mnist = load_builtin("mnist", data_dir, allow_download)
    cifar = load_builtin("cifar10", data_dir, allow_download)
    x_test = None
    if mnist.x_test is not None:
        x_test = blend_over_patches(mnist.x_test, cifar.x_test if cifar.x_test is not None else cifar.x_train, 2)
    return Arrays(blend_over_patches(mnist.x_train, cifar.x_train, 1), mnist.y_train, x_test, mnist.y_test,
                  mnist.class_names, f"mnist_m from {mnist.origin} and {cifar.origin}")


# ---------------------------------------------------------------- the one table of dataset names


@dataclass(frozen=True)
class Dataset:
    description: str
    load: Callable  # (data section) -> Arrays
    reads_path: bool = False  # reads data.path (a user's file or folder)
    # a dataset from outside dlkit (a recipe's plugin, an installed package): where it was declared, what its
    # data.path should be where it reads one, and the pydantic class of its own `data:` keys (None: none)
    origin: str = ""
    path_is: str = ""
    keys: type | None = None
    targets: Callable | None = None  # (data section, positive) -> a regression's Arrays: a plugin's, read so
    # (data section, the names the reading does not take, the reader) -> what a plugin's load gave back, checked
    # as every reading needs (its keys, its splits paired), where it was read from and how a message names the
    # dataset: the text, pair and series readings' start
    gathered: Callable | None = None


DATASETS = {
    "mnist": Dataset("MNIST digits, 28x28x1, 10 classes (IDX .gz files)",
                     lambda cfg: load_builtin("mnist", cfg.dir, cfg.download)),
    "fashion_mnist": Dataset("Fashion-MNIST, 28x28x1, 10 classes (IDX .gz files)",
                             lambda cfg: load_builtin("fashion_mnist", cfg.dir, cfg.download)),
    "cifar10": Dataset("CIFAR-10, 32x32x3, 10 classes (keras npz or the python batches)",
                       lambda cfg: load_builtin("cifar10", cfg.dir, cfg.download)),
    "mnist_m": Dataset("MNIST digits blended over CIFAR-10 patches, 28x28x3 (built from those two, MNIST-M style)",
                       lambda cfg: load_mnist_m(cfg.dir, cfg.download)),
    "tfds:NAME": Dataset("any tensorflow-datasets dataset with (image, label) pairs",
                         lambda cfg: load_tfds(cfg.dataset.removeprefix("tfds:"), cfg.dir, cfg.download,
                                                   cfg.image_size, cfg.limit, cfg.test_limit)),
    "npz": Dataset("arrays x_train, y_train[, x_test, y_test] in a .npz file (data.path)",
                   lambda cfg: load_npz(cfg.path), reads_path=True),
    "image_folder": Dataset("a folder with one sub-folder of images per class (data.path)",
                            lambda cfg: load_image_folder(cfg.path, cfg.image_size, getattr(cfg, "folder_order", "shuffled")),
                            reads_path=True),
    "csv": Dataset("a CSV file of feature columns (numbers, or data.categorical_columns) and a label column (data.path)",
                   lambda cfg: load_csv(cfg.path, cfg.label_column, getattr(cfg, "separator", ","),
                                        getattr(cfg, "decimal", "."), getattr(cfg, "categorical_columns", ()),
                                        getattr(cfg, "missing", "error"), getattr(cfg, "ignore_columns", ())),
                   reads_path=True),
}


def dataset(name: str) -> Dataset:
    """The table entry of a data.dataset value (`tfds:mnist` is an entry of `tfds:NAME`)."""
    return DATASETS["tfds:NAME" if name.startswith("tfds:") else name]


def load(cfg) -> Arrays:
    """The arrays a `data:` recipe section names."""
    return dataset(cfg.dataset).load(cfg)


def locate(cfg) -> str:
    """Where the data of a `data:` section would be read from, checked without reading it (dlkit validate).
    Raises DataError when a built-in dataset is nowhere to be found and may not be downloaded."""
    name = cfg.dataset
    if name in BUILTINS or name == "mnist_m":
        found = []
        for part in ("mnist", "cifar10") if name == "mnist_m" else (name,):
            folder = next((f for f in search_dirs(part, cfg.dir) if has_builtin_files(part, f)), None)
            if folder is None and not cfg.download:
                raise DataError(f"dataset {part!r} not found in {', '.join(map(str, search_dirs(part, cfg.dir)))} "
                                f"and data.download is false. Put {BUILTINS[part]['expect']} there.")
            found.append(str(folder) if folder else f"{part}: not found locally; will try to download")
        return " + ".join(found)
    if dataset(name).reads_path:
        if not Path(cfg.path).expanduser().exists():
            raise DataError(f"data.path {cfg.path} does not exist")
        return table_header(cfg, [cfg.label_column] if cfg.label_column else None) \
            if name == "csv" and hasattr(cfg, "categorical_columns") else cfg.path
    origin = dataset(name).origin
    return f"{name} ({origin})" if origin else name


# ---------------------------------------------------------------- datasets from outside dlkit

SHIPPED = tuple(DATASETS)  # dlkit's own, in the order `dlkit list` gives them
# every dataset name a task of dlkit's reads as its own (the text, series and regression tasks' too): a recipe
# that gives one means dlkit's, so no plugin may take it (tests/test_plugins.py holds it to `dlkit list datasets`)
RESERVED = frozenset(SHIPPED) | {"sentiment", "tsv", "tinyshakespeare", "ptb", "text", "pjm_hourly_energy",
                                 "airline_passengers", "mnist_strings", "tatoeba_fra_eng", "diabetes"}
ENTRY_POINTS = "dlkit.datasets"  # an installed package's datasets: `NAME = "package.module"`
FROM_PACKAGES: dict[str, dict] = {}  # the installed packages' datasets loaded, by name: where each came from
PLUGIN_NAME = re.compile(r"[a-z][a-z0-9_]*")
# what a plugin's load may give back: its arrays, and the names of its classes or of its targets (a regression's)
RETURNED = ("x_train", "y_train", "x_test", "y_test", "class_names", "target_names")
PLUGIN_NAMES = "a plugin's load gives them as class_names"
UNREAD = {"target_names": ", the names of numbers to predict, which a regression reads (arch: mlp_regressor)",
          "class_names": ", the names of class labels, which a classifier reads"}
PLUGIN_FACE = ("`DATASET = \"NAME\"` and `load(data)` giving back x_train[, y_train, x_test, y_test, class_names], "
               "as docs/examples/hdf5_dataset.py has them")


def register(name: str, dataset: Dataset) -> None:
    """Add a dataset from outside dlkit (a plugin, a test) to the one table."""
    DATASETS[name] = dataset


def of_module(module, origin: str) -> tuple[str, Dataset] | None:
    """The dataset a plugin module declares (None: it declares none): `DATASET`, its name; `load(data)`,
    given the validated `data:` section, giving back its arrays as an npz holds them (x_train, y_train[,
    x_test, y_test]) and optionally `class_names`; `Data`, a pydantic model of its own `data:` keys; `READS_PATH`,
    what data.path should be where it reads one; `DESCRIPTION` (else its docstring's first line). A module
    that lacks part of it, or takes a name dlkit ships, raises ValueError saying what, in `origin`'s words."""
    from pydantic import BaseModel

    name = getattr(module, "DATASET", None)
    if name is None:
        return None
    if not isinstance(name, str) or not PLUGIN_NAME.fullmatch(name):
        raise ValueError(f"{origin}: DATASET = {name!r}; a dataset's name is lowercase letters, digits and _, "
                         "starting with a letter (the name recipes give as data.dataset)")
    if name in RESERVED:
        raise ValueError(f"{origin}: {name!r} is the name of a dataset dlkit ships; give yours another (its DATASET)")
    read = getattr(module, "load", None)
    if not callable(read):
        raise ValueError(f"{origin}: dataset {name!r} lacks load(data), which gives back its arrays; a dataset "
                         f"plugin declares {PLUGIN_FACE}")
    keys = getattr(module, "Data", None)
    if keys is not None and not (isinstance(keys, type) and issubclass(keys, BaseModel)):
        raise ValueError(f"{origin}: dataset {name!r}'s Data is not a pydantic model; its own data: keys are "
                         "`class Data(pydantic.BaseModel)` with a field per key")
    path_is = getattr(module, "READS_PATH", "")
    if not isinstance(path_is, str):
        raise ValueError(f"{origin}: READS_PATH is what data.path should be (\"the .h5 file\"), a string")
    summary = getattr(module, "DESCRIPTION", None) or next(iter((module.__doc__ or "").strip().splitlines()), "")
    load, targets, gathered = _plugged(name, read, origin, keys, path_is)
    return name, Dataset(f"{summary} ({origin})".lstrip(), load, bool(path_is), origin, path_is, keys, targets,
                         gathered)


def _plugged(name: str, read: Callable, origin: str, keys: type | None, path_is: str) -> tuple[Callable, ...]:
    """A plugin's `load` as the table's: what it gives back checked as an npz's arrays are, its errors said as
    data errors (exit 3) at the line of its file that raised them, what it prints sent to stderr. Two readings
    of it here: class labels (the image and feature-vector models: `load`) and numbers to predict (a
    regression's: `targets(cfg, positive)`); and what both start from (`gathered`), which the text readings
    (dlkit.data.text, dlkit.data.pairs) start from too."""
    import contextlib
    import sys
    import types

    where = f"dataset {name!r} ({origin})"

    def gather(cfg, other: tuple[str, ...], reader: str) -> tuple[dict, str, str]:
        """What the plugin's load gives back, checked; where it was read from; and how a message names the
        dataset. `other`: the names the reading at hand (`reader`'s) does not take."""
        if keys is not None and any(not hasattr(cfg, k) for k in keys.model_fields):  # data.domain_b's section
            cfg = types.SimpleNamespace(**{**keys().model_dump(), **dict(cfg)})
        path = getattr(cfg, "path", None)
        if path_is and path and not Path(path).exists():  # before its code meets it (h5py's message is long)
            raise DataError(f"data.path {path} does not exist ({where} reads {path_is})")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                got = read(cfg)
        except (DataError, OutOfMemoryError, UsageError, KeyboardInterrupt):
            raise
        except MemoryError:
            raise OutOfMemoryError(f"{where} ran out of memory reading its data; read less of it (data.limit, "
                                   "which its load is given)") from None
        except Exception as e:  # noqa: BLE001 - the plugin's own error, said as its own with its line
            said = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str) \
                else first_line(e)  # a KeyError's str() quotes its message
            frame = frame_in(e, read)
            at = f" ({frame.filename}:{frame.lineno})" if frame else ""
            raise DataError(f"{where} could not read its data: {type(e).__name__}: {said}{at}") from None
        try:
            found = dict(got)
        except (TypeError, ValueError):
            raise DataError(f"{where}: its load gave back {type(got).__name__}; it gives back a dict of arrays "
                            f"({', '.join(RETURNED)})") from None
        unknown = [k for k in found if k not in RETURNED]
        if unknown or found.get("x_train") is None:
            raise DataError(f"{where}: its load gave back " + (f"{', '.join(map(repr, unknown))}, which dlkit does "
                            "not read" if unknown else "no x_train") + f"; it gives back {', '.join(RETURNED)} "
                            "(the validation split is carved from x_train)")
        for key in other:
            if found.get(key) is not None:
                raise DataError(f"{where}: its load gave back {key}{UNREAD.get(key, '')}; {reader} reads this dataset "
                                "here, and does not read it")
        given = {k for k, v in found.items() if v is not None}
        if "y_test" in given and "x_test" not in given or "x_test" in given and ("y_test" in given) != ("y_train" in given):
            raise DataError(f"{where}: its load gave back {', '.join(sorted(given))}: x_test is labelled (y_test) "
                            "exactly when x_train is (y_train), and y_test only beside x_test")
        return found, f"{path or name} (dataset {name!r})", where

    def names(found: dict, key: str) -> list[str]:
        given = found.pop(key, None)
        return [] if given is None else strings(given, key, where)

    def load(cfg) -> Arrays:
        found, read_from, _ = gather(cfg, ("target_names",), "a model of class labels")
        classes = names(found, "class_names")
        arrays = _arrays(found, classes, read_from, PLUGIN_NAMES)
        if classes and found.get("y_train") is not None:
            named_classes(classes, [arrays.y_train, arrays.y_test], where)
        return _of_shape(arrays, where)

    def targets(cfg, positive: bool = False) -> Arrays:
        found, read_from, _ = gather(cfg, ("class_names",), "a regression")
        return _target_arrays(found, read_from, positive, names(found, "target_names") or None)

    return load, targets, gather


def named_classes(classes: list[str], labels, where: str) -> None:
    """A DataError where a label (of any of `labels`, None skipped) is past the classes a plugin named."""
    top = max((int(y.max(initial=0)) for y in labels if y is not None), default=0)
    if top >= len(classes):
        raise DataError(f"{where}: a label is {top}, but class_names names {len(classes)} classes")


def named(v: str, own) -> str:
    """A data.dataset value checked: one of the section's `own` names, or a dataset from outside dlkit (an
    installed package's, loaded now: its ValueError, where it does not load, is the key's)."""
    from dlkit.config import check_name

    if v not in own:
        find(v)
    return check_name(v, [*own, *plugin_names()], "dataset")


def strings(given, key: str, where: str) -> list[str]:
    """A plugin's list of strings (numpy's too; bytes, an HDF5 file's, decoded as UTF-8), or a DataError."""
    if isinstance(given, np.ndarray):
        given = given.tolist()
    if isinstance(given, (list, tuple)):
        try:
            given = [c.decode() if isinstance(c, bytes) else c for c in given]
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: its {key} holds bytes that are not UTF-8 ({e})") from None
        if all(isinstance(c, str) for c in given):
            return given
    raise DataError(f"{where}: its {key} is not a list of strings")


@functools.cache
def installed() -> dict:
    """The datasets installed packages declare (entry points of the group ENTRY_POINTS), by name, not loaded:
    a package's code runs only when a recipe names one of its datasets."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS) if ep.name not in RESERVED}


def plugin(name: str) -> Dataset | None:
    """The table entry of a dataset from outside dlkit of that name (an installed package's loaded now), or
    None: one of dlkit's (any task's), or none at all."""
    if name in RESERVED or name.startswith("tfds:"):
        return None
    entry = find(name)
    return entry if entry is not None and entry.gathered is not None else None


def plugin_names() -> list[str]:
    """The datasets from outside dlkit a recipe may name: the plugins' registered, and installed packages'."""
    return [n for n in names() if n not in SHIPPED]


def plugin_paths() -> dict[str, str]:
    """The datasets from outside dlkit that read data.path, each with what the path should be."""
    return {name: d.path_is for name, d in DATASETS.items() if d.path_is}


def names() -> list[str]:
    """Every dataset name a recipe may give without a `plugins` key: dlkit's, those registered, installed ones."""
    return list(DATASETS) + [n for n in installed() if n not in DATASETS]


def find(name: str) -> Dataset | None:
    """The dataset of that name: in the table (dlkit's, a recipe's plugins'), else an installed package's,
    loaded and registered now; None where there is none. An installed one that does not load raises
    ValueError saying why."""
    if name in DATASETS or name.startswith("tfds:"):
        return dataset(name)
    ep = installed().get(name)
    if ep is None:
        return None
    module, origin, record = entry_point(ep, ENTRY_POINTS)
    declared = of_module(module, origin)
    if declared is None or declared[0] != name:
        raise ValueError(f"{origin} declares " + (f"dataset {declared[0]!r}, not {name!r}" if declared
                                                   else f"no dataset: a dataset plugin declares {PLUGIN_FACE}"))
    register(*declared)
    FROM_PACKAGES[name] = {"dataset": name, **record}
    return declared[1]
