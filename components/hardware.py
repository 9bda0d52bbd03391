"""What the Trainer runs on and in which precision: the distribution strategy, the workers of
a multi-worker run, TensorFlow's thread pools, oneDNN, the CPU's bfloat16 units and the Keras
dtype policy.

``configure_threads`` must run before TensorFlow's runtime starts, ``set_precision`` before the
model is built; ``describe_devices`` and ``onednn_enabled`` are what a run's history and the
benchmarks record about the machine.

Several workers (``TF_CONFIG`` naming a chief and workers, as Vertex AI's worker pools and
Kubeflow's TFJob set it; ``worker_cluster``) train under ``MultiWorkerMirroredStrategy``,
created once per process before TensorFlow's runtime starts. Every worker runs the whole
Trainer, saving included (reading replicated variables is collective work), but only the
chief's files land where readers look: every write goes to ``write_path(path)``, which is
`path` on the chief and a scratch folder of the worker's own on its local disk elsewhere
(``remove_worker_scratch`` deletes it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import tempfile

import tensorflow as tf

from resnet_ablation import processor
from resnet_ablation.contracts import TrainingConfig
from resnet_ablation.keras2 import keras

TF_CONFIG = "TF_CONFIG"
# What `ablation compile --trainer-workers N` records in each Trainer task's container: the
# number of workers the task was compiled for, checked against TF_CONFIG (``check_workers``).
WORKERS_ENV = "ABLATION_TRAINER_WORKERS"
WORKER_ROLES = ("chief", "worker")  # MultiWorkerMirroredStrategy's; no ps, no evaluator


@dataclasses.dataclass(frozen=True)
class WorkerCluster:
    """The workers of a training run as one of them sees it: `workers` processes (the chief
    and the other workers), this one at `index` among them (0: the chief)."""

    workers: int = 1
    index: int = 0

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def worker_cluster(tf_config: str | None = None) -> WorkerCluster:
    """The workers `tf_config` names (default: the ``TF_CONFIG`` environment variable), as
    Vertex AI and Kubeflow's TFJob write it: ``{"cluster": {"chief": [HOST:PORT], "worker":
    [...]}, "task": {"type": "chief" | "worker", "index": I}}``, or workers only, worker 0
    then the chief. Unset, empty or without a cluster: one worker, the chief. Raises a
    one-line ValueError naming TF_CONFIG when it is malformed or names other roles (ps,
    evaluator)."""
    raw = os.environ.get(TF_CONFIG, "") if tf_config is None else tf_config
    if not raw.strip():
        return WorkerCluster()
    try:
        config = json.loads(raw)
    except ValueError:
        raise _malformed(raw, "not JSON") from None
    if not isinstance(config, dict):
        raise _malformed(raw, "not a JSON object")
    cluster = config.get("cluster") or {}
    if not cluster:
        return WorkerCluster()
    _check_cluster(raw, cluster)
    return WorkerCluster(sum(len(cluster.get(role, ())) for role in WORKER_ROLES),
                         _task_index(raw, cluster, config.get("task")))


def _check_cluster(raw: str, cluster) -> None:
    """Raises ValueError unless `cluster` maps chief/worker to lists of HOST:PORT strings, with
    one chief at most."""
    if not isinstance(cluster, dict):
        raise _malformed(raw, "cluster is not an object")
    others = sorted(set(cluster) - set(WORKER_ROLES))
    if others:
        raise _malformed(raw, f"cluster names {', '.join(others)}; the Trainer's "
                              f"MultiWorkerMirroredStrategy takes a chief and workers only")
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(
                isinstance(a, str) and re.fullmatch(r"\S+:\d+", a) for a in addresses):
            raise _malformed(raw, f"cluster.{role} is not a list of HOST:PORT strings")
    if len(cluster.get("chief", ())) > 1:
        raise _malformed(raw, "more than one chief")


def _task_index(raw: str, cluster: dict, task) -> int:
    """This task's position among the chief and the workers: the chief 0, then the workers."""
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise _malformed(raw, "task.type must be one of the cluster's roles")
    index, role = task.get("index", 0), task["type"]
    if type(index) is not int or not 0 <= index < len(cluster[role]):
        raise _malformed(raw, f"task.index must be 0 to {len(cluster[role]) - 1} for {role}")
    return index + (1 if role == "worker" and cluster.get("chief") else 0)


def _malformed(raw: str, reason: str) -> ValueError:
    """The one-line error for a malformed TF_CONFIG `raw` (shown up to 200 characters)."""
    shown = raw if len(raw) <= 200 else raw[:197] + "..."
    return ValueError(f"TF_CONFIG is malformed: {reason}; got {shown!r}")


def check_workers(cluster: WorkerCluster) -> None:
    """Raises a one-line RuntimeError when ``WORKERS_ENV`` (a Trainer task compiled with
    ``--trainer-workers N``) asks for another number of workers than `cluster` has: a task
    started as one pod, without a TF_CONFIG naming N workers, must not train on one alone."""
    wanted = os.environ.get(WORKERS_ENV)
    if wanted and wanted.strip() != str(cluster.workers):
        raise RuntimeError(
            f"{WORKERS_ENV}={wanted}: this Trainer was compiled for {wanted} workers, but "
            f"{TF_CONFIG} names {cluster.workers}; start it as that many workers (a Vertex AI "
            f"CustomJob, a Kubeflow TFJob: kubeflow/README.md) or compile with "
            f"--trainer-workers {cluster.workers}")


def distribution_strategy(replicas: int | None = None) -> tf.distribute.Strategy:
    """The strategy ``TrainingConfig.replicas`` asks for. None: MirroredStrategy over several
    visible GPUs, else the default strategy (one GPU or CPU). 1: the default strategy. N > 1:
    MirroredStrategy over the first N GPUs, or over N logical CPU devices on a machine without
    GPUs (``configure_replicas`` must have split the CPU before TensorFlow's runtime started).

    Several workers in TF_CONFIG (``worker_cluster``): ``multi_worker_strategy``, whatever
    `replicas` is unless it is above 1 (ValueError: each worker trains on all its GPUs or its
    CPU; logical CPU replicas do not combine with workers)."""
    workers = worker_cluster().workers
    if workers > 1:
        if (replicas or 1) > 1:
            raise ValueError(
                f"replicas = {replicas} does not combine with the {workers} workers {TF_CONFIG} "
                f"names: each worker trains on all its GPUs (or its CPU); leave replicas unset")
        return multi_worker_strategy()
    if replicas is None:
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if replicas == 1:
        return tf.distribute.get_strategy()
    devices = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))
    if len(devices) < replicas:
        raise RuntimeError(f"replicas = {replicas}, but this process has {len(devices)} "
                           f"{devices[0].device_type if devices else 'CPU'} device(s)")
    return tf.distribute.MirroredStrategy([device.name for device in devices[:replicas]])


@functools.cache
def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """This process's MultiWorkerMirroredStrategy over the workers TF_CONFIG names (the same
    object on every call: collective ops are enabled once per process). It must be created
    before TensorFlow's runtime starts (before any tensor or dataset exists: ``run_fn`` does it
    right after the thread pools); later it raises RuntimeError. On GPUs the all-reduce is
    TensorFlow's choice (NCCL), on CPUs gRPC ring all-reduce."""
    from tensorflow.python.eager import context

    if context.context()._context_handle is not None:  # noqa: SLF001  (no public accessor)
        raise RuntimeError("MultiWorkerMirroredStrategy must be created before TensorFlow's "
                           "runtime starts in this process (run_fn creates it first)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def wait_for_workers(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker got here (a collective all-reduce), so the chief's files are
    complete when any worker returns (TFX's Trainer then checks that the serving model
    exists). Nothing to wait for in a single-worker run."""
    if worker_cluster().workers > 1:
        tf.function(lambda: strategy.reduce(tf.distribute.ReduceOp.SUM,
                                            strategy.run(lambda: tf.constant(1.0)), axis=None))()


def write_path(path: str) -> str:
    """Where this process writes the file or folder `path`: `path` itself on the chief (and in
    every single-worker run); on another worker of a multi-worker run the same path inside its
    scratch folder on local disk (``worker_scratch``). Every worker writes what the chief
    writes, as TensorFlow's multi-worker saving requires of a SavedModel and a checkpoint,
    but only the chief's files land at `path`."""
    if worker_cluster().is_chief:
        return path
    relative = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*)://", r"\1/", path).lstrip("/")
    return os.path.join(worker_scratch(), relative)


@functools.cache
def worker_scratch() -> str:
    """A new local folder, made on first use, where a non-chief worker writes (``write_path``);
    ``remove_worker_scratch`` deletes it."""
    return tempfile.mkdtemp(prefix=f"ablation-worker{worker_cluster().index}-")


def remove_worker_scratch() -> None:
    """Deletes this process's scratch folder, if it made one, and logs it."""
    if worker_scratch.cache_info().currsize:
        shutil.rmtree(worker_scratch(), ignore_errors=True)
        print(f"Removed worker scratch folder {worker_scratch()}", flush=True)
        worker_scratch.cache_clear()


def configure_replicas(replicas: int | None) -> None:
    """Splits the CPU into `replicas` logical devices when there is no GPU (nothing for None,
    1, or with GPUs). Like the thread pools, only before TensorFlow's runtime starts: later,
    with another split in place, it raises RuntimeError."""
    if replicas is None or replicas == 1 or tf.config.list_physical_devices("GPU"):
        return
    [cpu] = tf.config.list_physical_devices("CPU")
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        raise RuntimeError(
            f"replicas = {replicas} cannot be applied: TensorFlow's runtime already started "
            "in this process with another CPU split. Start the run in a new process "
            "(ablation run does this for you).") from None


def describe_devices(replicas: int | None = None, workers: int = 1) -> str:
    """What trains here: "N x GPU (names)" or "CPU: model (N cores)" (", N replicas" appended
    when `replicas` > 1 splits a CPU), ", N workers" appended for several workers (each
    worker's devices described)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = {tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
                 for gpu in gpus}
        devices = f"{len(gpus)} x GPU ({', '.join(sorted(names))})"
    else:
        devices = processor.describe() + (f", {replicas} replicas" if (replicas or 1) > 1 else "")
    return devices + (f", {workers} workers" if workers > 1 else "")


def configure_threads(training: TrainingConfig) -> None:
    """Fixes TensorFlow's thread pools to ``training.intra_op_threads`` (inter-op 1), if set.

    Pools can only be sized before TensorFlow's runtime starts: call it first thing in the
    process (``local_runner.run`` does; a Trainer in its own process, as on Kubeflow, does it in
    ``run_fn``). Too late, with other sizes already in place, it raises RuntimeError."""
    threads = training.intra_op_threads
    if threads is None:
        return
    current = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    if current == (threads, 1):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        raise RuntimeError(
            f"intra_op_threads = {threads} cannot be applied: TensorFlow already runs with "
            f"{current[0]} intra-op / {current[1]} inter-op threads in this process. Start "
            "the run in a new process (ablation run does this for you).") from None


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs its oneDNN kernels (``components`` turns them on
    where TensorFlow would leave them off; see its docstring)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (``processor.has_bfloat16``)."""
    return processor.has_bfloat16()


def precision_policy(mode: str) -> str:
    """The Keras dtype policy ``TrainingConfig.mixed_precision`` = `mode` means here: on a GPU
    mixed_float16 (auto or on); on a CPU mixed_bfloat16 (on, or auto when ``cpu_has_bfloat16``);
    float32 otherwise and always for off; mixed_float16 everywhere for float16."""
    if mode == "off":
        return "float32"
    if mode == "float16":
        return "mixed_float16"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if mode == "on" or cpu_has_bfloat16() else "float32"


def set_precision(mode: str) -> str:
    """Sets the global Keras dtype policy to ``precision_policy(mode)``; returns its name."""
    policy = precision_policy(mode)
    keras.mixed_precision.set_global_policy(policy)
    return policy
