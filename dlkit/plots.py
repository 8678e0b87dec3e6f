"""Pictures in the run directory, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlkit.files import replace_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# the splits a history's columns name, by prefix: each measure's panel draws them together, in these colours
SPLITS = (("", "train", "C0"), ("val_", "validation", "C1"), ("test_", "test", "C2"))


def curve_panels(columns: list[str]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The panels of a history's learning curves: one per measure, in the order the columns first name it,
    holding that measure's lines on each split present ((column, label, colour): `loss`, `val_loss` and
    `test_loss` together), then one of the learning rates (the columns ending in `learning_rate`), if any."""
    rates = [c for c in columns if c.endswith("learning_rate")]
    names: list[str] = []
    for column in columns:
        if column != "epoch" and column not in rates:
            prefix = next(p for p, _, _ in reversed(SPLITS) if column.startswith(p))  # "" is the last, and fits all
            if column[len(prefix):] not in names:
                names.append(column[len(prefix):])
    panels = [(name, [(f"{prefix}{name}", label, colour) for prefix, label, colour in SPLITS
                      if f"{prefix}{name}" in columns]) for name in names]
    if rates:
        panels.append(("learning rate (end of epoch)", [(r, r, f"C{i % 10}") for i, r in enumerate(rates)]))
    return panels


def learning_curves(rows: list[dict], path: Path) -> None:
    """One panel per measure, its training, validation and test lines together, against epochs; four panels
    to a row."""
    if not rows:
        return
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    panels = curve_panels(list(dict.fromkeys(column for row in rows for column in row)))
    cols = min(4, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.4 * nrows), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, (title, lines) in zip(axes.flat, panels):
        for column, label, colour in lines:
            ax.plot(epochs, [r.get(column, np.nan) for r in rows], "o-", label=label, color=colour)
        if len(lines) > 1 or lines and lines[0][1] in ("validation", "test"):  # a lone training line needs none
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Lay the figure out (tight) and write it. `tight_layout` leaves a placeholder layout engine on the figure,
    and `savefig` draws a figure that has any engine once more before it renders it: the engine is dropped
    once the layout is done, which spares that draw (a third of a figure's time) and changes no pixel."""
    fig.tight_layout()
    fig.set_layout_engine(None)
    try:  # whole or not at all: an interrupt leaves no part
        replace_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=100))
    finally:
        _pyplot().close(fig)


def confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> None:
    plt = _pyplot()
    n = len(class_names)
    # half an inch a class up to 40 of them, then a 22-inch square (2,200 px): 1,001 classes drew a 502-inch
    # square, 50,200 px a side, and the machine ran out of memory; beyond 40 classes every k-th is named
    size = max(4.0, 0.5 * min(n, 40) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(0, n, -(-n // 40))
    ax.set_xticks(ticks, [class_names[i] for i in ticks], rotation=45, ha="right")
    ax.set_yticks(ticks, [class_names[i] for i in ticks])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        top = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > top / 2 else "black")
    _save(fig, path)


def scatter(points: np.ndarray, labels: np.ndarray | None, class_names: list[str], path: Path, title: str,
            axis: str = "dimension") -> None:
    """2-D points (codes), coloured by class when there are labels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.5)
    elif len(class_names) > 20:  # a legend of that many names outgrows the picture: a colour scale of indices
        shown = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="viridis", s=3, alpha=0.6)
        fig.colorbar(shown, ax=ax, label="class index")
    else:
        cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
        for k, name in enumerate(class_names):
            chosen = labels == k
            if chosen.any():
                ax.scatter(points[chosen, 0], points[chosen, 1], s=3, alpha=0.6, color=cmap(k % cmap.N), label=name)
        ax.legend(markerscale=4, fontsize=7, loc="best")
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def forecast(times, starts, actual, predicted, naive, naive_name: str, path: Path, title: str) -> None:
    """Actual values against the model's forecast (and a naive one) 1 and `horizon` steps ahead, over the
    first 500 windows: window i's h-step forecast is drawn at its target's time, times[starts[i] + h]."""
    plt = _pyplot()
    n = min(len(starts), 500)
    steps = sorted({0, actual.shape[1] - 1})
    fig, axes = plt.subplots(len(steps), 1, figsize=(11, 3.2 * len(steps)), squeeze=False)
    for ax, h in zip(axes[:, 0], steps):
        at = times[starts[:n] + h]
        ax.plot(at, actual[:n, h, 0], label="actual", color="black", linewidth=1)
        ax.plot(at, predicted[:n, h, 0], label="model", linewidth=1)
        ax.plot(at, naive[:n, h, 0], label=naive_name, linewidth=0.8, alpha=0.7)
        ax.set_title(f"{title}: {h + 1} step{'s' if h else ''} ahead")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
    _save(fig, path)


def gradient_by_step(curves: dict, path: Path, title: str) -> None:
    """Gradient norm at each input step of the last step's loss, one curve per model, on a log scale:
    steps back from the end on the x axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, norms in curves.items():
        norms = np.asarray(norms)
        ax.semilogy(np.arange(len(norms))[::-1], np.maximum(norms, 1e-30), label=name)
    ax.set_xlabel("steps back from the predicted token")
    ax.set_ylabel("gradient norm")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _save(fig, path)


def attention_maps(maps: list[tuple[list[str], list[str], np.ndarray]], path: Path, title: str) -> None:
    """Attention heat maps, one panel per sentence: written tokens (rows) against source tokens (columns)."""
    plt = _pyplot()
    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    for ax, (source, target, weights) in zip(axes[0], maps):
        ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(source)), source, rotation=90, fontsize=8)
        ax.set_yticks(range(len(target)), target, fontsize=8)
        ax.set_xlabel("source")
    axes[0][0].set_ylabel("translation")
    fig.suptitle(title)
    _save(fig, path)


def bleu_by_length(curves: dict, path: Path, title: str) -> None:
    """BLEU by source-length bucket, one line per model: {name: {bucket: bleu}}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, buckets in curves.items():
        ax.plot(list(buckets), list(buckets.values()), marker="o", label=name)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("corpus BLEU")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, names: list[str], path: Path, title: str,
                        log: bool = False) -> None:
    """A regression's predictions against the actual values, one panel per target (the first four), with the
    line where they would be equal; on log axes with `log` (positive values, a log transform's)."""
    plt = _pyplot()
    k = min(len(names), 4)
    fig, axes = plt.subplots(1, k, figsize=(5 * k, 4.8), squeeze=False)
    for j, ax in enumerate(axes[0]):
        a, p = actual[:, j], predicted[:, j]
        lo, hi = float(min(a.min(), p.min())), float(max(a.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="predicted = actual")
        ax.scatter(a, p, s=8, alpha=0.6)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"actual {names[j]}")
        ax.set_ylabel(f"predicted {names[j]}")
        ax.set_title(title if k == 1 else f"{title}: {names[j]}")
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    _save(fig, path)


def search(trials: list[dict], space: dict, monitor: str, direction: str, path: Path, title: str) -> None:
    """A search's trials: the monitor against the trial's number with the best so far, then one panel a key
    of the space, the monitor against the key's value (a log axis for a log range, a choice at its place in
    the list). The best trial is a star; a trial without a value (failed, diverged) a cross on the bottom
    edge of the first panel."""
    plt = _pyplot()
    import json

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    judged = [t for t in trials if t.get("value") is not None]
    best = (min if direction == "min" else max)(judged, key=lambda t: t["value"]) if judged else None
    keys = list(space)
    cols = min(4, 1 + len(keys))
    nrows = -(-(1 + len(keys)) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.4 * nrows), squeeze=False)
    ax = axes.flat[0]
    ax.plot([t["number"] for t in judged], [t["value"] for t in judged], "o", color="C0", label="trial")
    running, line = None, []
    for t in sorted(judged, key=lambda t: t["number"]):
        if running is None or (t["value"] < running if direction == "min" else t["value"] > running):
            running = t["value"]
        line.append((t["number"], running))
    if line:
        ax.step(*zip(*line), where="post", color="C1", label="best so far")
    failed = [t["number"] for t in trials if t.get("value") is None]
    if failed:
        ax.plot(failed, [0] * len(failed), "x", color="C3", label="no value", clip_on=False,
                transform=ax.get_xaxis_transform())
    ax.set_xlabel("trial")
    ax.set_ylabel(monitor)
    ax.set_title(f"{monitor} by trial")
    ax.legend()
    for ax, key in zip(axes.flat[1:], keys):
        r = space[key]
        if r.get("choices") is not None:
            texts = [json.dumps(c) for c in r["choices"]]
            place = {json.dumps(c, sort_keys=True): i for i, c in enumerate(r["choices"])}
            x = [place[json.dumps(t["params"][key], sort_keys=True)] for t in judged]
            ax.set_xticks(range(len(texts)), [s if len(s) <= 18 else s[:17] + "…" for s in texts], rotation=20)
        else:
            x = [t["params"][key] for t in judged]
            if r.get("log"):
                ax.set_xscale("log")
        ax.plot(x, [t["value"] for t in judged], "o", color="C0")
        if best is not None:
            ax.plot(x[judged.index(best)], best["value"], "*", color="C1", markersize=14)
        ax.set_xlabel(key)
        ax.set_ylabel(monitor)
    values = [t["value"] for t in judged]
    spread = values and min(values) > 0 and max(values) > 5 * min(values)  # a few bad trials would flatten the rest
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if spread:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
    for ax in axes.flat[1 + len(keys):]:
        ax.set_visible(False)
    if best is not None:
        axes.flat[0].plot(best["number"], best["value"], "*", color="C1", markersize=14)
    fig.suptitle(title)
    _save(fig, path)
