"""Reading a pipeline root's ML Metadata (what the last run did and which artifacts it made),
and the report inputs of a root, live or published as a shard folder."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import sqlite3
from collections.abc import Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.config import METADATA_FILE, config_json

_Execution = metadata_store_pb2.Execution
_STATES = {_Execution.COMPLETE: "ran", _Execution.CACHED: "cached", _Execution.FAILED: "failed",
           _Execution.RUNNING: "running", _Execution.CANCELED: "canceled"}


@dataclasses.dataclass(frozen=True)
class ComponentRun:
    """One component's execution in a pipeline run."""

    component: str
    state: str  # ran, cached, failed, running, canceled
    seconds: float


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database
MLMD_TABLES = frozenset({"Type", "Artifact", "Execution", "Event", "Context", "MLMDEnv"})


class EmptyStoreError(FileNotFoundError):
    """A pipeline root's metadata.sqlite holds nothing yet (a run created it and stopped before
    recording anything): to a reader, no store; a new run fills it in."""


def open_store(pipeline_root: str) -> metadata_store.MetadataStore:
    """Opens <pipeline_root>/metadata.sqlite read-only: every caller only reads it (the runs
    write through TFX's own connection). Raises FileNotFoundError if it is absent,
    EmptyStoreError if it holds nothing, ValueError if it is no ML Metadata store (see
    ``check_store_file``); never creates or changes the file."""
    path = os.path.join(pipeline_root, METADATA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{pipeline_root}: no {METADATA_FILE} there; is it a pipeline root?")
    check_store_file(path)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def check_store_file(path: str) -> None:
    """Refuses, before ML Metadata sees it (which would write a fresh schema into an empty
    file, or fail on a foreign one with an SQL error), a metadata.sqlite that is empty
    (0 bytes, or an SQLite database without tables: EmptyStoreError) or that is no SQLite
    database or lacks ML Metadata's tables (``MLMD_TABLES``: ValueError). Reads the header,
    then the table names through SQLite, which never writes a valid file (it only rolls back
    the journal of a writer that was killed, as any connection must)."""
    empty = EmptyStoreError(f"{path} is empty: no run has been recorded in it; run a pipeline "
                            f"there first, or pass the root of one that ran")
    corrupt = ValueError(f"{path} is not an ML Metadata store (corrupt?): restore it, or move "
                         f"it away and run the pipeline again")
    with open(path, "rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if not header:
        raise empty
    if header != SQLITE_HEADER:
        raise corrupt
    try:
        tables = _sqlite_tables(path)
    except sqlite3.OperationalError:
        raise  # locked by a writer, or unreadable: no verdict on the content
    except sqlite3.DatabaseError:
        raise corrupt from None
    if not tables:
        raise empty
    if not MLMD_TABLES <= tables:
        raise corrupt


def _sqlite_tables(path: str) -> set[str]:
    """The table names of the SQLite database at `path`, opened without the right to create
    it (``mode=rw``)."""
    uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=rw"
    connection = sqlite3.connect(uri, uri=True)
    try:
        return {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()


def _node_name(store, execution_id: int) -> str:
    node = next(c for c in store.get_contexts_by_execution(execution_id) if c.type == "node")
    return node.name.split(".", 1)[1]  # "<pipeline>.<component id>"


def last_run_id(store: metadata_store.MetadataStore, pipeline_name: str) -> int | None:
    """MLMD id of `pipeline_name`'s newest pipeline_run context, or None."""
    runs = [c.id for c in store.get_contexts_by_type("pipeline_run")
            if any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))]
    return max(runs, default=None)


def pipeline_runs(store: metadata_store.MetadataStore) -> list[tuple[str, str, list[ComponentRun]]]:
    """Every recorded run, oldest first: (pipeline name, run id, its components)."""
    runs = []
    for context in sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id):
        parents = [p.name for p in store.get_parent_contexts_by_context(context.id)]
        runs.append((parents[0] if parents else "?", context.name, _components(store, context.id)))
    return runs


def last_run(store: metadata_store.MetadataStore, pipeline_name: str) -> list[ComponentRun]:
    """The components of `pipeline_name`'s newest run, in execution order."""
    run_id = last_run_id(store, pipeline_name)
    return [] if run_id is None else _components(store, run_id)


def _components(store: metadata_store.MetadataStore, run_id: int) -> list[ComponentRun]:
    executions = sorted(store.get_executions_by_context(run_id), key=lambda e: e.id)
    return [ComponentRun(_node_name(store, e.id), _STATES.get(e.last_known_state, "unknown"),
                         (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000)
            for e in executions]


def latest_outputs(store: metadata_store.MetadataStore, pipeline_name: str, component_id: str,
                   key: str) -> list[metadata_store_pb2.Artifact]:
    """Output `key` of the newest successful (run or cached) execution of a component."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{component_id}")
    if context is None:
        return []
    done = [e for e in store.get_executions_by_context(context.id)
            if e.last_known_state in (_Execution.COMPLETE, _Execution.CACHED)]
    if not done:
        return []
    events = store.get_events_by_execution_ids([max(done, key=lambda e: e.id).id])
    ids = [e.artifact_id for e in events
           if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
           and e.path.steps and e.path.steps[0].key == key]
    return list(store.get_artifacts_by_id(ids))


def live_artifacts(store: metadata_store.MetadataStore, type_name: str) -> list:
    """TFX Artifacts of every LIVE artifact of `type_name` in `store` (none if the type is not
    registered)."""
    from ml_metadata import errors
    from tfx.types import artifact_utils

    try:
        artifact_type = store.get_artifact_type(type_name)
    except errors.NotFoundError:
        return []
    return [artifact_utils.deserialize_artifact(artifact_type, a)
            for a in store.get_artifacts_by_type(type_name)
            if a.state == metadata_store_pb2.Artifact.LIVE]


def newest_output_uri(pipeline_root: str, component_id: str, key: str) -> str:
    """The URI of output `key` of `component_id`'s newest successful execution in the root's
    newest pipeline; FileNotFoundError if there is none."""
    store = open_store(pipeline_root)
    found = latest_outputs(store, _pipeline_name(store) or "", component_id, key)
    if not found:
        raise FileNotFoundError(f"{pipeline_root}: no {component_id} output {key!r}")
    return found[0].uri


def _pipeline_name(store: metadata_store.MetadataStore) -> str | None:
    """The name of the pipeline with the newest run in `store`."""
    runs = pipeline_runs(store)
    return runs[-1][0] if runs else None


def _tfx_outputs(store, pipeline_name: str, component_id: str, key: str) -> list:
    from tfx.types import artifact_utils

    found = latest_outputs(store, pipeline_name, component_id, key)
    types = {a.type_id: store.get_artifact_types_by_id([a.type_id])[0] for a in found}
    return [artifact_utils.deserialize_artifact(types[a.type_id], a) for a in found]


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

    store = open_store(pipeline_root)
    name = pipeline_name or _pipeline_name(store)
    results = report.run_results(live_artifacts(store, "ModelRun"),
                                 live_artifacts(store, "ModelEvaluation"))
    data_artifacts = [
        next(iter(_tfx_outputs(store, name, component, key)), None) if name else None
        for component, key in (("ImageExampleGen", "examples"), ("StatisticsGen", "statistics"),
                               ("ExampleValidator", "anomalies"))]
    properties = _report_properties(store, name) if name else {}
    return RootReport(
        pipeline_root, results, report.data_summary(*data_artifacts),
        properties.get("config_json", ""), properties.get("code_version", ""),
        _run_name(store, last_run_id(store, name)) if name else None,
        {c.component: c.seconds for c in last_run(store, name)} if name else {})


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
    """Writes every run's TensorBoard events (``components.tensorboard_logs``) from its history
    under `board`. Event files carry write times, so a run whose folder already holds the
    events of the same history (its ``HISTORY_DIGEST``) is left as it is: publishing a shard
    folder again changes no byte."""
    from components import tensorboard_logs

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
    from components.ablation import RunResult
    from components.contracts import LayerResponses, Predictions, RunHistory

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


def _run_name(store, run_id: int | None) -> str | None:
    if run_id is None:
        return None
    [context] = store.get_contexts_by_id([run_id])
    return context.name


def _report_properties(store, pipeline_name: str) -> dict[str, str]:
    """The string exec properties of the newest AblationReport execution (config_json,
    code_version); {} when the report never ran."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.AblationReport")
    executions = store.get_executions_by_context(context.id) if context else []
    if not executions:
        return {}
    newest = max(executions, key=lambda e: e.id)
    return {key: value.string_value for key, value in newest.custom_properties.items()}
