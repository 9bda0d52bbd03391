"""Runs the pipeline with TFX's LocalDagRunner; also the file the ``tfx`` CLI's local engine runs.

``tfx pipeline create --engine=local --pipeline_path=pipeline/local_runner.py`` executes this
file to find the pipeline; ``tfx run create --engine=local --pipeline_name=NAME`` runs it. The
profile comes from ``ABLATION_PROFILE`` (default: smoke), optionally overridden by the JSON
config in ``ABLATION_CONFIG``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pathlib
import re
import shutil
import socket
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a file by the tfx CLI: make the repo importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pipeline import config as config_lib

CONFIG_ENV, PROFILE_ENV = "ABLATION_CONFIG", "ABLATION_PROFILE"
LOCK_FILE = ".ablation.lock"  # held by the run using the pipeline root (exclusive_root)
TMP_DIR = ".tmp"  # the run's temp dir, under the pipeline root
DEFAULT_PROFILE = "smoke"


class _ComponentRecords(logging.Handler):
    """Passes TFX's "Component X is running/finished." records to a StudyProgress."""

    _PATTERN = re.compile(r"Component (\S+) is (running|finished)\.")

    def __init__(self, progress):
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        match = self._PATTERN.match(record.getMessage())
        if match and match.group(2) == "running":
            self.progress.component_started(match.group(1))
        elif match:
            self.progress.component_finished(match.group(1))


class _KnownNoise(logging.Filter):
    """Drops TFX 1.21 warnings that every local run repeats and that need no action (ML
    Metadata 1.21 removed ZetaSQL queries; TFX falls back to plain ones)."""

    _MESSAGES = ("ArtifactQuery.property_predicate is not supported",
                 "Fallback to non-ZetaSQL contexts execution query")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self._MESSAGES)


@contextlib.contextmanager
def _study_progress(config: config_lib.PipelineConfig, data_only: bool):
    """Shows the run's progress (``pipeline.study_progress``): TFX's component records and the
    Trainers' epochs go to it, the rest of TFX's INFO records are not printed."""
    from absl import logging as absl_logging

    from pipeline.pipeline import trainer_ids
    from pipeline.study_progress import StudyProgress, relative_costs
    from resnet_ablation import progress_events

    trainers = [] if data_only else trainer_ids(config)
    costs = relative_costs(config.models, config.image_size) if trainers else {}
    progress = StudyProgress(trainers, config.training.epochs, costs)
    absl_logger = logging.getLogger("absl")
    records = _ComponentRecords(progress)
    noise = _KnownNoise()
    quiet = [(h, h.level) for h in logging.getLogger().handlers]
    for handler, _ in quiet:
        handler.setLevel(max(handler.level, logging.WARNING))
        handler.addFilter(noise)
    # absl's verbosity, not just its logger's level: TensorFlow's SavedModel export lowers the
    # verbosity for a moment and then restores it from absl's flag, which would silence the
    # component records from the first export on
    previous_verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger.addHandler(records)
    try:
        with progress_events.listen(progress.event):
            yield progress
    finally:
        progress.close()
        absl_logger.removeHandler(records)
        absl_logging.set_verbosity(previous_verbosity)
        for handler, level in quiet:
            handler.setLevel(level)
            handler.removeFilter(noise)


def store_effective_config(config: config_lib.PipelineConfig) -> pathlib.Path | None:
    """Writes the effective config to <root>/configs/<fingerprint>.json (local roots only)."""
    if config_lib.is_uri(config.pipeline_root):
        return None
    path = pathlib.Path(config.pipeline_root, "configs", f"{config.fingerprint()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json())
    return path


class RootInUseError(RuntimeError):
    """Another process is running a pipeline on the same pipeline root."""


@contextlib.contextmanager
def exclusive_root(pipeline_root: str):
    """Holds `pipeline_root` for one run: an exclusive lock on ``<root>/LOCK_FILE`` (raises
    RootInUseError at once, naming the holder, if another process holds it), and a private
    temporary folder ``<root>/TMP_DIR`` for everything the run's processes put in the temp
    dir (TFX's ephemeral package builds, Beam's staging), removed when the run ends.
    Remote roots are the orchestrator's business: nothing is done for them."""
    if config_lib.is_uri(pipeline_root):
        yield
        return
    os.makedirs(pipeline_root, exist_ok=True)
    with open(os.path.join(pipeline_root, LOCK_FILE), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RootInUseError(_in_use_message(pipeline_root, holder)) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}, since "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        lock.flush()
        with _private_tmp(os.path.join(pipeline_root, TMP_DIR)):
            yield


def _refuse_if_in_use(pipeline_root: str) -> None:
    """Raises RootInUseError, naming the holder, if a run holds `pipeline_root` now; writes
    nothing (``exclusive_root`` takes the lock later, after the imports and the build)."""
    if not config_lib.is_uri(pipeline_root) and root_in_use(pipeline_root):
        holder = pathlib.Path(pipeline_root, LOCK_FILE).read_text().strip() or "another process"
        raise RootInUseError(_in_use_message(pipeline_root, holder))


def _in_use_message(pipeline_root: str, holder: str) -> str:
    return (f"pipeline root {pipeline_root} is in use by {holder}: wait for that run to "
            f"finish, or choose another --pipeline-root")


def root_in_use(pipeline_root: str) -> bool:
    """Whether a run holds `pipeline_root`'s lock now."""
    path = os.path.join(pipeline_root, LOCK_FILE)
    if not os.path.exists(path):
        return False
    with open(path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def _private_tmp(path: str):
    shutil.rmtree(path, ignore_errors=True)  # a killed run's leftovers
    os.makedirs(path)
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = path, path
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[0]
        tempfile.tempdir = saved[1]
        shutil.rmtree(path, ignore_errors=True)


def run(config: config_lib.PipelineConfig, *, data_only: bool = False) -> list:
    """Validates `config`, runs the pipeline locally, prints and returns what each component did."""
    config_lib.validate(config)  # before TFX loads: a bad config fails in a moment
    _refuse_if_in_use(config.pipeline_root)  # and a busy root too (exclusive_root re-checks)
    from components.hardware import configure_threads

    configure_threads(config.training)  # before any component starts TensorFlow's runtime
    pipeline = _build(config, data_only)  # before anything is written under the root
    with exclusive_root(config.pipeline_root):
        return _run(config, pipeline, data_only)


def _build(config: config_lib.PipelineConfig, data_only: bool):
    from pipeline.pipeline import create_pipeline

    try:
        return create_pipeline(config, data_only=data_only)
    except ValueError as error:  # e.g. a tfds name tensorflow-datasets does not know
        raise config_lib.ConfigError(str(error)) from None


def _run(config: config_lib.PipelineConfig, pipeline, data_only: bool) -> list:
    from tfx import v1 as tfx

    from pipeline import run_metadata

    stored = store_effective_config(config)
    print(f"Pipeline {config.pipeline_name} (profile {config.profile}), root {config.pipeline_root}"
          + (f", config {stored}" if stored else ""), flush=True)
    started = time.perf_counter()
    previous_run = _last_run_id(config)
    with _study_progress(config, data_only):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    # `tfx pipeline create` only reads the pipeline: no store yet, or no new run in it
    if (previous_run is None and not os.path.exists(config.metadata_path)):
        return []
    store = run_metadata.open_store(config.pipeline_root)  # one connection for what follows
    if run_metadata.last_run_id(store, config.pipeline_name) == previous_run:
        return []
    runs = run_metadata.last_run(store, config.pipeline_name)
    for component in runs:
        print(f"  {component.component:<40} {component.state:<7} {component.seconds:8.1f} s")
    cached = sum(component.state == "cached" for component in runs)
    print(f"Pipeline finished in {time.perf_counter() - started:.1f} s "
          f"({len(runs)} components, {cached} from cache)", flush=True)
    if not data_only:
        print_report(config, store)
    return runs


def _last_run_id(config: config_lib.PipelineConfig) -> int | None:
    from pipeline import run_metadata

    try:
        return run_metadata.last_run_id(run_metadata.open_store(config.pipeline_root), config.pipeline_name)
    except FileNotFoundError:
        return None


def print_report(config: config_lib.PipelineConfig, store=None) -> None:
    """Re-renders the report into <root>/report with every component's wall time (which the
    pipeline's own AblationReport artifact cannot know), then prints its title, per-model
    table, verdicts and data warnings for a terminal (``report_files.terminal_summary``), and
    where both copies are: what a user must see last. `store`: the root's
    open ML Metadata store, if the caller has one."""
    from pipeline import run_metadata, study_merge
    from resnet_ablation import report_files

    store = store or run_metadata.open_store(config.pipeline_root)
    published = run_metadata.latest_outputs(store, config.pipeline_name, "AblationReport", "report")
    if not published:
        return
    paths = study_merge.render_report(config.pipeline_root, pipeline_name=config.pipeline_name)
    print("\n" + report_files.terminal_summary(json.loads(paths["json"].read_text())), end="")
    html = report_files.REPORT_FILES["html"]
    print(f"\nReport: {paths['html']}\n(the pipeline's artifact, with lineage: "
          f"{pathlib.Path(published[0].uri, html)})")


def config_from_environment() -> config_lib.PipelineConfig:
    """The config the tfx CLI path runs: ABLATION_CONFIG (JSON) or ABLATION_PROFILE."""
    if os.environ.get(CONFIG_ENV):
        path = pathlib.Path(os.environ[CONFIG_ENV])
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise config_lib.ConfigError(f"{CONFIG_ENV}={path}: {error}") from None
        if not isinstance(values, dict):
            raise config_lib.ConfigError(f"{CONFIG_ENV}={path}: expected a JSON object of "
                                         f"PipelineConfig settings, got {values!r:.60}")
        return config_lib.from_dict(values, where=f"{CONFIG_ENV}={path}")
    return config_lib.load_profile(os.environ.get(PROFILE_ENV, DEFAULT_PROFILE))


if __name__ == "__main__":
    # Under `tfx pipeline create`, the CLI patches LocalDagRunner.run to capture the pipeline.
    try:
        environment_config = config_lib.validate(config_from_environment())
    except config_lib.ConfigError as error:
        print(f"{pathlib.Path(__file__).name}: {error}", file=sys.stderr)
        sys.exit(2)
    run(environment_config)
