"""The ablation report: one table, one verdict per depth, training curves, as a TFX component.

Two layers:

- Pure functions on plain data (no TFX artifacts needed): ``rows_from`` turns training
  histories (``history.json`` dicts) and evaluation metrics into one row per (model, seed);
  ``summarize`` averages seeds; ``verdicts`` words the comparison; ``markdown_table`` and
  ``write_report`` render it (CSV, JSON, Markdown, PNG curves, self-contained HTML).
- TFX glue: the ``AblationReport`` component takes lists of channels of ``ModelRun`` and
  ``ModelEvaluation`` artifacts (one per Trainer / Evaluator) and writes the report into its
  ``AblationReportArtifact`` output. ``render_from_pipeline_root`` re-renders the same report
  from a pipeline root's ML Metadata SQLite store (``ablation report PATH``).

Artifact contract: a ModelRun's URI holds ``history.json``; it carries custom properties
``model_name`` (str) and ``seed`` (int), which default to the history's ``model`` / ``seed``.
A ModelEvaluation is a TFMA output directory carrying ``model_name`` (the candidate model; a
residual-vs-plain comparison also carries ``baseline_model_name``) and ``seed``. They are
matched on (model_name, seed); for each key the newest artifact wins.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import pathlib
import statistics
import tempfile
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Union

from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, channel, channel_utils, component_spec, standard_artifacts
from tfx.types.artifact import Artifact

from components.model_specs import get_spec
from components.trainer import HISTORY_FILE  # the Trainer writes it into each ModelRun

COLUMNS = ("model", "family", "depth", "residual", "params", "epochs", "seed", "train_loss",
           "val_loss", "val_accuracy", "best_val_accuracy", "delta_vs_plain", "images_per_second")
"""The report's leading columns, in this order, in every CSV, JSON and Markdown table."""

EXTRA_COLUMNS = ("val_source", "history_val_accuracy", "eval_accuracy_diff", "eval_example_count")
"""Columns after ``COLUMNS``: where val_accuracy/val_loss came from ("evaluator" or "history"),
the history's own final val_accuracy, the Evaluator's candidate-minus-baseline accuracy (when
it evaluated against a baseline), and how many examples the Evaluator saw."""

IDENTITY_COLUMNS = ("model", "family", "depth", "residual", "params", "epochs")
"""The columns ``summarize`` keeps from the first row of each (model, epochs) group."""

METRIC_COLUMNS = ("train_loss", "val_loss", "val_accuracy", "best_val_accuracy",
                  "delta_vs_plain", "images_per_second")
"""The numeric columns ``summarize`` averages over seeds."""

REPORT_FILES = {"csv": "ablation.csv", "json": "ablation.json", "markdown": "ablation.md",
                "curves": "curves.png", "html": "report.html"}

Row = dict[str, Any]
Key = tuple[str, int]  # (model name, seed)


# --------------------------------------------------------------------------- rows


def rows_from(histories: Sequence[Mapping], evaluations: Mapping[Key, Mapping[str, float]]
              ) -> List[Row]:
    """One row per history, i.e. per (model, seed), sorted by family, depth, plain first, seed.

    `histories` are ``history.json`` dicts; at most one per (model, seed). `evaluations` maps
    (model, seed) to the Evaluator's overall metrics (``accuracy``, ``loss``, optionally
    ``example_count`` and ``accuracy_diff``). Columns are ``COLUMNS + EXTRA_COLUMNS``:

    - ``residual`` is "true"/"false"; ``epochs`` the number of epochs in the history;
      ``train_loss`` the final epoch's;
    - ``val_accuracy`` / ``val_loss``: the evaluation's ``accuracy`` / ``loss`` when the key's
      evaluation has that metric, else the history's final epoch; accuracies are fractions in
      [0, 1]; ``val_source`` says whether the accuracy came from "evaluator" or "history";
    - ``best_val_accuracy``: max of the history's per-epoch val_accuracy;
    - ``delta_vs_plain``: on a residual row, its val_accuracy minus that of its plain twin
      (``get_spec(model).twin``) with the same seed and number of epochs; None on plain rows
      and when there is no such twin row;
    - ``images_per_second``: median over epochs.

    Missing values, and NaN or infinite ones, are None (a non-finite evaluation metric counts
    as absent). Raises ValueError on
    duplicate keys, empty histories, or accuracies outside [0, 1].
    """
    keys = [(h["model"], int(h["seed"])) for h in histories]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"more than one history for (model, seed) {duplicates}")
    rows = [_row(h, evaluations.get(key)) for h, key in zip(histories, keys)]
    by_key = {(row["model"], row["seed"]): row for row in rows}
    for row in rows:
        row["delta_vs_plain"] = _delta_vs_plain(row, by_key)
    return sorted(rows, key=lambda r: (r["family"], r["depth"], r["residual"], r["seed"]))


def _row(history: Mapping, metrics: Optional[Mapping[str, float]]) -> Row:
    epochs = history["epochs"]
    if not epochs:
        raise ValueError(f"history of {history['model']} seed {history['seed']} has no epochs")
    final = {key: _number(value) for key, value in epochs[-1].items()}
    metrics = {k: _number(v) for k, v in (metrics or {}).items() if _number(v) is not None}
    accuracies = [a for a in (_number(e.get("val_accuracy")) for e in epochs) if a is not None]
    speeds = [v for v in (_number(e.get("images_per_second")) for e in epochs) if v is not None]
    row = {
        "model": history["model"], "family": history["family"], "depth": int(history["depth"]),
        "residual": "true" if history["residual"] else "false", "params": int(history["params"]),
        "epochs": len(epochs), "seed": int(history["seed"]),
        "train_loss": final.get("train_loss"),
        "val_loss": metrics.get("loss", final.get("val_loss")),
        "val_accuracy": metrics.get("accuracy", final.get("val_accuracy")),
        "best_val_accuracy": max(accuracies, default=None),
        "delta_vs_plain": None,
        "images_per_second": statistics.median(speeds) if speeds else None,
        "val_source": "evaluator" if "accuracy" in metrics else "history",
        "history_val_accuracy": final.get("val_accuracy"),
        "eval_accuracy_diff": metrics.get("accuracy_diff"),
        "eval_example_count": metrics.get("example_count"),
    }
    for column in ("val_accuracy", "best_val_accuracy", "history_val_accuracy"):
        if row[column] is not None and not 0.0 <= row[column] <= 1.0:
            raise ValueError(f"{row['model']} seed {row['seed']}: {column} {row[column]} "
                             "is not a fraction in [0, 1]")
    return row


def _number(value: Any) -> Optional[float]:
    """`value` as a float; None for a missing or non-finite (NaN, inf) value."""
    return float(value) if value is not None and math.isfinite(value) else None


def _delta_vs_plain(row: Row, by_key: Mapping[Key, Row]) -> Optional[float]:
    if row["residual"] != "true":
        return None
    twin = by_key.get((get_spec(row["model"]).twin, row["seed"]))
    if twin is None or twin["epochs"] != row["epochs"] or None in (
            row["val_accuracy"], twin["val_accuracy"]):
        return None
    return row["val_accuracy"] - twin["val_accuracy"]


# --------------------------------------------------------------------------- seeds and verdicts


def summarize(rows: Sequence[Row]) -> List[Row]:
    """One row per (model, epochs) over its seeds, in the order of first appearance in `rows`.

    Keeps ``IDENTITY_COLUMNS``, adds ``seeds`` (how many rows)
    and, for each of ``METRIC_COLUMNS``, ``<column>_mean`` and ``<column>_std`` (sample
    standard deviation, ddof=1) over the rows where the value is not None; a mean is None with
    no values, a std None with fewer than two.
    """
    summary = []
    for group in _groups(rows, lambda r: (r["model"], r["epochs"])):
        entry = {k: group[0][k] for k in IDENTITY_COLUMNS}
        entry["seeds"] = len(group)
        for column in METRIC_COLUMNS:
            mean, std = _mean_std([r[column] for r in group if r[column] is not None])
            entry[f"{column}_mean"], entry[f"{column}_std"] = mean, std
        summary.append(entry)
    return summary


def verdicts(rows: Sequence[Row]) -> List[str]:
    """One sentence per (family, depth, epochs) in `rows`, from the numbers.

    Where both twins were trained, compares them on the seeds they share: the residual model
    "beats" or "trails" the plain one by the mean per-seed gap in points (percentage points) of
    validation accuracy; with several seeds it gives means ± sample std and says when the gap
    is within one std of the per-seed gaps; with one seed it says the spread is unknown.
    """
    return [_verdict(group) for group in
            _groups(rows, lambda r: (r["family"], r["depth"], r["epochs"]))]


def _verdict(rows: Sequence[Row]) -> str:
    """The sentence for the rows of one (family, depth, epochs); pairs are the residual rows
    with a delta_vs_plain."""
    epochs = rows[0]["epochs"]
    paired = sorted((r for r in rows if r["delta_vs_plain"] is not None), key=lambda r: r["seed"])
    if not paired:
        name = rows[0]["model"]
        return (f"{name} has no {get_spec(name).twin} twin trained for {_epochs(epochs)} with "
                "the same seed, so there is no comparison at this depth.")
    plain = {r["seed"]: r["val_accuracy"] for r in rows if r["residual"] == "false"}
    res_name = paired[0]["model"]
    plain_name = get_spec(res_name).twin
    seeds = [r["seed"] for r in paired]
    res_acc = [r["val_accuracy"] for r in paired]
    plain_acc = [plain[seed] for seed in seeds]
    gaps = [r["delta_vs_plain"] for r in paired]
    gap = statistics.fmean(gaps)
    verb = "beats" if gap > 0 else "trails" if gap < 0 else "ties with"
    size = f"by {abs(gap) * 100:.2f} points of" if gap else "on"
    head = f"{res_name} {verb} {plain_name} {size} validation accuracy after {_epochs(epochs)}"
    if len(seeds) == 1:
        return (f"{head} (one seed, {seeds[0]}: {res_acc[0]:.2%} vs {plain_acc[0]:.2%}); "
                "with a single seed the run-to-run spread is unknown.")
    gap_std = statistics.stdev(gaps)
    sentence = (f"{head} (mean of {len(seeds)} seeds: {_pct(res_acc)} vs {_pct(plain_acc)}; "
                f"per-seed gap {gap * 100:+.2f} ± {gap_std * 100:.2f} points)")
    if abs(gap) <= gap_std:
        return (f"{sentence}; the gap is within one standard deviation of the per-seed gaps, "
                "so it is not distinguishable from seed-to-seed variation.")
    return f"{sentence}."


def _epochs(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def _pct(values: Sequence[float]) -> str:
    mean, std = _mean_std(values)
    return f"{mean:.2%} ± {std * 100:.2f}"


def _mean_std(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    mean = statistics.fmean(values) if values else None
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _groups(rows: Iterable[Row], key: Callable[[Row], Any]) -> List[List[Row]]:
    """`rows` grouped by `key`, groups in order of first appearance."""
    groups: dict[Any, List[Row]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return list(groups.values())


# --------------------------------------------------------------------------- rendering


def markdown_table(rows: Sequence[Row], columns: Sequence[str] = COLUMNS) -> str:
    """A Markdown table of `rows` restricted to `columns`: floats to 4 decimals (throughput to
    1), params with thousands separators, None as an empty cell."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(rows, columns)]
    return "\n".join(lines)


def _cells(rows: Sequence[Row], columns: Sequence[str]) -> List[List[str]]:
    return [[_format(column, row.get(column)) for column in columns] for row in rows]


def _format(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "params":
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.1f}" if column.startswith("images_per_second") else f"{value:.4f}"
    return str(value)


SUMMARY_COLUMNS = ("model", "epochs", "seeds") + METRIC_COLUMNS


def _summary_display(summary: Sequence[Row]) -> List[Row]:
    """Summary rows with each metric as one "mean ± std" string (just the mean with one seed)."""
    display = []
    for entry in summary:
        row = {k: entry[k] for k in ("model", "epochs", "seeds")}
        for column in METRIC_COLUMNS:
            mean, std = entry[f"{column}_mean"], entry[f"{column}_std"]
            row[column] = (None if mean is None else _format(column, mean) if std is None
                           else f"{_format(column, mean)} ± {_format(column, std)}")
        display.append(row)
    return display


def write_report(rows: Sequence[Row], histories: Sequence[Mapping],
                 output_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes the report files into `output_dir` (created if needed); returns their paths.

    Keys and files: ``csv`` ablation.csv (``COLUMNS + EXTRA_COLUMNS``, full float precision,
    None as empty), ``json`` ablation.json (``columns``, ``rows``, ``summary``, ``verdicts``),
    ``markdown`` ablation.md (per-seed table, a per-model summary when a model has several
    seeds, a verdict paragraph per depth), ``curves`` curves.png (from `histories`), ``html``
    report.html (the same content with curves.png inlined as a base64 data URI: no external
    files or network needed).
    """
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: output_dir / name for key, name in REPORT_FILES.items()}
    summary, sentences = summarize(rows), verdicts(rows)
    columns = COLUMNS + EXTRA_COLUMNS
    paths["csv"].write_text(_csv(rows, columns))
    paths["json"].write_text(json.dumps(
        {"columns": columns, "rows": rows, "summary": summary, "verdicts": sentences},
        indent=2, allow_nan=False))
    from components import plots  # matplotlib only when a report is written

    plots.plot_training_curves(histories, paths["curves"])
    sections = _sections(rows, summary)
    paths["markdown"].write_text(_markdown(sections, sentences))
    paths["html"].write_text(_html(sections, sentences, paths["curves"].read_bytes()))
    return paths


def _csv(rows: Sequence[Row], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if row.get(c) is None else row[c] for c in columns] for row in rows])
    return buffer.getvalue()


def _sections(rows: Sequence[Row], summary: Sequence[Row]
              ) -> List[tuple[str, Sequence[Row], Sequence[str]]]:
    """(title, rows, columns) of each table the Markdown and HTML reports show."""
    sections = [("Per model and seed", rows, COLUMNS + ("val_source",))]
    if any(entry["seeds"] > 1 for entry in summary):
        sections.append(("Mean ± std over seeds", _summary_display(summary), SUMMARY_COLUMNS))
    return sections


TITLE = "Residual vs plain networks: ablation report"


def _markdown(sections, sentences: Sequence[str]) -> str:
    parts = [f"# {TITLE}"]
    for title, rows, columns in sections:
        parts += [f"## {title}", markdown_table(rows, columns)]
    parts += ["## Verdicts", *sentences, "![training curves](curves.png)"]
    return "\n\n".join(parts) + "\n"


def _html(sections, sentences: Sequence[str], png: bytes) -> str:
    body = [f"<h1>{html.escape(TITLE)}</h1>"]
    for title, rows, columns in sections:
        body += [f"<h2>{html.escape(title)}</h2>", _html_table(rows, columns)]
    body += ["<h2>Verdicts</h2>", *(f"<p>{html.escape(s)}</p>" for s in sentences),
             "<h2>Training curves</h2>",
             f'<img alt="training curves" src="data:image/png;base64,'
             f'{base64.b64encode(png).decode("ascii")}">']
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}"
             "img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(TITLE)}'
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _html_table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"
                   for cells in _cells(rows, columns))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------- artifacts


def evaluation_metrics(uri: str) -> dict[str, dict[str, float]]:
    """Overall-slice scalar metrics of every model in the TFMA result at `uri`, by model name.

    With a baseline, TFMA evaluates both models: the candidate's metrics also hold TFMA's
    ``<metric>_diff`` (candidate minus baseline). Raises ValueError without an overall slice."""
    import tensorflow_model_analysis as tfma  # heavy; only when evaluations are read
    from tensorflow_model_analysis.writers import eval_config_writer

    eval_config = eval_config_writer.load_eval_run(uri)[0]
    names = [spec.name for spec in eval_config.model_specs] if eval_config else [""]
    result = {}
    for name in names:
        # TFMA keys a single-model result without its name
        metrics = tfma.load_eval_result(uri, model_name=name if len(names) > 1 else None
                                        ).get_metrics_for_slice()
        if metrics is None:
            raise ValueError(f"no overall-slice metrics for {name or 'the model'} in {uri}")
        result[name] = {metric: float(value["doubleValue"]) for metric, value in metrics.items()
                        if isinstance(value, dict) and "doubleValue" in value}
    return result


def _metrics_by_run(evaluated: Mapping[Key, Artifact]) -> dict[Key, dict[str, float]]:
    """Metrics per (model, seed): a model's own evaluation wins over its use as a baseline."""
    metrics: dict[Key, dict[str, float]] = {}
    own: dict[Key, dict[str, float]] = {}
    for (model, seed), artifact in evaluated.items():
        for name, values in evaluation_metrics(artifact.uri).items():
            (own if name in (model, "") else metrics)[(name or model, seed)] = values
    return {**metrics, **own}


def render(model_runs: Sequence[Artifact], evaluations: Sequence[Artifact],
           output_dir: pathlib.Path) -> tuple[List[Row], dict[str, pathlib.Path]]:
    """Renders the report for ModelRun and ModelEvaluation artifacts into `output_dir`.

    Keeps the newest artifact per (model_name, seed) (by MLMD creation time, then id, then
    position in the list), matches evaluations to runs (see the module docstring; evaluations
    of models without a run are ignored) and returns the rows and the paths ``write_report``
    wrote. Raises ValueError without runs, or for an evaluation without ``model_name`` or
    whose run cannot be identified.
    """
    if not model_runs:
        raise ValueError("no ModelRun artifacts to report on")
    histories = _newest_by_key([(a, _load_history(a)) for a in model_runs], _run_key)
    evaluated = _newest_by_key([(a, a) for a in evaluations],
                               lambda a, _: _evaluation_key(a, list(histories)))
    rows = rows_from(list(histories.values()), _metrics_by_run(evaluated))
    return rows, write_report(rows, list(histories.values()), output_dir)


def _newest_by_key(pairs: Sequence[tuple[Artifact, Any]],
                   key_of: Callable[[Artifact, Any], Key]) -> dict[Key, Any]:
    """Maps key_of(artifact, payload) to the payload of the newest artifact with that key."""
    ordered = sorted(enumerate(pairs), key=lambda item: (
        item[1][0].mlmd_artifact.create_time_since_epoch, item[1][0].id, item[0]))
    return {key_of(artifact, payload): payload for _, (artifact, payload) in ordered}


def _load_history(artifact: Artifact) -> dict:
    with fileio.open(os.path.join(artifact.uri, HISTORY_FILE)) as file:  # local or gs://
        return json.load(file)


def _run_key(artifact: Artifact, history: Mapping) -> Key:
    """(model_name, seed) from the custom properties, defaulting to the history's; raises
    ValueError when they disagree."""
    key = (history["model"], int(history["seed"]))
    if artifact.has_custom_property("model_name"):
        key = (artifact.get_string_custom_property("model_name"), key[1])
    if artifact.has_custom_property("seed"):
        key = (key[0], artifact.get_int_custom_property("seed"))
    if key != (history["model"], int(history["seed"])):
        raise ValueError(f"ModelRun at {artifact.uri} is {key} by its properties but "
                         f"{(history['model'], history['seed'])} by its {HISTORY_FILE}")
    return key


def _evaluation_key(artifact: Artifact, runs: Sequence[Key]) -> Key:
    """(model_name, seed) of an evaluation; without a ``seed`` property, the seed of the only
    run of that model (ValueError when there are several or none)."""
    if not artifact.has_custom_property("model_name"):
        raise ValueError(f"ModelEvaluation at {artifact.uri} has no model_name custom property")
    model = artifact.get_string_custom_property("model_name")
    if artifact.has_custom_property("seed"):
        return model, artifact.get_int_custom_property("seed")
    seeds = [seed for name, seed in runs if name == model]
    if len(seeds) != 1:
        raise ValueError(f"ModelEvaluation at {artifact.uri} of {model} has no seed custom "
                         f"property and there are {len(seeds)} runs of {model}")
    return model, seeds[0]


# --------------------------------------------------------------------------- TFX component


class AblationReportArtifact(Artifact):
    """Directory holding the ablation report files (``REPORT_FILES``).

    The type name has the ``namespace.Name`` form Kubeflow V2 requires of custom artifact types.
    """

    TYPE_NAME = "components.AblationReportArtifact"


RUNS_KEY, EVALUATIONS_KEY, REPORT_KEY = "model_runs", "evaluations", "report"


class AblationReportExecutor(base_executor.BaseExecutor):
    """Renders the report into the ``report`` output artifact.

    ``input_dict`` holds ModelRun artifacts under ``model_runs`` and/or ``model_runs_<i>``, and
    ModelEvaluation artifacts under ``evaluations`` and/or ``evaluations_<i>`` (one key per
    upstream channel, as ``AblationReport`` declares them). Sets the output's custom properties
    ``markdown_table`` (per-seed table), ``verdicts`` (one per line) and ``rows`` (how many).
    """

    def Do(self, input_dict: dict[str, List[Artifact]], output_dict: dict[str, List[Artifact]],
           exec_properties: dict[str, Any]) -> None:
        [report] = output_dict[REPORT_KEY]
        with tempfile.TemporaryDirectory() as local:  # the artifact's URI may be remote
            rows, paths = render(_gather(input_dict, RUNS_KEY),
                                 _gather(input_dict, EVALUATIONS_KEY), pathlib.Path(local))
            fileio.makedirs(report.uri)
            for path in paths.values():
                fileio.copy(str(path), os.path.join(report.uri, path.name), overwrite=True)
        report.set_string_custom_property("markdown_table", markdown_table(rows))
        report.set_string_custom_property("verdicts", "\n".join(verdicts(rows)))
        report.set_int_custom_property("rows", len(rows))


def _gather(input_dict: Mapping[str, List[Artifact]], prefix: str) -> List[Artifact]:
    return [artifact for key in sorted(input_dict)
            if key == prefix or key.startswith(f"{prefix}_") for artifact in input_dict[key]]


class AblationReportSpec(component_spec.ComponentSpec):
    """The report's output; ``AblationReport`` derives a spec with one input per channel."""

    PARAMETERS: dict = {}
    INPUTS: dict = {}
    OUTPUTS = {REPORT_KEY: component_spec.ChannelParameter(type=AblationReportArtifact)}


Channels = Union[channel.BaseChannel, Iterable[channel.BaseChannel]]


class AblationReport(base_component.BaseComponent):
    """TFX component: the ablation report over every trained variant.

    ``AblationReport(model_runs=[...], evaluations=[...])`` takes a list of channels (or one
    channel, or a ``channel_utils.union``) of ModelRun and of ModelEvaluation artifacts and
    declares one input per channel (``model_runs_0``, ``model_runs_1``, ...; unions are split
    into their channels), because Kubeflow V2 compiles only single-channel inputs. Output:
    ``report``, an ``AblationReportArtifact`` holding the files ``write_report`` writes.
    """

    SPEC_CLASS = AblationReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AblationReportExecutor)

    def __init__(self, model_runs: Channels, evaluations: Channels = ()):
        inputs = {**_keyed(RUNS_KEY, model_runs), **_keyed(EVALUATIONS_KEY, evaluations)}
        if not any(key.startswith(RUNS_KEY) for key in inputs):
            raise ValueError("AblationReport needs at least one ModelRun channel")
        types = {RUNS_KEY: standard_artifacts.ModelRun,
                 EVALUATIONS_KEY: standard_artifacts.ModelEvaluation}
        spec_class = type("AblationReportSpec", (AblationReportSpec,), {"INPUTS": {
            key: component_spec.ChannelParameter(type=types[key.rsplit("_", 1)[0]])
            for key in inputs}})
        super().__init__(spec=spec_class(
            **inputs, **{REPORT_KEY: channel.Channel(type=AblationReportArtifact)}))


def _keyed(prefix: str, channels: Channels) -> dict[str, channel.BaseChannel]:
    """``{prefix_0: channel, prefix_1: ...}`` over `channels`, unions split into members."""
    if isinstance(channels, channel.BaseChannel):
        channels = [channels]
    flat = [member for c in channels for member in channel_utils.get_individual_channels(c)]
    return {f"{prefix}_{i}": c for i, c in enumerate(flat)}


def render_from_pipeline_root(pipeline_root: pathlib.Path,
                              output_dir: Optional[pathlib.Path] = None
                              ) -> dict[str, pathlib.Path]:
    """Re-renders the report from ``pipeline_root/metadata.sqlite`` into `output_dir`
    (default ``pipeline_root/report``) and returns the written paths.

    Reads the LIVE artifacts of types ModelRun and ModelEvaluation with ml_metadata (read only)
    and keeps the newest per (model_name, seed), as ``render`` does. Raises FileNotFoundError
    without the store and ValueError without ModelRun artifacts.
    """
    from pipeline.artifacts import open_store

    pipeline_root = pathlib.Path(pipeline_root)
    store = open_store(str(pipeline_root))
    runs, evaluations = (_live_artifacts(store, name) for name in ("ModelRun", "ModelEvaluation"))
    _, paths = render(runs, evaluations, output_dir or pipeline_root / "report")
    return paths


def _live_artifacts(store, type_name: str) -> List[Artifact]:
    """TFX Artifacts of every LIVE artifact of `type_name` in `store` (none if the type is
    not registered)."""
    from ml_metadata import errors
    from ml_metadata.proto import metadata_store_pb2

    try:
        artifact_type = store.get_artifact_type(type_name)
    except errors.NotFoundError:
        return []
    return [artifact_utils.deserialize_artifact(artifact_type, a)
            for a in store.get_artifacts_by_type(type_name)
            if a.state == metadata_store_pb2.Artifact.LIVE]
