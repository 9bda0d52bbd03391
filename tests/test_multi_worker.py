"""Multi-worker training (MultiWorkerMirroredStrategy) run for real on the CPU: two worker
processes on 127.0.0.1 train through the Trainer's run_fn and agree with one process training
the same global batch on two replicas (MirroredStrategy over two logical CPU devices), and only
the chief writes outputs. Also TF_CONFIG's parsing, the chief check every write goes through,
and what is refused.

Collective ops can only be enabled before TensorFlow's runtime starts, so every multi-worker
run happens in fresh child processes, each with its TF_CONFIG. TensorFlow's gRPC server
listens on every interface whatever address TF_CONFIG gives, so the two workers run in a
network namespace of their own that holds only the loopback interface (``unshare``), and the
test is skipped where none can be made."""

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from components import hardware, trainer
from components.training_callbacks import write_text
from resnet_ablation.contracts import Predictions
from tests.test_trainer import _CHILD, REPO, TIMINGS, TINY, fn_args

# --------------------------------------------------------------------------- TF_CONFIG


def _tf_config(cluster: dict, task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


CHIEF_AND_WORKERS = {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]}
WORKERS_ONLY = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}


@pytest.mark.parametrize("tf_config, expected", [
    (None, hardware.WorkerCluster(1, 0)),
    ("", hardware.WorkerCluster(1, 0)),
    ('{"cluster": {}, "task": {}}', hardware.WorkerCluster(1, 0)),
    (_tf_config(CHIEF_AND_WORKERS, "chief", 0), hardware.WorkerCluster(3, 0)),
    (_tf_config(CHIEF_AND_WORKERS, "worker", 0), hardware.WorkerCluster(3, 1)),
    (_tf_config(CHIEF_AND_WORKERS, "worker", 1), hardware.WorkerCluster(3, 2)),
    (_tf_config(WORKERS_ONLY, "worker", 0), hardware.WorkerCluster(2, 0)),
    (_tf_config(WORKERS_ONLY, "worker", 1), hardware.WorkerCluster(2, 1)),
    (_tf_config({"chief": ["localhost:2222"]}, "chief", 0), hardware.WorkerCluster(1, 0)),
])
def test_tf_config_names_the_workers_and_the_chief(monkeypatch, tf_config, expected):
    """Vertex AI's shape (a chief, then workers) and TFJob's without a chief (worker 0 is the
    chief) give the number of workers and this task's index, 0 for the chief."""
    if tf_config is None:
        monkeypatch.delenv(hardware.TF_CONFIG, raising=False)
    else:
        monkeypatch.setenv(hardware.TF_CONFIG, tf_config)
    cluster = hardware.worker_cluster()
    assert cluster == expected
    assert cluster.is_chief == (expected.index == 0)


@pytest.mark.parametrize("tf_config, reason", [
    ("{cluster: chief}", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"cluster": ["a:1"], "task": {}}', "cluster is not an object"),
    (_tf_config({"worker": ["a:1"], "ps": ["b:1"]}, "worker", 0), "cluster names ps"),
    (_tf_config({"worker": ["a:1"], "evaluator": ["b:1"]}, "worker", 0), "cluster names evaluator"),
    (_tf_config({"worker": "a:1,b:1"}, "worker", 0), "cluster.worker is not a list of HOST:PORT"),
    (_tf_config({"worker": ["a"]}, "worker", 0), "cluster.worker is not a list of HOST:PORT"),
    (_tf_config({"chief": ["a:1", "b:1"]}, "chief", 0), "more than one chief"),
    (json.dumps({"cluster": WORKERS_ONLY}), "task.type must be one of the cluster's roles"),
    (_tf_config(WORKERS_ONLY, "chief", 0), "task.type must be one of the cluster's roles"),
    (_tf_config(WORKERS_ONLY, "worker", 2), "task.index must be 0 to 1 for worker"),
    (_tf_config(WORKERS_ONLY, "worker", "1"), "task.index must be 0 to 1 for worker"),
])
def test_a_malformed_tf_config_is_a_one_line_error_naming_it(tf_config, reason):
    with pytest.raises(ValueError, match="TF_CONFIG is malformed") as raised:
        hardware.worker_cluster(tf_config)
    message = str(raised.value)
    assert reason in message and "\n" not in message


def test_a_non_chief_writes_into_a_scratch_folder_it_removes(monkeypatch, tmp_path):
    """``write_path`` is the path itself on the chief and inside a worker's own local scratch
    folder elsewhere (URIs too); the Trainer's file writes go through it."""
    target = tmp_path / "out" / "history.json"
    monkeypatch.setenv(hardware.TF_CONFIG, _tf_config(WORKERS_ONLY, "worker", 0))
    assert hardware.write_path(str(target)) == str(target)
    write_text(str(target), "chief")
    assert target.read_text() == "chief"

    monkeypatch.setenv(hardware.TF_CONFIG, _tf_config(WORKERS_ONLY, "worker", 1))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "local"))
    (tmp_path / "local").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    try:
        scratch = pathlib.Path(hardware.worker_scratch())
        assert scratch.parent == tmp_path / "local" and scratch.name.startswith("ablation-worker1-")
        assert hardware.write_path(str(target)) == str(scratch / str(target).lstrip("/"))
        assert hardware.write_path("gs://bucket/root/model") == str(scratch / "gs/bucket/root/model")
        write_text(str(target), "worker 1")
        assert target.read_text() == "chief"  # untouched
        assert (scratch / str(target).lstrip("/")).read_text() == "worker 1"
    finally:
        hardware.remove_worker_scratch()
    assert not scratch.exists() and not list((tmp_path / "local").iterdir())
    hardware.remove_worker_scratch()  # nothing left to remove: no error


def test_a_trainer_compiled_for_n_workers_refuses_another_count(monkeypatch):
    """``ABLATION_TRAINER_WORKERS`` (``--trainer-workers``) must match TF_CONFIG's count."""
    monkeypatch.setenv(hardware.WORKERS_ENV, "3")
    with pytest.raises(RuntimeError, match="compiled for 3 workers, but TF_CONFIG names 1"):
        hardware.check_workers(hardware.WorkerCluster())
    hardware.check_workers(hardware.WorkerCluster(3, 2))
    monkeypatch.delenv(hardware.WORKERS_ENV)
    hardware.check_workers(hardware.WorkerCluster(5, 0))  # not compiled with a count: any


def test_cpu_replicas_and_several_workers_are_refused(monkeypatch):
    monkeypatch.setenv(hardware.TF_CONFIG, _tf_config(WORKERS_ONLY, "worker", 0))
    with pytest.raises(ValueError, match="replicas = 2 does not combine with the 2 workers"):
        hardware.distribution_strategy(2)


def test_the_vertex_extensions_custom_config_keys_are_ignored():
    """TFX's Vertex AI Trainer extension leaves its ``ai_platform_*`` keys in custom_config."""
    config = trainer.trainer_custom_config("cifar_resnet20", 2, TINY, None)
    extended = {**config, "ai_platform_training_args": {"project": "p"},
                "ai_platform_enable_vertex": True, "ai_platform_vertex_region": "us-central1"}
    assert trainer.TrainerSettings.from_custom_config(extended) == \
        trainer.TrainerSettings.from_custom_config(config)
    with pytest.raises(ValueError, match="unknown setting"):
        trainer.TrainerSettings.from_custom_config({**config, "workers": 2})


# --------------------------------------------------------------------------- two workers

# float32, one intra-op thread per process (two processes share 2 cores), a 32-image train
# subset; two epochs: every epoch's checkpoint and history are written under both strategies
MULTI = dataclasses.replace(TINY, mixed_precision="off", intra_op_threads=1,
                            train_eval_examples=32)
TIMEOUT = 900  # seconds for all three runs; every child is killed after it


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (the sockets held until all are picked)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# (unshare flags, nsenter flags): as root, then in a user namespace of one's own
_NAMESPACES = ((["--net"], ["--net"]),
               (["--net", "--map-root-user"], ["--net", "--user", "--preserve-credentials"]))


def _namespace_holder() -> tuple[subprocess.Popen, list[str]] | None:
    """A process holding a new network namespace with the loopback interface up, and the
    nsenter flags that enter it; None where no namespace can be made."""
    for unshare_flags, nsenter_flags in _NAMESPACES:
        holder = subprocess.Popen(
            ["unshare", *unshare_flags, "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if holder.stdout.readline().strip() == "up":
            return holder, nsenter_flags
        holder.wait()
        holder.stdout.close()
    return None


@contextlib.contextmanager
def _loopback_only_network():
    """Yields a command prefix that runs a program inside one new network namespace holding
    only the loopback interface, kept by a holder process that is killed on exit; skips the
    test where ``unshare``/``nsenter``/``ip`` are missing or no namespace can be made."""
    if not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip")):
        pytest.skip("unshare, nsenter or ip is missing: no loopback-only network namespace")
    namespace = _namespace_holder()
    if namespace is None:
        pytest.skip("no network namespace can be made here (unshare --net failed)")
    holder, nsenter_flags = namespace
    try:
        yield ["nsenter", f"--target={holder.pid}", *nsenter_flags, "--"]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def _start(args: FnArgs, log: pathlib.Path, local_tmp: pathlib.Path,
           tf_config: str | None = None, prefix: list[str] = ()) -> subprocess.Popen:
    """run_fn(args) in a fresh process (under the command `prefix`) with `tf_config` (none: one
    worker), its temporary files in `local_tmp`, its output in `log`."""
    env = {key: value for key, value in os.environ.items()
           if key not in (hardware.TF_CONFIG, hardware.WORKERS_ENV)}
    if tf_config is not None:
        env[hardware.TF_CONFIG] = tf_config
    local_tmp.mkdir(parents=True)
    env["TMPDIR"] = str(local_tmp)
    fields = {f: getattr(args, f) for f in ("train_files", "eval_files", "transform_graph_path",
                                            "schema_path", "serving_model_dir", "model_run_dir",
                                            "custom_config")}
    with log.open("w") as out:
        return subprocess.Popen([*prefix, sys.executable, "-c", _CHILD, json.dumps(fields)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(processes: dict[str, subprocess.Popen], logs: dict[str, pathlib.Path]) -> None:
    """Waits for every process until TIMEOUT; kills all that still run when one fails or time
    is up, and fails with the failing process's log."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            codes = {name: process.poll() for name, process in processes.items()}
            failed = [name for name, code in codes.items() if code not in (None, 0)]
            assert not failed, f"{failed[0]} exited {codes[failed[0]]}:\n" \
                               f"{logs[failed[0]].read_text()[-4000:]}"
            if all(code == 0 for code in codes.values()):
                return
            time.sleep(0.5)
        pytest.fail(f"not finished after {TIMEOUT} s: "
                    f"{[name for name, p in processes.items() if p.poll() is None]}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _weights(serving_model_dir: str) -> dict[str, np.ndarray]:
    return {v.name: v.numpy() for v in tf.saved_model.load(serving_model_dir).variables}


def _files(root: pathlib.Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_two_workers_train_as_two_replicas_of_one_process_and_only_the_chief_writes(
        ingested, tmp_path):
    """Two worker processes (TF_CONFIG with a chief and a worker on 127.0.0.1) train resnet-20
    through run_fn under MultiWorkerMirroredStrategy, the global batch of 16 split 8 + 8; one
    process trains the same run on 2 replicas (MirroredStrategy over 2 logical CPU devices):
    BatchNorm statistics per replica and the same all-reduced mean gradient in both. The
    chief's history (losses, accuracies, every epoch), exported weights and predictions equal
    the one-process run's up to float rounding.

    On a cluster every worker gets the same output paths; here the non-chief worker gets paths
    of its own, so anything it wrote there would show: nothing is there, its scratch folder
    (under its TMPDIR) is gone, and it logged removing it. The chief made no scratch folder;
    its outputs are complete, its checkpoints deleted at the end (history.json stays)."""
    twin_args = fn_args(ingested, tmp_path / "twin", "cifar_resnet20",
                        dataclasses.replace(MULTI, replicas=2), seed=5,
                        checkpoint_root=str(tmp_path / "twin" / "checkpoints"))
    chief_args, worker_args = (
        fn_args(ingested, tmp_path / name, "cifar_resnet20", MULTI, seed=5,
                checkpoint_root=str(tmp_path / name / "checkpoints"))
        for name in ("chief", "worker"))
    cluster = {role: [f"127.0.0.1:{port}"]
               for role, port in zip(("chief", "worker"), _free_ports(2))}
    logs = {name: tmp_path / f"{name}.log" for name in ("twin", "chief", "worker")}
    local_tmp = {name: tmp_path / "local" / name for name in logs}
    started = time.monotonic()
    with _loopback_only_network() as in_namespace:
        _wait({name: _start(args, logs[name], local_tmp[name], _tf_config(cluster, name, 0),
                            in_namespace)
               for name, args in (("chief", chief_args), ("worker", worker_args))}, logs)
    multi_seconds = time.monotonic() - started
    _wait({"twin": _start(twin_args, logs["twin"], local_tmp["twin"])}, logs)
    print(f"two workers: {multi_seconds:.0f} s; one process, two replicas: "
          f"{time.monotonic() - started - multi_seconds:.0f} s")

    for name in ("chief", "worker"):  # the strategy came before any tensor
        assert "Enabling collective ops after program startup" not in logs[name].read_text()
    # the non-chief wrote nothing where outputs go, and removed its scratch folder
    assert not (tmp_path / "worker").exists()
    removed = re.findall(r"Removed worker scratch folder (\S+)", logs["worker"].read_text())
    assert len(removed) == 1 and pathlib.Path(removed[0]).parent == local_tmp["worker"]
    assert not list(local_tmp["worker"].iterdir())
    assert not list(local_tmp["chief"].iterdir())
    assert "Removed worker scratch folder" not in logs["chief"].read_text()

    chief_run = tmp_path / "chief" / "run"
    assert {"history.json", "predictions.json", "responses.json"} <= _files(chief_run)
    assert any(name.startswith("logs/paper/events.out") for name in _files(chief_run))
    assert any(name.startswith("logs/train/events.out") for name in _files(chief_run))
    assert "saved_model.pb" in _files(tmp_path / "chief" / "model")
    assert [name for name in _files(tmp_path / "chief" / "checkpoints")
            if not name.endswith("history.json")] == []

    histories = {name: json.loads((tmp_path / name / "run" / "history.json").read_text())
                 for name in ("chief", "twin")}
    assert histories["chief"]["status"] == histories["twin"]["status"] == "ok"
    assert histories["chief"]["device"].endswith(", 2 workers")
    assert histories["twin"]["device"].endswith(", 2 replicas")
    epochs = {name: [{k: v for k, v in e.items() if k not in TIMINGS}
                     for e in history["epochs"]] for name, history in histories.items()}
    assert [e["epoch"] for e in epochs["chief"]] == [1, 2]
    for multi, twin in zip(epochs["chief"], epochs["twin"], strict=True):
        assert multi.keys() == twin.keys()
        for key in multi:  # measured: equal, bitwise
            assert multi[key] == pytest.approx(twin[key], rel=1e-5, abs=1e-7), key

    multi, twin = _weights(chief_args.serving_model_dir), _weights(twin_args.serving_model_dir)
    assert multi.keys() == twin.keys() and len(multi) == 97  # 20 kernels, a bias, 19 BN x 4
    worst = max(float(np.abs(multi[k] - twin[k]).max() / (np.abs(twin[k]).max() + 1e-12))
                for k in multi)
    assert worst < 1e-5, worst  # of each tensor's largest magnitude; measured: 0 (bitwise)
    predictions = [Predictions.from_json((tmp_path / name / "run" / "predictions.json")
                                         .read_text()) for name in ("chief", "twin")]
    assert predictions[0] == predictions[1]
