"""``AblationReport``: the TFX component that turns every trained variant into the report.

Inputs (one key per upstream channel, since Kubeflow V2 compiles single-channel inputs only):
``model_runs_<i>`` (ModelRun: ``history.json`` and, for finished runs, ``predictions.json``;
custom properties ``model_name`` and ``seed``), optional ``evaluations_<i>`` (ModelEvaluation:
a TFMA result, or an ``evaluation.SKIPPED_FILE`` when a model diverged; custom properties
``model_name``, ``baseline_model_name``, ``seed``), and optional ``examples``, ``statistics``
and ``anomalies`` for the data section. Runs and evaluations are matched on (model_name, seed);
the newest artifact per key wins. Exec properties ``config_json`` (the effective
configuration) and ``code_version`` feed the provenance section.

Output ``report`` (``AblationReportArtifact``) holds ``report_files.REPORT_FILES``; custom
properties ``markdown_table``, ``verdicts`` (one sentence per line) and ``rows``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import platform
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata as package_metadata
from typing import Any

from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import channel, channel_utils, component_spec, standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ExecutionParameter

from components.evaluation import SKIPPED_FILE as EVALUATION_SKIPPED_FILE
from resnet_ablation import comparison, report_files, report_tables
from resnet_ablation.contracts import (
    HISTORY_FILE,
    PREDICTIONS_FILE,
    RESPONSES_FILE,
    LayerResponses,
    Predictions,
    RunHistory,
)
from resnet_ablation.data_source import LABEL_NAME_KEY, LABELS_FILE, SKIPPED_FILE

Key = tuple[str, int]  # (model name, seed)
PACKAGES = ("tfx", "tensorflow", "tf-keras", "tensorflow-transform",
            "tensorflow-model-analysis", "tensorflow-data-validation", "ml-metadata",
            "apache-beam", "numpy")


# --------------------------------------------------------------------------- reading artifacts


def read_text(uri: str, name: str) -> str | None:
    path = os.path.join(uri, name)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as file:  # local or gs://
        data = file.read()
    return data.decode() if isinstance(data, bytes) else data


def evaluation_metrics(uri: str) -> dict[str, dict[str, float]]:
    """Overall-slice scalar metrics of every model in the TFMA result at `uri`, by model name
    (empty when the Evaluator skipped a diverged model). With a baseline, the candidate's
    metrics also hold TFMA's ``<metric>_diff``. Raises ValueError without an overall slice."""
    import tensorflow_model_analysis as tfma  # heavy; only when evaluations are read
    from tensorflow_model_analysis.writers import eval_config_writer

    _drop_tfma_reader_notice()
    if read_text(uri, EVALUATION_SKIPPED_FILE) is not None:
        return {}
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


class _TfRecordIteratorNotice(logging.Filter):
    """Drops TensorFlow's notice that ``tf_record_iterator`` is deprecated, and only that
    record: TFMA's readers (``load_eval_result``, ``load_eval_run``) call it, so every report
    with evaluations printed those four lines, which no user can act on."""

    NOTICE = "tf_record_iterator (from tensorflow.python.lib.io.tf_record) is deprecated"

    def filter(self, record: logging.LogRecord) -> bool:
        return self.NOTICE not in record.getMessage()


def _drop_tfma_reader_notice() -> None:
    """Puts ``_TfRecordIteratorNotice`` on TensorFlow's logger (once per process)."""
    tensorflow_logger = logging.getLogger("tensorflow")  # what tf_logging writes to
    if not any(isinstance(f, _TfRecordIteratorNotice) for f in tensorflow_logger.filters):
        tensorflow_logger.addFilter(_TfRecordIteratorNotice())


def _metrics_by_run(evaluated: Mapping[Key, Artifact]) -> dict[Key, dict[str, float]]:
    """Metrics per (model, seed): a model's own evaluation wins over its use as a baseline."""
    metrics: dict[Key, dict[str, float]] = {}
    own: dict[Key, dict[str, float]] = {}
    for (model, seed), artifact in evaluated.items():
        for name, values in evaluation_metrics(artifact.uri).items():
            (own if name in (model, "") else metrics)[(name or model, seed)] = values
    return {**metrics, **own}


def _load_run(artifact: Artifact) -> comparison.RunResult:
    """The run's history and, when present, its predictions and layer responses."""
    text = read_text(artifact.uri, HISTORY_FILE)
    if text is None:
        raise ValueError(f"ModelRun at {artifact.uri} has no {HISTORY_FILE}")
    predictions, responses = (read_text(artifact.uri, name)
                              for name in (PREDICTIONS_FILE, RESPONSES_FILE))
    return comparison.RunResult(
        RunHistory.from_json(text),
        Predictions.from_json(predictions) if predictions is not None else None,
        responses=LayerResponses.from_json(responses) if responses is not None else None)


def _run_key(artifact: Artifact, run: comparison.RunResult) -> Key:
    """(model_name, seed) from the custom properties, defaulting to the history's; raises
    ValueError when they disagree."""
    history = run.history
    key = (history.model, history.seed)
    if artifact.has_custom_property("model_name"):
        key = (artifact.get_string_custom_property("model_name"), key[1])
    if artifact.has_custom_property("seed"):
        key = (key[0], artifact.get_int_custom_property("seed"))
    if key != (history.model, history.seed):
        raise ValueError(f"ModelRun at {artifact.uri} is {key} by its properties but "
                         f"{(history.model, history.seed)} by its {HISTORY_FILE}")
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


def _newest_by_key(pairs: Sequence[tuple[Artifact, Any]],
                   key_of: Callable[[Artifact, Any], Key]) -> dict[Key, Any]:
    """Maps key_of(artifact, payload) to the payload of the newest artifact with that key."""
    ordered = sorted(enumerate(pairs), key=lambda item: (
        item[1][0].mlmd_artifact.create_time_since_epoch, item[1][0].id, item[0]))
    return {key_of(artifact, payload): payload for _, (artifact, payload) in ordered}


def run_results(model_runs: Sequence[Artifact], evaluations: Sequence[Artifact]
                ) -> list[comparison.RunResult]:
    """One RunResult per (model, seed): newest run, its predictions and evaluation metrics."""
    if not model_runs:
        raise ValueError("no ModelRun artifacts to report on")
    runs = _newest_by_key([(a, _load_run(a)) for a in model_runs], _run_key)
    evaluated = _newest_by_key([(a, a) for a in evaluations],
                               lambda a, _: _evaluation_key(a, list(runs)))
    metrics = _metrics_by_run(evaluated)
    return [dataclasses.replace(run, metrics=metrics.get(key)) for key, run in runs.items()]


# --------------------------------------------------------------------------- data section


def data_summary(examples: Artifact | None, statistics: Artifact | None,
                 anomalies: Artifact | None) -> dict[str, Any]:
    """What the report's data section shows (see ``report_files.Report``); {} without inputs."""
    if examples is None:
        return {}
    counts = json.loads(read_text(examples.uri, SKIPPED_FILE) or "{}")
    label_file = json.loads(read_text(examples.uri, LABELS_FILE) or "{}")
    labels = label_file.get("names", [])
    splits = list(counts.get("examples", {}))
    return {"examples": counts.get("examples", {}), "labels": labels,
            "eval_split": counts.get("eval_split_name", "eval"),
            "subset": counts.get("subset", ""),
            "duplicates_of_train": counts.get("duplicates_of_train", {}),
            "content_sha256": counts.get("content_sha256", {}),
            "source": label_file.get("source"),
            "exif_rotated": counts.get("exif_rotated", {}),
            "large": counts.get("large", {}),
            "skipped": {s: skipped for s in splits
                        if (skipped := {r: n for r, n in counts.get(s, {}).items() if n})},
            "classes": {s: _class_counts(statistics, s) for s in splits} if statistics else {},
            "anomalies": _anomalies(anomalies, splits) if anomalies else []}


def _class_counts(statistics: Artifact, split: str) -> dict[str, int]:
    """Examples per class name in `split`, from StatisticsGen's ``label_name`` histogram."""
    from tfx.components.statistics_gen import stats_artifact_utils

    try:
        view = stats_artifact_utils.load_statistics(statistics, split)
    except Exception:  # noqa: BLE001  (a split StatisticsGen did not see: no counts)
        return {}
    for feature in view.proto().datasets[0].features:
        if feature.path.step and feature.path.step[-1] == LABEL_NAME_KEY:
            buckets = feature.string_stats.rank_histogram.buckets
            if buckets:
                return {b.label: int(b.sample_count) for b in buckets}
            return {v.value: int(v.frequency) for v in feature.string_stats.top_values}
    return {}


def _anomalies(anomalies: Artifact, splits: Sequence[str]) -> list[str]:
    """One line per ExampleValidator anomaly: split, feature and TFDV's description."""
    from tensorflow_data_validation.utils import anomalies_util

    lines = []
    for split in splits:
        path = os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb")
        if not fileio.exists(path):
            continue
        for feature, info in sorted(anomalies_util.load_anomalies_binary(path).anomaly_info.items()):
            lines.append(f"{split}: {feature}: {info.short_description} "
                         f"({info.description})")
    return lines


def data_warnings(data: Mapping[str, Any]) -> list[str]:
    """Data problems a user must see: skipped files, images of eval (or validation) that are
    byte-identical to train images, JPEGs with an EXIF orientation, images above 16.8 megapixels,
    a class with no train image,
    an eval class unseen in train, and every ExampleValidator anomaly."""
    warnings = [f"{split}: {count:,} file(s) skipped as {reason}"
                for split, reasons in data.get("skipped", {}).items()
                for reason, count in reasons.items() if count]
    warnings += [f"{split}: {count:,} image(s) byte-identical to train images (found by content "
                 "hash): the model was scored on images it trained on"
                 for split, count in data.get("duplicates_of_train", {}).items() if count]
    warnings += [f"{split}: {count:,} JPEG(s) with an EXIF orientation: used as stored (as "
                 "TensorFlow decodes them, in training and serving alike), not as a viewer "
                 "shows them" for split, count in data.get("exif_rotated", {}).items() if count]
    warnings += [f"{split}: {count:,} image(s) above 16.8 megapixels: each is decoded whole "
                 "before it is resized, which can dominate training time; resize the folder once"
                 for split, count in data.get("large", {}).items() if count]
    train = data.get("classes", {}).get("train")
    if train is not None:
        empty = [name for name in data.get("labels", []) if not train.get(name)]
        if empty:
            warnings.append(f"class(es) with no valid train image: {', '.join(empty)}")
        for split, counts in data["classes"].items():
            unseen = sorted(name for name, n in counts.items() if n and not train.get(name))
            if split != "train" and unseen:
                warnings.append(f"{split} has class(es) never seen in train: {', '.join(unseen)}")
    return warnings + [f"anomaly: {line}" for line in data.get("anomalies", [])]


# --------------------------------------------------------------------------- provenance


def provenance(histories: Sequence[RunHistory], config_json: str, code_version: str,
               run_id: str | None) -> dict[str, Any]:
    """The provenance section: configuration and its fingerprint (that of
    ``PipelineConfig.fingerprint`` when `config_json` is ``PipelineConfig.to_json()``), code,
    versions, hardware, precision and XLA, training time per run, and the run id."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            continue
    return {
        "configuration fingerprint": (hashlib.sha256(config_json.encode()).hexdigest()[:12]
                                      if config_json else "unknown"),
        "code version": code_version or "unknown",
        "pipeline run id": run_id or "unknown",
        "python": platform.python_version(),
        "packages": versions,
        "report machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "training devices": sorted({h.device for h in histories if h.device}),
        "processor flags": sorted({" ".join(h.cpu_flags) for h in histories if h.cpu_flags}),
        "oneDNN": sorted({str(h.onednn).lower() for h in histories if h.onednn is not None}),
        "tensorflow (training)": sorted({h.tensorflow for h in histories if h.tensorflow}),
        "precision": sorted({h.precision for h in histories}),
        "xla": sorted({str(h.xla).lower() for h in histories}),
        "fit seconds (sum of epochs)": {f"{h.model} seed {h.seed}": round(sum(e.seconds for e in h.epochs), 1)
                             for h in histories},
        "config": json.loads(config_json) if config_json else {},
    }


def render(results: Sequence[comparison.RunResult], output_dir: pathlib.Path,
           data: Mapping[str, Any] | None = None,
           provenance_info: Mapping[str, Any] | None = None
           ) -> tuple[report_files.Report, dict[str, pathlib.Path]]:
    """Builds the report of `results` and writes its files into `output_dir`."""
    data = data or {}
    report = report_files.Report(
        rows=comparison.rows(results), verdicts=comparison.verdicts(results),
        histories=[r.history for r in results],
        responses={r.key: r.responses for r in results if r.responses}, data=data,
        provenance=provenance_info or {}, warnings=data_warnings(data))
    return report, report_files.write_report(report, output_dir)


# --------------------------------------------------------------------------- TFX component


class AblationReportArtifact(Artifact):
    """Directory holding the ablation report files (``report_files.REPORT_FILES``).

    The type name has the ``namespace.Name`` form Kubeflow V2 requires of custom artifact types.
    """

    TYPE_NAME = "components.AblationReportArtifact"


RUNS_KEY, EVALUATIONS_KEY, REPORT_KEY = "model_runs", "evaluations", "report"
DATA_INPUTS = {"examples": standard_artifacts.Examples,
               "statistics": standard_artifacts.ExampleStatistics,
               "anomalies": standard_artifacts.ExampleAnomalies}


class AblationReportExecutor(base_executor.BaseExecutor):
    """Renders the report into the ``report`` output artifact (see the module docstring)."""

    def Do(self, input_dict: dict[str, list[Artifact]],  # noqa: N802  (TFX's name)
           output_dict: dict[str, list[Artifact]], exec_properties: dict[str, Any]) -> None:
        [output] = output_dict[REPORT_KEY]
        results = run_results(_gather(input_dict, RUNS_KEY), _gather(input_dict, EVALUATIONS_KEY))
        data = data_summary(*(next(iter(input_dict.get(key) or []), None) for key in DATA_INPUTS))
        info = provenance([r.history for r in results], exec_properties.get("config_json", ""),
                          exec_properties.get("code_version", ""),
                          getattr(self._context, "pipeline_run_id", None))
        with tempfile.TemporaryDirectory() as local:  # the artifact's URI may be remote
            report, paths = render(results, pathlib.Path(local), data, info)
            fileio.makedirs(output.uri)
            for path in paths.values():
                fileio.copy(str(path), os.path.join(output.uri, path.name), overwrite=True)
        output.set_string_custom_property("markdown_table", report_files.markdown_table(
            report_tables.display_rows(report.rows), report_tables.DISPLAY_COLUMNS))
        output.set_string_custom_property("verdicts",
                                          "\n".join(v["sentence"] for v in report.verdicts))
        output.set_int_custom_property("rows", len(report.rows))


def _gather(input_dict: Mapping[str, list[Artifact]], prefix: str) -> list[Artifact]:
    return [artifact for key in sorted(input_dict)
            if key == prefix or key.startswith(f"{prefix}_") for artifact in input_dict[key]]


class AblationReportSpec(component_spec.ComponentSpec):
    """The report's parameters and output; ``AblationReport`` derives a spec with one input per
    channel."""

    PARAMETERS = {"config_json": ExecutionParameter(type=str, optional=True),
                  "code_version": ExecutionParameter(type=str, optional=True)}
    INPUTS: dict = {}
    OUTPUTS = {REPORT_KEY: component_spec.ChannelParameter(type=AblationReportArtifact)}


Channels = channel.BaseChannel | Iterable[channel.BaseChannel]


class AblationReport(base_component.BaseComponent):
    """TFX component: the ablation report over every trained variant.

    ``AblationReport(model_runs=[...], evaluations=[...], examples=..., statistics=...,
    anomalies=..., config_json=..., code_version=...)`` takes lists of channels (or one channel,
    or a ``channel_utils.union``) of ModelRun and ModelEvaluation artifacts and declares one
    input per channel (``model_runs_0``, ...; unions split into their channels).
    """

    SPEC_CLASS = AblationReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AblationReportExecutor)

    def __init__(self, model_runs: Channels, evaluations: Channels = (),
                 examples: channel.BaseChannel | None = None,
                 statistics: channel.BaseChannel | None = None,
                 anomalies: channel.BaseChannel | None = None,
                 config_json: str = "", code_version: str = ""):
        inputs = {**_keyed(RUNS_KEY, model_runs), **_keyed(EVALUATIONS_KEY, evaluations)}
        if not any(key.startswith(RUNS_KEY) for key in inputs):
            raise ValueError("AblationReport needs at least one ModelRun channel")
        given = {key: c for key, c in (("examples", examples), ("statistics", statistics),
                                       ("anomalies", anomalies)) if c is not None}
        types = {RUNS_KEY: standard_artifacts.ModelRun,
                 EVALUATIONS_KEY: standard_artifacts.ModelEvaluation}
        declared = {key: component_spec.ChannelParameter(type=types[key.rsplit("_", 1)[0]])
                    for key in inputs}
        declared.update({key: component_spec.ChannelParameter(type=DATA_INPUTS[key])
                         for key in given})
        spec_class = type("AblationReportSpec", (AblationReportSpec,), {"INPUTS": declared})
        super().__init__(spec=spec_class(
            **inputs, **given, config_json=config_json, code_version=code_version,
            **{REPORT_KEY: channel.Channel(type=AblationReportArtifact)}))


def _keyed(prefix: str, channels: Channels) -> dict[str, channel.BaseChannel]:
    """``{prefix_0: channel, prefix_1: ...}`` over `channels`, unions split into members."""
    if isinstance(channels, channel.BaseChannel):
        channels = [channels]
    flat = [member for c in channels for member in channel_utils.get_individual_channels(c)]
    return {f"{prefix}_{i}": c for i, c in enumerate(flat)}
