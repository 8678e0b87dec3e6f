"""Image grids and montages (numpy + Pillow, which matplotlib already depends on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlkit.files import replace_atomic


def to_uint8(images: np.ndarray, scale: tuple) -> np.ndarray:
    """Undo the pipeline's scaling (x * a + b) back to 0..255 pixels."""
    a, b = (np.asarray(v, np.float32) for v in scale)
    return np.clip(np.rint((images - b) / a), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, rows: int, pad: int = 2, min_side: int = 64) -> np.ndarray:
    """Tile N HxWxC uint8 images into `rows` rows; small images are enlarged (nearest) to be seen."""
    n, h, w, c = images.shape
    cols = -(-n // rows)
    zoom = max(1, min_side // max(h, w)) if max(h, w) < min_side else 1
    if zoom > 1:
        images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
        h, w = h * zoom, w * zoom
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = img
    return out


BAND = 16  # columns of a picture that wraps: bands, and a strip of interpolation steps


def strip_rows(n: int) -> int:
    """Rows of a strip of n steps (an interpolation), read left to right, at most BAND steps a row."""
    return max(1, -(-n // BAND))


def bands(rows: list, width: int = BAND) -> np.ndarray:
    """Aligned rows of N uint8 images each (inputs, and what a model made of each) as one picture, wrapped
    into bands of `width` columns: each band holds the rows' next `width` images one above the other, so
    an image stays above its counterparts however large N is. The last band's empty cells are white."""
    n = len(rows[0])
    cols = min(width, n)
    padded = [np.concatenate([r, np.full((-n % cols, *r.shape[1:]), 255, np.uint8)]) for r in rows]
    tiles = [r[i:i + cols] for i in range(0, len(padded[0]), cols) for r in padded]
    return grid(np.concatenate(tiles), len(tiles))


def save_png(array: np.ndarray, path: Path) -> None:
    """An (H, W, C) uint8 picture: gray (1 channel), gray and alpha (2), RGB (3), RGBA (4); of more channels
    (a multispectral image's), the first three are shown as RGB."""
    from PIL import Image

    channels = array.shape[-1]
    img = Image.fromarray(array[..., 0] if channels == 1 else array[..., :3] if channels > 4 else array)
    replace_atomic(Path(path), lambda tmp: img.save(tmp, "PNG"))


def save_gif(frames: list[Path], path: Path, ms_per_frame: int = 400) -> None:
    """An animated montage of the epoch grids, holding the last frame a little longer."""
    from PIL import Image

    if not frames:
        return
    images = [Image.open(f).convert("RGB") for f in frames]
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 4]
    replace_atomic(Path(path), lambda tmp: images[0].save(tmp, "GIF", save_all=True, append_images=images[1:],
                                                         duration=durations, loop=0))


def mean_pairwise_distance(x: np.ndarray, max_items: int = 256) -> float:
    """Mean Euclidean distance between distinct pairs: a cheap diversity statistic for mode collapse."""
    x = x[:max_items].reshape(min(len(x), max_items), -1).astype(np.float64)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    n = len(x)
    return float(np.sqrt(d2)[~np.eye(n, dtype=bool)].mean()) if n > 1 else 0.0
