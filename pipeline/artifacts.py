"""Reading a pipeline root's ML Metadata: what the last run did and which artifacts it made."""

from __future__ import annotations

import dataclasses
import os

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


def open_store(pipeline_root: str) -> metadata_store.MetadataStore:
    """Opens <pipeline_root>/metadata.sqlite; raises FileNotFoundError if it is absent."""
    path = os.path.join(pipeline_root, METADATA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{pipeline_root}: no {METADATA_FILE} there; is it a pipeline root?")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    return metadata_store.MetadataStore(config)


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


def _pipeline_name(store: metadata_store.MetadataStore) -> str | None:
    """The name of the pipeline with the newest run in `store`."""
    runs = pipeline_runs(store)
    return runs[-1][0] if runs else None


def _tfx_outputs(store, pipeline_name: str, component_id: str, key: str) -> list:
    from tfx.types import artifact_utils

    found = latest_outputs(store, pipeline_name, component_id, key)
    types = {a.type_id: store.get_artifact_types_by_id([a.type_id])[0] for a in found}
    return [artifact_utils.deserialize_artifact(types[a.type_id], a) for a in found]


def render_report(pipeline_root: str, output_dir: str | None = None,
                  pipeline_name: str | None = None) -> dict:
    """Re-renders the ablation report from ``pipeline_root``'s ML Metadata into `output_dir`
    (default ``pipeline_root/report``); returns the written paths. `pipeline_name` defaults to
    the pipeline of the newest run in the store.

    Uses the LIVE ModelRun and ModelEvaluation artifacts (newest per (model_name, seed)), the
    newest data artifacts of the newest pipeline run, the configuration and code version the
    newest AblationReport execution recorded and, in the provenance, every component's wall
    time in that run. Raises FileNotFoundError without
    the store and ValueError without ModelRun artifacts.
    """
    import pathlib

    from components import report

    store = open_store(pipeline_root)
    name = pipeline_name or _pipeline_name(store)
    results = report.run_results(live_artifacts(store, "ModelRun"),
                                 live_artifacts(store, "ModelEvaluation"))
    data_artifacts = [
        next(iter(_tfx_outputs(store, name, component, key)), None) if name else None
        for component, key in (("ImageExampleGen", "examples"), ("StatisticsGen", "statistics"),
                               ("ExampleValidator", "anomalies"))]
    properties = _report_properties(store, name) if name else {}
    run_id = last_run_id(store, name) if name else None
    info = report.provenance([r.history for r in results], properties.get("config_json", ""),
                             properties.get("code_version", ""), _run_name(store, run_id))
    info["component_seconds"] = {c.component: c.seconds for c in last_run(store, name)} if name else {}
    _, paths = report.render(results, pathlib.Path(output_dir or os.path.join(pipeline_root, "report")),
                             report.data_summary(*data_artifacts), info)
    return paths


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
