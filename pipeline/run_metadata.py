"""A pipeline root's ML Metadata, read: the store (checked before it is opened), what the last
run did per component, the artifacts it made and the report's execution properties."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sqlite3

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.config import METADATA_FILE

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
    found = latest_outputs(store, pipeline_name_in_store(store) or "", component_id, key)
    if not found:
        raise FileNotFoundError(f"{pipeline_root}: no {component_id} output {key!r}")
    return found[0].uri


def pipeline_name_in_store(store: metadata_store.MetadataStore) -> str | None:
    """The name of the pipeline with the newest run in `store`."""
    runs = pipeline_runs(store)
    return runs[-1][0] if runs else None


def tfx_outputs(store, pipeline_name: str, component_id: str, key: str) -> list:
    from tfx.types import artifact_utils

    found = latest_outputs(store, pipeline_name, component_id, key)
    types = {a.type_id: store.get_artifact_types_by_id([a.type_id])[0] for a in found}
    return [artifact_utils.deserialize_artifact(types[a.type_id], a) for a in found]


def run_name(store, run_id: int | None) -> str | None:
    if run_id is None:
        return None
    [context] = store.get_contexts_by_id([run_id])
    return context.name


def report_properties(store, pipeline_name: str) -> dict[str, str]:
    """The string exec properties of the newest AblationReport execution (config_json,
    code_version); {} when the report never ran."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.AblationReport")
    executions = store.get_executions_by_context(context.id) if context else []
    if not executions:
        return {}
    newest = max(executions, key=lambda e: e.id)
    return {key: value.string_value for key, value in newest.custom_properties.items()}
