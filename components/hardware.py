"""What the Trainer runs on and in which precision: the distribution strategy, TensorFlow's
thread pools, oneDNN, the CPU's bfloat16 units and the Keras dtype policy.

``configure_threads`` must run before TensorFlow's runtime starts, ``set_precision`` before the
model is built; ``describe_devices`` and ``onednn_enabled`` are what a run's history and the
benchmarks record about the machine.
"""

from __future__ import annotations

import tensorflow as tf

from resnet_ablation import processor
from resnet_ablation.contracts import TrainingConfig
from resnet_ablation.keras2 import keras


def distribution_strategy(replicas: int | None = None) -> tf.distribute.Strategy:
    """The strategy ``TrainingConfig.replicas`` asks for. None: MirroredStrategy over several
    visible GPUs, else the default strategy (one GPU or CPU). 1: the default strategy. N > 1:
    MirroredStrategy over the first N GPUs, or over N logical CPU devices on a machine without
    GPUs (``configure_replicas`` must have split the CPU before TensorFlow's runtime started)."""
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


def describe_devices(replicas: int | None = None) -> str:
    """What trains here: "N x GPU (names)" or "CPU: model (N cores)" (", N replicas" appended
    when `replicas` > 1 splits a CPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = {tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
                 for gpu in gpus}
        return f"{len(gpus)} x GPU ({', '.join(sorted(names))})"
    return processor.describe() + (f", {replicas} replicas" if (replicas or 1) > 1 else "")


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
