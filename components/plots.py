"""Figures the project writes as PNG files (matplotlib's non-interactive Agg backend)."""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

from components.contracts import RunHistory

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_gradient_profiles(profiles: Mapping[str, Sequence[float]], output: pathlib.Path,
                           title: str) -> pathlib.Path:
    """Plots one line per model: gradient norm (log scale) against convolution depth."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, norms in profiles.items():
        style = "-" if "resnet" in name else "--"
        axes.plot(range(1, len(norms) + 1), norms, style, marker=".", label=name)
    axes.set_yscale("log")
    axes.set_xlabel("convolution layer (input → output)")
    axes.set_ylabel("‖∂loss/∂kernel‖₂")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def plot_error_curves(histories: Sequence[RunHistory], output: pathlib.Path) -> pathlib.Path:
    """The paper's Fig. 6 view: error (%) against epochs, one panel for plain nets and one for
    residual nets; training error (inference mode, no augmentation) thin and dashed, the
    per-epoch eval error bold; depth by colour; the mean over seeds that reached each epoch."""
    groups = _by_model(histories)
    depths = sorted({h.depth for h in histories})
    colours = {depth: plt.get_cmap("viridis")(i / max(len(depths) - 1, 1) * 0.85)
               for i, depth in enumerate(depths)}
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    for axes, residual in zip(panels, (False, True)):
        for name, runs in groups.items():
            if runs[0].residual != residual:
                continue
            colour, label = colours[runs[0].depth], _label(name, runs)
            axes.plot(*_mean_curve(runs, "clean_train_accuracy", error=True), "--",
                      color=colour, linewidth=1, label=f"{label}, train")
            axes.plot(*_mean_curve(runs, "val_accuracy", error=True), "-", color=colour,
                      linewidth=2.2, label=f"{label}, {runs[0].val_split}")
        axes.set_title("residual nets" if residual else "plain nets")
        _epoch_axis(axes, "error (%)")
        if axes.lines:
            axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0, -0.16), ncol=2,
                        frameon=False)
    figure.suptitle("Error during training (dashed: training, bold: eval)")
    return _save(figure, output)


def plot_loss_curves(histories: Sequence[RunHistory], output: pathlib.Path) -> pathlib.Path:
    """Training loss (Keras' running mean, augmented) and eval loss per epoch, every model on
    shared axes: residual solid, plain dashed, twins sharing a colour; mean over seeds."""
    groups = _by_model(histories)
    pairs = sorted({(h.family, h.depth) for h in histories})
    colours = {pair: plt.get_cmap("tab10")(i % 10) for i, pair in enumerate(pairs)}
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True)
    for name, runs in groups.items():
        style = {"linestyle": "-" if runs[0].residual else "--", "marker": ".",
                 "color": colours[(runs[0].family, runs[0].depth)], "label": _label(name, runs)}
        for axes, key in zip(panels, ("train_loss", "val_loss")):
            axes.plot(*_mean_curve(runs, key), **style)
    for axes, label in zip(panels, ("training loss (cross-entropy)", "eval loss (cross-entropy)")):
        _epoch_axis(axes, label)
    panels[1].set_yscale("log")  # an early eval loss of a plain net can be 100x the rest
    panels[1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    figure.suptitle("Loss during training")
    return _save(figure, output)


def _by_model(histories: Sequence[RunHistory]) -> dict[str, list[RunHistory]]:
    groups: dict[str, list[RunHistory]] = {}
    for history in sorted(histories, key=lambda h: (h.family, h.depth, h.residual, h.seed)):
        groups.setdefault(history.model, []).append(history)
    return groups


def _label(name: str, runs: Sequence[RunHistory]) -> str:
    return name if len(runs) == 1 else f"{name} (mean of {len(runs)} seeds)"


def _epoch_axis(axes, ylabel: str) -> None:
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)


def _save(figure, output: pathlib.Path) -> pathlib.Path:
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return output


def _mean_curve(runs: Sequence[RunHistory], key: str, error: bool = False
                ) -> tuple[list[int], list[float]]:
    """Epochs where `key` was measured and, for each, its mean over the runs that measured it;
    as an error in % (100 * (1 - accuracy)) when `error`."""
    values: dict[int, list[float]] = {}
    for run in runs:
        for entry in run.epochs:
            value = getattr(entry, key)
            if value is not None:
                values.setdefault(entry.epoch, []).append(value)
    epochs = sorted(values)
    means = [sum(values[e]) / len(values[e]) for e in epochs]
    return epochs, [100 * (1 - m) for m in means] if error else means
