"""Figures the project writes as PNG files (matplotlib's non-interactive Agg backend)."""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

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


def plot_training_curves(histories: Sequence[Mapping], output: pathlib.Path,
                         title: str = "Residual vs plain: training curves") -> pathlib.Path:
    """Plots training loss and validation accuracy per epoch for every model on shared axes.

    `histories` are ``history.json`` dicts (keys ``model``, ``family``, ``depth``, ``residual``
    and ``epochs``, a list of dicts with ``epoch``, ``train_loss`` and ``val_accuracy``). One line
    per model: with several histories (seeds) of a model, the mean over the seeds that reached
    each epoch. Residual models are solid, plain ones dashed, and twins share a colour.
    """
    by_model: dict[str, list[Mapping]] = {}
    for history in histories:
        by_model.setdefault(history["model"], []).append(history)
    pairs = sorted({(h["family"], h["depth"]) for h in histories})
    colours = {pair: plt.get_cmap("tab10")(i % 10) for i, pair in enumerate(pairs)}
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    for name, runs in sorted(by_model.items()):
        first = runs[0]
        style = {"linestyle": "-" if first["residual"] else "--", "marker": ".",
                 "color": colours[(first["family"], first["depth"])],
                 "label": name if len(runs) == 1 else f"{name} (mean of {len(runs)} seeds)"}
        for axes, key in ((loss_axes, "train_loss"), (accuracy_axes, "val_accuracy")):
            axes.plot(*_mean_per_epoch(runs, key), **style)
    for axes, label in ((loss_axes, "training loss"), (accuracy_axes, "validation accuracy")):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    accuracy_axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def _mean_per_epoch(runs: Sequence[Mapping], key: str) -> tuple[list[int], list[float]]:
    """Epoch numbers and, for each, the mean of `key` over the runs that reached that epoch."""
    values: dict[int, list[float]] = {}
    for run in runs:
        for entry in run["epochs"]:
            values.setdefault(int(entry["epoch"]), []).append(float(entry[key]))
    epochs = sorted(values)
    return epochs, [sum(values[e]) / len(values[e]) for e in epochs]
