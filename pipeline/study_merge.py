"""A study merged from its parts: the report inputs of a pipeline root (live, through its ML
Metadata) or of a shard folder published from one, checked to be parts of one study at one
precision, re-rendered into one report; and the publishing of a root's runs as a shard folder."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Sequence

from pipeline import run_metadata
from pipeline.config import config_json

SHARD_FIELDS = ("seeds", "first_seed", "models", "pipeline_root", "pipeline_name", "beam_args")
"""What may differ between the runs one report merges: which part of the study a run holds,
and where and how it ran; everything else (data, sizes, training) must be the same."""


@dataclasses.dataclass(frozen=True)
class RootReport:
    """What one pipeline root contributes to a report."""

    root: str
    results: list
    data: dict
    config_json: str
    code_version: str
    run_name: str | None
    component_seconds: dict[str, float]
    notes: str = ""  # free text kept with a published shard (e.g. what it no longer holds)


SHARD_FILE = "shard.json"
"""Marks a shard folder that ``publish_runs`` wrote: a root's report inputs without the root."""

TENSORBOARD = "tensorboard"
"""A shard folder's TensorBoard runs, one per (model, seed): ``tensorboard --logdir`` on it."""
HISTORY_DIGEST = "history.sha256"  # in a TensorBoard run folder: the history it was written from

RUN_FILES = ("history.json", "predictions.json.gz", "responses.json", "metrics.json")
"""What a shard folder holds per run, as ``<model>_seed<k>.<kind>``; all but the history are
optional (runs that did not finish, and shards published before they were kept)."""


def is_shard_folder(path: str) -> bool:
    """Whether `path` is a shard folder ``publish_runs`` wrote (it holds ``SHARD_FILE``)."""
    return os.path.exists(os.path.join(path, SHARD_FILE))


def read_part(path: str, pipeline_name: str | None = None) -> RootReport:
    """The report inputs of `path`: a shard folder or a pipeline root (see ``read_root``)."""
    if is_shard_folder(path):
        return read_published(path)
    return read_root(path, pipeline_name)


def read_root(pipeline_root: str, pipeline_name: str | None = None) -> RootReport:
    """What `pipeline_root` holds for a report: its runs (LIVE ModelRun and ModelEvaluation
    artifacts), data summary, configuration, code version, newest run and component times."""
    from components import report  # TFMA and TFDV: only when a report is rendered

    store = run_metadata.open_store(pipeline_root)
    name = pipeline_name or run_metadata.pipeline_name_in_store(store)
    results = report.run_results(run_metadata.live_artifacts(store, "ModelRun"),
                                 run_metadata.live_artifacts(store, "ModelEvaluation"))
    data_artifacts = [
        next(iter(run_metadata.tfx_outputs(store, name, component, key)), None) if name else None
        for component, key in (("ImageExampleGen", "examples"), ("StatisticsGen", "statistics"),
                               ("ExampleValidator", "anomalies"))]
    properties = run_metadata.report_properties(store, name) if name else {}
    return RootReport(
        pipeline_root, results, report.data_summary(*data_artifacts),
        properties.get("config_json", ""), properties.get("code_version", ""),
        run_metadata.run_name(store, run_metadata.last_run_id(store, name)) if name else None,
        {c.component: c.seconds for c in run_metadata.last_run(store, name)} if name else {})


def render_report(pipeline_roots: str | Sequence[str], output_dir: str | None = None,
                  pipeline_name: str | None = None, publish: bool = False) -> dict:
    """Renders the ablation report of one pipeline root, or merges the runs of several (shards
    of one study: other seeds or models, run one after another or on other machines), into
    `output_dir` (default: the first root's ``report``); returns the written paths. Each of
    `pipeline_roots` may also be a shard folder ``publish_runs`` wrote. With `publish`, the
    inputs are also written as shard folders under ``<output_dir>/runs`` (path ``"runs"``).

    Per root: the LIVE ModelRun and ModelEvaluation artifacts (newest per (model_name, seed)),
    the newest data artifacts and every component's wall time of the newest run of
    `pipeline_name` (default: the pipeline of the store's newest run), and the configuration
    and code version its newest AblationReport execution recorded. Raises FileNotFoundError
    for a root without a store; ValueError without ModelRun artifacts, for roots whose
    configurations differ in anything but ``SHARD_FIELDS`` or whose data differ (naming the
    difference), and for a (model, seed) run found in two roots.
    """
    from components import report  # TFMA and TFDV: only when a report is rendered

    roots = [pipeline_roots] if isinstance(pipeline_roots, str) else list(pipeline_roots)
    parts = [read_part(root, pipeline_name) for root in roots]
    _check_one_study(parts)
    results = [result for part in parts for result in part.results]
    seen: dict[tuple[str, int], str] = {}
    for part in parts:
        for result in part.results:
            if result.key in seen:
                raise ValueError(f"{result.key[0]} seed {result.key[1]} was run in both "
                                 f"{seen[result.key]} and {part.root}; merge each run once")
            seen[result.key] = part.root
    first = parts[0]
    info = report.provenance([r.history for r in results], first.config_json,
                             ", ".join(sorted({p.code_version or "unknown" for p in parts})),
                             ", ".join(str(p.run_name) for p in parts))
    info["component_seconds"] = {
        (f"{pathlib.Path(p.root).name}: {c}" if len(parts) > 1 else c): seconds
        for p in parts for c, seconds in p.component_seconds.items()}
    if len(parts) > 1:
        info["merged pipeline roots"] = [p.root for p in parts]
    sources = {pathlib.Path(p.root).name: p.data.get("source") for p in parts if p.data.get("source")}
    if sources:
        info["data read from"] = sources
    notes = {pathlib.Path(p.root).name: p.notes for p in parts if p.notes}
    if notes:
        info["shard notes"] = notes
    output = pathlib.Path(output_dir or os.path.join(roots[0], "report"))
    _, paths = report.render(results, output, first.data, info)
    if publish:
        for part in parts:
            publish_runs(part, output / "runs" / pathlib.Path(part.root).name)
        paths["runs"] = output / "runs"
    return paths


def publish_runs(part: RootReport, folder: pathlib.Path) -> list[pathlib.Path]:
    """Writes `part` as a shard folder: ``SHARD_FILE`` (configuration, code version, run id,
    component times, data summary, notes) and per run the ``RUN_FILES`` it has — small files
    (predictions gzipped) from which ``read_published`` gives back the same report inputs, so
    shards merge without their roots. Models, examples and checkpoints are never written.
    Returns the paths written."""
    record = {"config": json.loads(part.config_json) if part.config_json else None,
              "code_version": part.code_version, "run_name": part.run_name,
              "component_seconds": part.component_seconds, "data": part.data,
              "notes": part.notes}
    files: dict[str, bytes] = {SHARD_FILE: json.dumps(record, indent=2).encode()}
    for result in part.results:
        stem = f"{result.history.model}_seed{result.history.seed}"
        files[f"{stem}.history.json"] = result.history.to_json().encode()
        if result.predictions is not None:
            files[f"{stem}.predictions.json.gz"] = gzip.compress(
                result.predictions.to_json().encode(), mtime=0)
        if result.responses is not None:
            files[f"{stem}.responses.json"] = result.responses.to_json().encode()
        if result.metrics is not None:
            files[f"{stem}.metrics.json"] = json.dumps(dict(result.metrics), indent=1,
                                                       sort_keys=True).encode()
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return [folder / name for name in files] + _publish_tensorboard(part, folder / TENSORBOARD)


def _publish_tensorboard(part: RootReport, board: pathlib.Path) -> list[pathlib.Path]:
    """Writes every run's TensorBoard events (``resnet_ablation.tensorboard_logs``) from its history
    under `board`. Event files carry write times, so a run whose folder already holds the
    events of the same history (its ``HISTORY_DIGEST``) is left as it is: publishing a shard
    folder again changes no byte."""
    from resnet_ablation import tensorboard_logs

    written = []
    for result in part.results:
        text = result.history.to_json()
        digest = hashlib.sha256(text.encode()).hexdigest()
        folder = board / tensorboard_logs.run_name(result.history)
        marker = folder / HISTORY_DIGEST
        if not (marker.exists() and marker.read_text() == digest):
            shutil.rmtree(folder, ignore_errors=True)
            tensorboard_logs.write_run(result.history, str(board))
            marker.write_text(digest)
        written += sorted(folder.iterdir())
    return written


def read_published(folder: str) -> RootReport:
    """The report inputs of a shard folder ``publish_runs`` wrote; ValueError without runs."""
    from resnet_ablation.comparison import RunResult
    from resnet_ablation.contracts import LayerResponses, Predictions, RunHistory

    record = json.loads(pathlib.Path(folder, SHARD_FILE).read_text())
    results = []
    for path in sorted(pathlib.Path(folder).glob("*.history.json")):
        stem = path.name.removesuffix(".history.json")
        found = {kind: pathlib.Path(folder, f"{stem}.{kind}") for kind in RUN_FILES}
        found = {kind: p.read_bytes() for kind, p in found.items() if p.exists()}
        predictions = found.get("predictions.json.gz")
        results.append(RunResult(
            RunHistory.from_json(found["history.json"].decode()),
            Predictions.from_json(gzip.decompress(predictions).decode()) if predictions else None,
            metrics=json.loads(found["metrics.json"]) if "metrics.json" in found else None,
            responses=(LayerResponses.from_json(found["responses.json"].decode())
                       if "responses.json" in found else None)))
    if not results:
        raise ValueError(f"shard folder {folder} holds no <model>_seed<k>.history.json")
    config = record.get("config")
    return RootReport(str(folder), results, record.get("data") or {},
                      config_json(config) if config else "",
                      record.get("code_version", ""), record.get("run_name"),
                      record.get("component_seconds") or {}, record.get("notes", ""))


def _check_one_study(parts: Sequence[RootReport]) -> None:
    """Raises ValueError naming what differs between the roots' studies, data or precision.

    Data are compared by content (``content_sha256`` of each split, from ImageExampleGen)
    where both roots have it, so the same images read from another path merge; otherwise by
    the configuration's ``data`` string and the example counts."""
    first = parts[0]
    for part in parts[1:]:
        by_content = bool(first.data.get("content_sha256") and part.data.get("content_sha256"))
        differences = _differences(_study(first.config_json, by_content),
                                   _study(part.config_json, by_content))
        if differences:
            raise ValueError(f"{part.root} is not a shard of the study in {first.root}: "
                             + "; ".join(differences))
        if part.data.get("examples") != first.data.get("examples"):
            raise ValueError(f"{part.root} trained on other data than {first.root}: examples "
                             f"{part.data.get('examples')} vs {first.data.get('examples')}")
        if by_content and part.data["content_sha256"] != first.data["content_sha256"]:
            splits = sorted(split for split in first.data["content_sha256"]
                            if part.data["content_sha256"].get(split)
                            != first.data["content_sha256"][split])
            raise ValueError(f"{part.root} trained on other data than {first.root}: the images "
                             f"of split(s) {', '.join(splits)} differ in content")
    _check_one_precision(parts)


def _check_one_precision(parts: Sequence[RootReport]) -> None:
    """Raises ValueError if the runs trained in more than one precision (float32 on one machine,
    mixed_bfloat16 on another): a study's comparisons hold only within one."""
    where: dict[str, str] = {}
    for part in parts:
        for result in part.results:
            where.setdefault(result.history.precision,
                             f"{result.history.model} seed {result.history.seed} in {part.root}")
    if len(where) > 1:
        found = " vs ".join(f"{precision} ({run})" for precision, run in sorted(where.items()))
        raise ValueError(f"the runs trained in different precisions: {found}; a study merges "
                         f"runs of one precision (the profile's mixed_precision, on processors "
                         f"that run it natively)")


def _study(config_json: str, without_data: bool = False) -> dict:
    """The configuration without ``SHARD_FIELDS`` (and without ``data`` if `without_data`)."""
    config = json.loads(config_json) if config_json else {}
    dropped = SHARD_FIELDS + (("data",) if without_data else ())
    return {key: value for key, value in config.items() if key not in dropped}


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            found.append(f"{prefix}{key} is {json.dumps(x)} vs {json.dumps(y)}")
    return found
