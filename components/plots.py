"""Figures the project writes as PNG files (matplotlib's non-interactive Agg backend)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np

from components.contracts import LayerResponses, RunHistory
from components.model_specs import get_spec

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first


def plot_gradient_profiles(profiles: Mapping[str, Mapping[str, Sequence[float]]],
                           output: pathlib.Path, title: str) -> pathlib.Path:
    """Relative gradient norm (log scale) against main-path convolution index, one panel per
    stage of training (the keys of each model's profile, e.g. "init" and "trained"), one line
    per model: residual solid, plain dashed, twins sharing a colour."""
    stages = list(next(iter(profiles.values())))
    depths = sorted({_depth(name) for name in profiles})
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(depths)}
    figure, panels = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4.5), sharey=True,
                                  squeeze=False)
    for axes, stage in zip(panels[0], stages):
        for name, profile in profiles.items():
            axes.plot(range(1, len(profile[stage]) + 1), profile[stage],
                      "-" if "resnet" in name else "--", marker=".", label=name,
                      color=colours[_depth(name)])
        axes.set_yscale("log")
        axes.set_title(stage)
        axes.set_xlabel("convolution layer (input → output)")
        axes.grid(True, which="both", alpha=0.3)
    panels[0][0].set_ylabel("‖∂loss/∂W‖ / ‖W‖")
    panels[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1),
                         frameon=False)
    figure.suptitle(title)
    return _save(figure, output)


def _depth(name: str) -> int:
    return get_spec(name).depth


def plot_response_stds(responses: Mapping[tuple[str, int], LayerResponses],
                       output: pathlib.Path) -> pathlib.Path:
    """The paper's Fig. 7: std of each 3×3 layer's response, in layer order (left) and sorted
    by magnitude (right); one line per model (mean over its seeds), residual solid, plain
    dashed, depth by colour."""
    by_model: dict[str, list[np.ndarray]] = {}
    for (model, _), layers in sorted(responses.items()):
        by_model.setdefault(model, []).append(np.asarray(layers.std))
    depths = sorted({_depth(name) for name in by_model})
    colours = {d: plt.get_cmap("viridis")(i / max(len(depths) - 1, 1) * 0.85)
               for i, d in enumerate(depths)}
    figure, (original, ordered) = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    for name, runs in by_model.items():
        mean = np.mean(runs, axis=0)
        style = {"linestyle": "-" if "resnet" in name else "--", "color": colours[_depth(name)],
                 "label": name if len(runs) == 1 else f"{name} (mean of {len(runs)} seeds)"}
        original.plot(range(1, len(mean) + 1), mean, **style)
        ordered.plot(range(1, len(mean) + 1), np.sort(mean)[::-1], **style)
    for axes, label in ((original, "layer index (original)"), (ordered, "layer index (sorted by magnitude)")):
        axes.set_xlabel(label)
        axes.grid(True, alpha=0.3)
    original.set_ylabel("std of the layer response")
    ordered.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    figure.suptitle("Layer responses of the trained nets (3×3 layers, after BN, before ReLU/addition)")
    return _save(figure, output)


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
            axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0, -0.16), ncol=1,
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
