"""The GPU code paths, run for real on CPU devices: several replicas (MirroredStrategy over
logical CPU devices), mixed_float16 with loss scaling, XLA.

Logical devices can only be configured before TensorFlow's runtime starts, so every
several-replica run happens in a fresh child process."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from components import optimisation, trainer
from components.training_callbacks import EpochCheckpoint
from pipeline import config as config_lib
from resnet_ablation.contracts import Predictions
from resnet_ablation.keras2 import keras
from tests.test_trainer import (
    _CHILD,
    REPO,
    RESUMABLE,
    TIMINGS,
    TINY,
    _assert_same,
    _outcome,
    _serialized_examples,
    fn_args,
    kill_after_first_checkpoint,
)

_STEP_CHILD = """
import json, sys
import numpy as np
from components import hardware, optimisation
from resnet_ablation.keras2 import keras
from pipeline.config import TrainingConfig
replicas, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
hardware.configure_replicas(replicas)
import tensorflow as tf
keras.utils.set_random_seed(0)
# lr 0.1 at the global batch of 16; weight decay large enough that counting it twice shows
wd = 0.1 if mode == "double_decay" else 0.05
base = 0.8 if mode == "half_rate" else 1.6
training = TrainingConfig(batch_size=16, base_learning_rate=base, warmup_epochs=0,
                          schedule="constant", mixed_precision="off", weight_decay=wd,
                          replicas=replicas)
model = optimisation.compiled_model("cifar_resnet20", 10, 32, training, 10)
rng = np.random.default_rng(0)
images = rng.normal(size=(16, 32, 32, 3)).astype("float32")
labels = rng.integers(0, 10, 16)
if replicas > 1 or mode == "whole_batch":  # Keras' own train step: on 2 replicas replica r
    # takes images[8r:8r + 8]; on one device BatchNorm normalises all 16 together
    model.fit(images, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
else:  # one device, the batch split as the replicas split it: BN statistics per half
    with tf.GradientTape() as tape:
        halves = [model.compiled_loss(tf.constant(labels[i:i + 8]),
                                      model(images[i:i + 8], training=True))
                  for i in (0, 8)]
        loss = (halves[0] + halves[1]) / 2 + tf.add_n(model.losses)
    gradients = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
np.savez(out, **{v.name: v.numpy() for v in model.trainable_variables})
print(json.dumps({"replicas": model.distribute_strategy.num_replicas_in_sync,
                  "strategy": type(model.distribute_strategy).__name__}))
"""


def _step(tmp_path: pathlib.Path, replicas: int, mode: str = "ok") -> tuple[dict, dict]:
    out = tmp_path / f"{replicas}-{mode}.npz"
    done = subprocess.run([sys.executable, "-c", _STEP_CHILD, str(replicas), mode, str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as weights:
        return dict(weights), json.loads(done.stdout.strip().splitlines()[-1])


def _max_relative(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max() / (np.abs(b[k]).max() + 1e-12)) for k in a)


@pytest.mark.slow
def test_two_replicas_take_the_step_of_one_device_on_the_same_global_batch(tmp_path):
    """One SGD step of resnet-20 through Keras' MirroredStrategy train step on 2 logical CPU
    devices (global batch 16, 8 per replica) against one device computing the same step by
    hand: the mean of the two halves' cross-entropies (each half normalised by its own
    BatchNorm statistics, as each replica is) plus the weight-decay term once, at the rate of
    the global batch. Equal up to float rounding (the all-reduce sums in another order):
    gradient aggregation, weight-decay scaling and rate scaling are right. The same step
    with the weight decay doubled (as if every replica added it) or at half the rate (as if
    scaled by the per-replica batch) is far outside that tolerance, and so is one device's
    Keras step with BatchNorm over the whole batch: the statistics are per replica."""
    two, info = _step(tmp_path, 2)
    assert info == {"replicas": 2, "strategy": "MirroredStrategy"}
    one, info = _step(tmp_path, 1)
    assert info == {"replicas": 1, "strategy": "_DefaultDistributionStrategy"}
    assert two.keys() == one.keys() and len(two) == 2 * 19 + 19 + 2  # BN gamma, beta; kernels; dense
    tolerance = 2e-5  # of each tensor's largest magnitude; measured 9e-8
    assert _max_relative(two, one) < tolerance
    # measured: 5e-3 (decay twice), 0.5 (half rate), 0.9 (one BatchNorm over all 16 images:
    # the replicas really normalise per replica)
    for wrong in ("double_decay", "half_rate", "whole_batch"):
        other, _ = _step(tmp_path, 1, wrong)
        assert _max_relative(other, one) > 50 * tolerance, wrong


def _child(args: FnArgs) -> subprocess.Popen:
    """run_fn(args) in a fresh process (test_trainer's child), its output in <run dir>.log."""
    fields = {f: getattr(args, f) for f in ("train_files", "eval_files", "transform_graph_path",
                                            "schema_path", "serving_model_dir", "model_run_dir",
                                            "custom_config")}
    log = pathlib.Path(args.model_run_dir + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(fields)], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


def _finished(args: FnArgs) -> None:
    code = _child(args).wait(timeout=900)
    assert code == 0, pathlib.Path(args.model_run_dir + ".log").read_text()[-3000:]


@pytest.mark.slow
def test_a_stopped_two_replica_run_resumes_as_an_uninterrupted_one(ingested, tmp_path):
    """The resume test of test_trainer on 2 replicas (global batch 16, 8 per replica,
    deterministic): killed after epoch 1 and restarted, the history (minus timings), the
    exported weights and the predictions equal an uninterrupted 2-replica run's, bitwise.
    The uninterrupted run's model serves raw examples and records what trained it."""
    training = dataclasses.replace(RESUMABLE, replicas=2)
    straight = fn_args(ingested, tmp_path / "straight", "cifar_resnet20", training, seed=3)
    _finished(straight)

    checkpoints = tmp_path / "checkpoints"
    first = fn_args(ingested, tmp_path / "first", "cifar_resnet20", training, seed=3,
                    checkpoint_root=str(checkpoints))
    killed = kill_after_first_checkpoint(first, checkpoints, timeout=600, child=_child)

    second = fn_args(ingested, tmp_path / "second", "cifar_resnet20", training, seed=3,
                     checkpoint_root=str(checkpoints))
    _finished(second)
    resumed = json.loads((tmp_path / "second" / "run" / "history.json").read_text())
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3]
    assert resumed["epochs"][0] == killed[0]  # restored, not trained again
    _assert_same(_outcome(second), _outcome(straight))
    predictions = [Predictions.from_json((tmp_path / run / "run" / "predictions.json")
                                         .read_text()) for run in ("straight", "second")]
    assert predictions[0] == predictions[1]

    history = json.loads((tmp_path / "straight" / "run" / "history.json").read_text())
    assert history["status"] == "ok" and history["training"]["replicas"] == 2
    assert history["device"].endswith(", 2 replicas") and history["batch_size"] == 16
    assert history["epochs"][-1]["clean_train_accuracy"] == pytest.approx(
        predictions[0].train.accuracy, abs=1e-6)
    assert all(e["weight_decay_term"] > 0 for e in history["epochs"])
    loaded = tf.saved_model.load(straight.serving_model_dir)
    pngs = sorted((REPO / "data/cifar10_smoke/test").rglob("*.png"))[:3]
    probabilities = loaded.signatures["serving_default"](
        examples=_serialized_examples(pngs))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_replicas_and_float16_are_validated():
    base = config_lib.PipelineConfig()
    for value, message in ((0, "replicas must be a positive integer"),
                           (2.5, "replicas must be a positive integer"),
                           (3, "batch_size 128 must divide into replicas = 3")):
        with pytest.raises(config_lib.ConfigError, match=message):
            config_lib.validate(config_lib.with_overrides(base, replicas=value))
    with pytest.raises(config_lib.ConfigError, match="mixed_precision must be auto, on or off"):
        config_lib.validate(config_lib.with_overrides(base, mixed_precision="half"))
    assert config_lib.TrainingConfig().replicas is None


@pytest.fixture
def float32_afterwards():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_float16_trains_with_loss_scaling_and_serves_float32(ingested, tmp_path,
                                                             float32_afterwards):
    """mixed_precision = "float16" forces mixed_float16 on a CPU: the optimizer is a
    LossScaleOptimizer, a tiny run's losses are finite, the exported model takes serialized
    examples and returns float32 probabilities."""
    training = dataclasses.replace(TINY, mixed_precision="float16")
    args = fn_args(ingested, tmp_path, "cifar_resnet20", training)
    trainer.run_fn(args)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["precision"] == "mixed_float16" and history["status"] == "ok"
    assert all(np.isfinite(e["train_loss"]) and np.isfinite(e["val_loss"])
               for e in history["epochs"])
    loaded = tf.saved_model.load(args.serving_model_dir)
    pngs = sorted((REPO / "data/cifar10_smoke/test").rglob("*.png"))[:4]
    probabilities = loaded.signatures["serving_default"](
        examples=_serialized_examples(pngs))["probabilities"]
    assert probabilities.dtype == tf.float32 and probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1, rtol=1e-3)


@pytest.mark.slow
def test_float16_loss_scale_is_checkpointed_and_restored(tmp_path, float32_afterwards):
    """The dynamic loss scale and its good-step counter are in EpochCheckpoint's checkpoint and
    a fresh model restores them (a resumed run goes on with the scale it had)."""
    training = dataclasses.replace(TINY, mixed_precision="float16")
    from components import hardware

    assert hardware.set_precision("float16") == "mixed_float16"
    model = optimisation.compiled_model("cifar_plain20", 10, 8, training, steps_per_epoch=1)
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert model.optimizer.dynamic and float(model.optimizer.loss_scale) == 2.0**15
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(32, 8, 8, 3)).astype("float32"), rng.integers(0, 10, 32)
    logs = model.fit(images, labels, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    state = model.optimizer._loss_scale
    # dynamic: an overflowing step halves the scale and restarts the count, a finite one
    # counts; two steps here (measured: the first overflowed at 2^15, the second counted)
    scale_and_count = (float(state.current_loss_scale), int(state.counter))
    assert scale_and_count in {(2.0**15, 2), (2.0**14, 1), (2.0**13, 0)}, scale_and_count
    state.current_loss_scale.assign(1024.0)
    state.counter.assign(7)
    saving = EpochCheckpoint(model, str(tmp_path))
    saving.set_model(model)
    saving.on_epoch_end(0)
    names = [name for name, _ in tf.train.list_variables(saving.manager.latest_checkpoint)]
    assert any("loss_scale/current_loss_scale" in n for n in names), names
    assert any("loss_scale/good_steps" in n for n in names), names

    fresh = optimisation.compiled_model("cifar_plain20", 10, 8, training, steps_per_epoch=1)
    assert float(fresh.optimizer.loss_scale) == 2.0**15
    assert EpochCheckpoint(fresh, str(tmp_path)).restore() == 1
    assert float(fresh.optimizer.loss_scale) == 1024.0
    assert int(fresh.optimizer._loss_scale.counter) == 7


@pytest.mark.slow
def test_xla_run_matches_the_run_without_xla(ingested, tmp_path):
    """xla = true compiles Keras' train, test and predict steps on the CPU; a tiny run's
    metrics match the non-XLA run's up to XLA's reordered float arithmetic: losses within
    1e-3 relative (measured: at most 2.7e-4, in epoch 2's validation loss), accuracies within
    one of the 32 validation images. A small rate (0.01 at batch 256): at the tiny profile's
    0.1, six SGD steps through 19 BatchNorm layers amplify the rounding differences to 1 % in
    the validation loss, which would hide a real difference rather than show agreement."""
    histories = {}
    for xla in (False, True):
        training = dataclasses.replace(TINY, xla=xla, mixed_precision="off",
                                       base_learning_rate=0.01)
        trainer.run_fn(fn_args(ingested, tmp_path / str(xla), "cifar_resnet20", training))
        history = json.loads((tmp_path / str(xla) / "run" / "history.json").read_text())
        assert history["xla"] is xla and history["status"] == "ok"
        histories[xla] = [{k: v for k, v in e.items() if k not in TIMINGS}
                          for e in history["epochs"]]
    assert histories[True] != histories[False]  # XLA's kernels ran, not the same ones twice
    for plain, compiled in zip(histories[False], histories[True], strict=True):
        for key in ("train_loss", "val_loss", "clean_train_loss", "weight_decay_term"):
            assert compiled[key] == pytest.approx(plain[key], rel=1e-3), key
        for key in ("train_accuracy", "val_accuracy", "clean_train_accuracy"):
            assert compiled[key] == pytest.approx(plain[key], abs=1 / 32 + 1e-6), key
        assert compiled["learning_rate"] == pytest.approx(plain["learning_rate"], rel=1e-6)


_BN_CHILD = """
import json
from components import hardware
hardware.configure_replicas(2)
import tensorflow as tf
from resnet_ablation.keras2 import keras
from components.training_callbacks import ReplicaStatistics
strategy = hardware.distribution_strategy(2)
with strategy.scope():
    model = keras.Sequential([keras.layers.BatchNormalization(input_shape=(1,))])
bn = model.layers[0]
def set_local():  # replica r's moving mean: 10 r, as two replicas' own batches would leave it
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    bn.moving_mean.assign([tf.cast(replica, tf.float32) * 10.0])
strategy.run(set_local)
def outputs():
    return [float(o.numpy().ravel()[0]) for o in strategy.experimental_local_results(
        strategy.run(lambda: model(tf.zeros([1, 1]), training=False)))]
before, read = outputs(), float(bn.moving_mean.numpy()[0])
callback = ReplicaStatistics()
callback.set_model(model)
callback.synchronize()
print(json.dumps({"before": before, "read": read, "after": outputs()}))
"""


@pytest.mark.slow
def test_replicas_evaluate_with_the_mean_of_their_batchnorm_statistics():
    """Each replica keeps its own BatchNorm moving statistics (ON_READ variables: a read outside
    the replicas, and the checkpoint, give their mean) and, unsynchronized, evaluates its
    batches with them; ``ReplicaStatistics`` sets every replica's copy to the mean first."""
    done = subprocess.run([sys.executable, "-c", _BN_CHILD], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["read"] == 5.0
    # (0 - mean) / sqrt(1 + 1e-3): replica 0 normalises with 0, replica 1 with 10
    assert outcome["before"] == pytest.approx([0.0, -10 / np.sqrt(1.001)], rel=1e-5)
    assert outcome["after"] == pytest.approx([-5 / np.sqrt(1.001)] * 2, rel=1e-5)
