"""The run directory's learning curves: one panel per measure with its training, validation and test lines
together, four panels to a row; and every figure written in one layout pass, pixel for pixel as matplotlib's own
tight_layout-then-savefig writes it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dlkit import plots

# the columns a VAE's history.csv has (tests/test_vae.py trains one): measures on three splits, one rate
VAE = ["epoch", "elbo", "kl", "loss", "reconstruction", "val_elbo", "val_kl", "val_loss", "val_reconstruction",
       "test_elbo", "test_kl", "test_loss", "test_reconstruction", "learning_rate"]


def test_a_measure_is_one_panel_whatever_the_splits():
    panels = plots.curve_panels(VAE)
    assert [title for title, _ in panels] == ["elbo", "kl", "loss", "reconstruction", "learning rate (end of epoch)"]
    assert dict(panels)["loss"] == [("loss", "train", "C0"), ("val_loss", "validation", "C1"),
                                    ("test_loss", "test", "C2")]
    assert dict(panels)["learning rate (end of epoch)"] == [("learning_rate", "learning_rate", "C0")]


def test_a_gan_keeps_its_rates_together_and_a_history_without_rates_has_no_rate_panel():
    gan = plots.curve_panels(["epoch", "d_loss", "g_loss", "generator_learning_rate", "discriminator_learning_rate"])
    assert [t for t, _ in gan] == ["d_loss", "g_loss", "learning rate (end of epoch)"]
    assert [label for _, label, _ in gan[-1][1]] == ["generator_learning_rate", "discriminator_learning_rate"]
    # a measure logged on validation only is still drawn, as validation
    assert plots.curve_panels(["epoch", "loss", "val_bleu"]) == [("loss", [("loss", "train", "C0")]),
                                                                ("bleu", [("val_bleu", "validation", "C1")])]


def test_the_figure_wraps_at_four_panels(tmp_path):
    rows = [{c: (e if c == "epoch" else 1.0 / e + i) for i, c in enumerate(VAE)} for e in range(1, 4)]
    plots.learning_curves(rows, tmp_path / "curves.png")
    # five panels: two rows of four columns at 4.5 x 3.4 inches, 100 dpi
    assert Image.open(tmp_path / "curves.png").size == (1800, 680)


def test_one_layout_pass_writes_what_matplotlib_writes(tmp_path):
    plt = plots._pyplot()

    def figure():
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(np.arange(10), np.arange(10) ** 2, label="a long label that the layout must make room for")
        ax.set_ylabel("squares")
        ax.legend()
        return fig

    plots._save(figure(), tmp_path / "ours.png")
    fig = figure()
    fig.tight_layout()
    fig.savefig(tmp_path / "matplotlib.png", dpi=100)
    plt.close(fig)
    ours, theirs = (np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("ours", "matplotlib"))
    assert ours.shape == theirs.shape == (300, 400, 4) and (ours == theirs).all()


def test_a_confusion_matrix_of_many_classes_stays_a_readable_size(tmp_path):
    # 1,001 classes (an npz labelled 3 and 1000) drew a 502-inch square, and the machine ran out of memory
    n = 1001
    plots.confusion_matrix(np.eye(n, dtype=np.int64), [str(i) for i in range(n)], tmp_path / "cm.png", "many")
    assert Image.open(tmp_path / "cm.png").size == (2200, 2200)
    plots.confusion_matrix(np.eye(3, dtype=np.int64), ["a", "b", "c"], tmp_path / "cm3.png", "few")
    assert Image.open(tmp_path / "cm3.png").size == (400, 400)


def test_codes_of_many_classes_are_coloured_by_index_without_a_legend(tmp_path, monkeypatch):
    # tab20 repeated its colours past 20 classes, under a legend of every name
    drawn, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (drawn.append(fig), save(fig, path)))
    points = np.random.default_rng(0).normal(size=(200, 2))
    plots.scatter(points, np.arange(200) % 50, [str(i) for i in range(50)], tmp_path / "many.png", "codes")
    plots.scatter(points, np.arange(200) % 5, [str(i) for i in range(5)], tmp_path / "few.png", "codes")
    many, few = drawn
    assert many.axes[0].get_legend() is None and many.axes[1].get_ylabel() == "class index"
    assert len(few.axes) == 1 and len(few.axes[0].get_legend().get_texts()) == 5



def test_a_picture_of_more_than_four_channels_shows_the_first_three(tmp_path):
    from dlkit import images

    # five-band images (an npz's) trained, then Pillow refused their sample grid: a traceback
    pixels = np.zeros((4, 4, 5), np.uint8)
    pixels[..., 1] = 255
    images.save_png(pixels, tmp_path / "p.png")
    shown = Image.open(tmp_path / "p.png")
    assert shown.mode == "RGB" and shown.getpixel((0, 0)) == (0, 255, 0)


def test_a_picture_stopped_as_it_is_written_leaves_the_one_before_and_no_part(tmp_path, monkeypatch):
    """Ctrl-C (or a full disk) while a figure, a grid or progress.gif was written: the GIF was written in place,
    a cut-off file where the last one was, and a grid left its temporary `.p.png.tmp.png` in the run directory.
    Each goes through files.replace_atomic now."""
    import matplotlib.figure

    from dlkit import images

    frame = tmp_path / "frame.png"
    images.save_png(np.zeros((4, 4, 1), np.uint8), frame)
    writers = {
        "curves.png": lambda: plots.learning_curves([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}],
                                                    tmp_path / "curves.png"),
        "grid.png": lambda: images.save_png(np.full((4, 4, 3), 99, np.uint8), tmp_path / "grid.png"),
        "progress.gif": lambda: images.save_gif([frame, frame], tmp_path / "progress.gif"),
    }
    for write in writers.values():
        write()
    before = {name: (tmp_path / name).read_bytes() for name in writers}

    def cut_off(self, target, *args, **kwargs):  # a part written, then the interrupt
        with open(target, "wb") as f:
            f.write(b"\x89PNG\r\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", cut_off)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", cut_off)
    for name, write in writers.items():
        try:
            write()
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError(f"{name}: the interrupt did not reach the writer")
        assert (tmp_path / name).read_bytes() == before[name], name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*writers, "frame.png"])
