"""Figures the project writes as PNG files, the report's with an SVG beside each (matplotlib's
non-interactive Agg backend). In an SVG, each model's line is the element with id
``<panel>-<model>`` (the panel: the measure, e.g. ``val_accuracy``, or ``layers`` / ``sorted``).

One line style means one thing in every report figure (``model_styles``): colour is the depth
(a residual net and its plain twin share it), solid is residual, dashed is plain, and dotted
grey verticals mark learning-rate drops; training and eval numbers are in separate panels.
Curves over several seeds are the mean, with a band from the lowest to the highest seed.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping, Sequence

import matplotlib
import matplotlib.ticker
import matplotlib.transforms
import numpy as np

from resnet_ablation.contracts import LayerResponses, RunHistory
from resnet_ablation.model_specs import get_spec

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


LINE_WIDTH = 2.0
BAND_ALPHA = 0.2
DROP_STYLE = {"color": "0.45", "linestyle": ":", "linewidth": 1.3}
BAND_TEXT = "line: mean over seeds; band: lowest to highest seed (min–max)"


def model_styles(models: Iterable[str]) -> dict[str, dict]:
    """Matplotlib line keywords per model name, the same in every figure of one report: a
    colour per (family, depth), so twins share it; solid for residual nets, dashed for plain."""
    specs = {name: get_spec(name) for name in models}
    pairs = sorted({(spec.family, spec.depth) for spec in specs.values()})
    colours = {pair: plt.get_cmap("tab10")(i % 10) for i, pair in enumerate(pairs)}
    return {name: {"color": colours[(spec.family, spec.depth)], "linewidth": LINE_WIDTH,
                   "linestyle": "-" if spec.residual else "--"} for name, spec in specs.items()}


def learning_rate_drops(histories: Sequence[RunHistory]) -> list[int]:
    """Epochs after which a run with a ``step`` schedule saw its learning rate fall to half or
    less: from the histories' per-epoch rates, else, when they show none, the schedule's
    ``step_decay_epochs`` within the runs' epochs. A cosine or constant schedule has no drops
    (a short cosine decay halves from one epoch to the next near its end: not a drop)."""
    stepped = [h for h in histories if h.training.get("schedule") == "step"]
    drops = {previous.epoch for h in stepped for previous, entry in zip(h.epochs, h.epochs[1:])
             if entry.learning_rate <= previous.learning_rate / 2}
    if drops or not histories:
        return sorted(drops)
    last = max(len(h.epochs) for h in histories)
    return sorted({int(e) for h in histories if h.training.get("schedule") == "step"
                   for e in h.training.get("step_decay_epochs") or () if 0 < int(e) < last})


def plot_response_stds(responses: Mapping[tuple[str, int], LayerResponses],
                       output: pathlib.Path, styles: Mapping[str, dict] | None = None,
                       svg: bool = True) -> pathlib.Path:
    """The paper's Fig. 7: std of each 3×3 layer's response, in layer order (left) and sorted
    by magnitude (right); per model the mean over its seeds with a min–max band. The y axis is
    logarithmic when the values span more than a decade (one model dominates). Returns the
    PNG's path (an SVG beside it with `svg`)."""
    by_model: dict[str, list[np.ndarray]] = {}
    for (model, _), layers in sorted(responses.items(), key=lambda item: _order(item[0][0])):
        by_model.setdefault(model, []).append(np.asarray(layers.std, dtype=float))
    styles = styles or model_styles(by_model)
    figure, (original, ordered) = plt.subplots(1, 2, figsize=(10, 4.3), sharey=True)
    for name, runs in by_model.items():
        stacked = np.stack(runs)
        layers = np.arange(1, stacked.shape[1] + 1)
        for axes, values, panel in ((original, stacked, "layers"),
                                    (ordered, -np.sort(-stacked, axis=1), "sorted")):
            _band(axes, layers, values, styles[name], _label(name, runs), f"{panel}-{name}")
    if spans_decades(np.concatenate([np.ravel(runs) for runs in by_model.values()])):
        original.set_yscale("log")
    for axes, label in ((original, "layer (input → output)"),
                        (ordered, "layer, sorted by response std")):
        axes.set_xlabel(label)
        axes.grid(True, which="both", alpha=0.3)
    original.set_ylabel("std of the layer response" + (" (log)" if original.get_yscale() == "log"
                                                        else ""))
    _legend(figure, ordered.get_legend_handles_labels())
    figure.suptitle("Layer responses of the trained nets (3×3 layers, after BN, before "
                    f"ReLU/addition)\n{BAND_TEXT}", fontsize="medium")
    return _save(figure, output, svg)


def plot_error_curves(histories: Sequence[RunHistory], output: pathlib.Path,
                      styles: Mapping[str, dict] | None = None, svg: bool = True) -> pathlib.Path:
    """The paper's Fig. 6 view: error (%) against epochs, training error (inference mode, no
    augmentation) in the left panel, the per-epoch eval error in the right; per model the mean
    over the seeds that reached each epoch, a min–max band, learning-rate drops marked."""
    groups = _by_model(histories)
    styles = styles or model_styles(groups)
    eval_name = histories[0].val_split if histories else "eval"
    figure, panels = plt.subplots(1, 2, figsize=(10, 4.3), sharey=True)
    for axes, key, title in zip(panels, ("clean_train_accuracy", "val_accuracy"), (
            "training error (inference mode, no augmentation)", f"{eval_name} error")):
        for name, runs in groups.items():
            _band(axes, *_seed_curve(runs, key, error=True), styles[name], _label(name, runs),
                  f"{key}-{name}")
        axes.set_title(title, fontsize="medium")
        _epoch_axis(axes, "error (%)", learning_rate_drops(histories))
    _legend(figure, panels[1].get_legend_handles_labels())
    figure.suptitle(f"Error during training\n{BAND_TEXT}", fontsize="medium")
    return _save(figure, output, svg)


def plot_loss_curves(histories: Sequence[RunHistory], output: pathlib.Path,
                     styles: Mapping[str, dict] | None = None, svg: bool = True) -> pathlib.Path:
    """Training loss (Keras' running mean, augmented) and eval loss (on a log axis when its
    measured values span more than a decade) per epoch, every model on shared axes; mean over
    seeds with a min–max band, learning-rate drops marked."""
    groups = _by_model(histories)
    styles = styles or model_styles(groups)
    figure, panels = plt.subplots(1, 2, figsize=(10, 4.3), sharex=True)
    curves = {key: {name: _seed_curve(runs, key) for name, runs in groups.items()}
              for key in ("train_loss", "val_loss")}
    for axes, (key, by_model) in zip(panels, curves.items()):
        for name, (epochs, values) in by_model.items():
            _band(axes, epochs, values, styles[name], _label(name, groups[name]), f"{key}-{name}")
    for axes, label in zip(panels, ("training loss (cross-entropy)", "eval loss (cross-entropy)")):
        _epoch_axis(axes, label, learning_rate_drops(histories))
    # an early eval loss can be 50-100x the rest (a plain net's first epochs, a warm-up spike):
    # on a linear axis the rest of the run would be a flat line at the bottom
    eval_losses = [np.ravel(values) for _, values in curves["val_loss"].values()]
    if eval_losses and spans_decades(np.concatenate(eval_losses)):
        panels[1].set_yscale("log")
        panels[1].set_ylabel("eval loss (cross-entropy, log)")
    _legend(figure, panels[1].get_legend_handles_labels())
    figure.suptitle(f"Loss during training\n{BAND_TEXT}", fontsize="medium")
    return _save(figure, output, svg)


def plot_gaps(rows: Sequence[Mapping], output: pathlib.Path, svg: bool = True) -> pathlib.Path:
    """The forest plot: one row per entry of `rows` (top to bottom), each ``{label, split, gap,
    low, high}`` in error points (gap and interval None: no interval, said in its place); a
    dot (filled on the eval split, open on train) at the gap, a bar over its 95 % interval, a
    vertical line at 0, and above each bar its label (left) and numbers (right), so the figure
    stays narrow enough to read on a phone. In the SVG, row i's dot, bar, label and numbers
    are the elements with ids ``gap-<i>``, ``gap-interval-<i>``, ``gap-label-<i>`` and
    ``gap-numbers-<i>``."""
    figure, axes = plt.subplots(figsize=(6.2, 1.1 + 0.6 * max(len(rows), 1)))
    text_row = matplotlib.transforms.blended_transform_factory(axes.transAxes, axes.transData)
    for index, row in enumerate(rows):
        y = len(rows) - 1 - index
        filled = row["split"] != "train"
        numbers = "no interval"
        if row["gap"] is not None:
            bar = axes.errorbar(row["gap"], y - 0.12, xerr=[[row["gap"] - row["low"]],
                                                            [row["high"] - row["gap"]]],
                                fmt="o" if filled else "s", color="black", ecolor="black",
                                elinewidth=LINE_WIDTH, capsize=4, markersize=7,
                                markerfacecolor="black" if filled else "white")
            bar.lines[0].set_gid(f"gap-{index}")
            bar.lines[2][0].set_gid(f"gap-interval-{index}")
            numbers = f"{row['gap']:+.2f} ({row['low']:+.2f} to {row['high']:+.2f})"
        for x, text, align, gid in ((0.01, f"{row['label']}, {row['split']}", "left", "label"),
                                    (0.99, numbers, "right", "numbers")):
            axes.text(x, y + 0.18, text, ha=align, va="bottom", transform=text_row,
                      fontsize=10.5, gid=f"gap-{gid}-{index}",
                      bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    axes.axvline(0, color="0.3", linewidth=1.2)
    low = min([r["low"] for r in rows if r["gap"] is not None] + [0])
    high = max([r["high"] for r in rows if r["gap"] is not None] + [0])
    axes.set_xlim(low - 0.08 * (high - low or 1), high + 0.08 * (high - low or 1))
    axes.set_yticks([])
    axes.set_ylim(-0.6, len(rows) - 0.1)
    axes.set_xlabel("error of A − error of B, points, 95 % interval\n(< 0: A errs less)")
    axes.grid(True, axis="x", alpha=0.3)
    axes.set_title("Error gaps (filled dot: eval split, open square: training error)",
                   fontsize="medium")
    return _save(figure, output, svg)


def _order(name: str) -> tuple:
    spec = get_spec(name)
    return spec.family, spec.depth, spec.residual, name


def _by_model(histories: Sequence[RunHistory]) -> dict[str, list[RunHistory]]:
    groups: dict[str, list[RunHistory]] = {}
    for history in sorted(histories, key=lambda h: (h.family, h.depth, h.residual, h.seed)):
        groups.setdefault(history.model, []).append(history)
    return groups


def _label(name: str, runs: Sequence) -> str:
    return name if len(runs) == 1 else f"{name} ({len(runs)} seeds)"


def _band(axes, x, values, style: Mapping, label: str, gid: str) -> None:
    """The mean of `values` (one row per seed, NaN where unmeasured) as a line with `style`
    (id `gid` in an SVG), and a band from the lowest to the highest seed when there are
    several."""
    values = np.asarray(values, dtype=float)
    if not values.size:
        return
    with np.errstate(all="ignore"):
        mean = np.nanmean(values, axis=0)
    axes.plot(x, mean, label=label, gid=gid, **style)
    if values.shape[0] > 1:
        axes.fill_between(x, np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                          color=style["color"], alpha=BAND_ALPHA, linewidth=0)


def _seed_curve(runs: Sequence[RunHistory], key: str, error: bool = False
                ) -> tuple[list[int], np.ndarray]:
    """Epochs where some run measured `key`, and a (runs × epochs) array of it, NaN where a
    run did not (it stopped, or skipped the measurement); as an error in % when `error`."""
    epochs = sorted({e.epoch for run in runs for e in run.epochs if getattr(e, key) is not None})
    table = np.full((len(runs), len(epochs)), np.nan)
    column = {epoch: i for i, epoch in enumerate(epochs)}
    for row, run in enumerate(runs):
        for entry in run.epochs:
            value = getattr(entry, key)
            if value is not None:
                table[row, column[entry.epoch]] = 100 * (1 - value) if error else value
    return epochs, table[~np.isnan(table).all(axis=1)] if epochs else table[:, :0]


def spans_decades(values: np.ndarray) -> bool:
    """Whether the measured (non-NaN) values are all positive and the largest is more than ten
    times the smallest: the figures then use a logarithmic y axis."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return bool(values.size) and values.min() > 0 and values.max() / values.min() > 10


def _epoch_axis(axes, ylabel: str, drops: Sequence[int] = ()) -> None:
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    for i, epoch in enumerate(drops):
        axes.axvline(epoch, label="learning rate drop" if i == 0 else None, **DROP_STYLE)


def _legend(figure, handles_labels) -> None:
    """One legend for the whole figure, below its panels."""
    handles, labels = handles_labels
    if handles:
        figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02),
                      ncol=min(len(handles), 3), fontsize="small", frameon=False)


def _save(figure, output: pathlib.Path, svg: bool = False) -> pathlib.Path:
    """Writes `figure` to `output` (PNG) and, with `svg`, to the same name with ``.svg`` (text
    kept as text, no date: the same figure gives the same bytes); closes it."""
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110, bbox_inches="tight")
    if svg:
        with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "resnet-ablation"}):
            figure.savefig(output.with_suffix(".svg"), bbox_inches="tight",
                           metadata={"Date": None})
    plt.close(figure)
    return output
