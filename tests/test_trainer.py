"""The Trainer module's run_fn on a tiny config: export, history, determinism, NaN guard, resume."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from components import trainer
from components.contracts import Predictions, RunHistory
from components.example_gen import read_examples
from pipeline.config import TrainingConfig

TINY = TrainingConfig(epochs=2, batch_size=16, steps_per_epoch=3, eval_steps=2,
                      warmup_epochs=0.5, shuffle_buffer=64)
REPO = pathlib.Path(__file__).resolve().parents[1]


def fn_args(ingested, out: pathlib.Path, model: str, training: TrainingConfig = TINY,
            seed: int = 0, checkpoint_root: str | None = None) -> FnArgs:
    return FnArgs(
        train_files=ingested.split_files("train"), eval_files=ingested.split_files("eval"),
        transform_graph_path=ingested.transform_graph,
        schema_path=os.path.join(ingested.schema, "schema.pbtxt"),
        serving_model_dir=str(out / "model"), model_run_dir=str(out / "run"),
        custom_config=trainer.trainer_custom_config(model, seed, training, checkpoint_root))


def _serialized_examples(paths: list[pathlib.Path]) -> tf.Tensor:
    return tf.constant([tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[p.read_bytes()]))
    })).SerializeToString() for p in paths])


@pytest.mark.parametrize("model", ["cifar_resnet20", "cifar_plain20"])
def test_run_fn_exports_a_model_that_classifies_raw_png_bytes(ingested, tmp_path, model):
    args = fn_args(ingested, tmp_path, model)
    trainer.run_fn(args)

    loaded = tf.saved_model.load(args.serving_model_dir)
    assert {"serving_default", "transform_features"} <= set(loaded.signatures)
    pngs = sorted((REPO / "data/cifar10_smoke/test").rglob("*.png"))[:5]
    probabilities = loaded.signatures["serving_default"](
        examples=_serialized_examples(pngs))["probabilities"].numpy()
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)

    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["model"] == model and history["residual"] == ("resnet" in model)
    assert history["params"] == 269_722 and history["num_classes"] == 10
    assert history["status"] == "ok" and history["diverged_epoch"] is None
    assert history["shortcut"] == ("A" if "resnet" in model else "none")
    assert history["device"].startswith("CPU: ")
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    for entry in history["epochs"]:
        assert 0 <= entry["val_accuracy"] <= 1 and np.isfinite(entry["train_loss"])
        assert 0 <= entry["clean_train_accuracy"] <= 1  # measured every epoch by default
        assert entry["images_per_second"] > 0 and entry["learning_rate"] > 0
    assert any(p.name.startswith("events.out") for p in (tmp_path / "run" / "logs").rglob("*"))

    predictions = Predictions.from_json((tmp_path / "run" / "predictions.json").read_text())
    eval_ids = {e["id"] for e in read_examples(ingested.examples, "eval")}
    assert set(predictions.eval.ids) == eval_ids and len(predictions.eval.ids) == len(eval_ids)
    assert len(predictions.train.ids) == history["train_subset"] == 96  # the whole (limited) train
    # the clean training accuracy of the last epoch is the accuracy of these predictions
    assert history["epochs"][-1]["clean_train_accuracy"] == pytest.approx(
        predictions.train.accuracy, abs=1e-6)
    labels = {e["id"]: e["label"] for e in read_examples(ingested.examples, "eval")}
    assert [labels[i] for i in predictions.eval.ids] == list(predictions.eval.labels)


def test_deterministic_runs_are_bitwise_identical(ingested, tmp_path):
    training = dataclasses.replace(TINY, deterministic=True)
    weights, histories = [], []
    for run in ("a", "b"):
        args = fn_args(ingested, tmp_path / run, "cifar_resnet20", training, seed=7)
        trainer.run_fn(args)
        loaded = tf.saved_model.load(args.serving_model_dir)
        weights.append({v.name: v.numpy() for v in loaded.variables})
        history = json.loads((tmp_path / run / "run" / "history.json").read_text())
        histories.append([{k: v for k, v in e.items() if k not in ("seconds", "images_per_second")}
                          for e in history["epochs"]])
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    assert histories[0] == histories[1]


def test_a_diverged_run_is_recorded_not_raised(ingested, tmp_path):
    diverging = dataclasses.replace(TINY, epochs=3, base_learning_rate=1e30, warmup_epochs=0,
                                    weight_decay=0.0)
    args = fn_args(ingested, tmp_path, "cifar_plain20", diverging)
    trainer.run_fn(args)
    history = RunHistory.from_json((tmp_path / "run" / "history.json").read_text())
    assert history.status == "diverged" and history.diverged_epoch == 1
    assert history.epochs == ()  # no finite epoch to keep; training stopped at once
    assert os.listdir(args.serving_model_dir) == ["DIVERGED"]
    assert "diverged in epoch 1" in (pathlib.Path(args.serving_model_dir) / "DIVERGED").read_text()
    assert not (tmp_path / "run" / "predictions.json").exists()


def test_record_order_does_not_depend_on_the_core_count(ingested):
    """The reader's interleave width is fixed, so two runs see the same order on any machine."""
    order = [r.numpy() for r in trainer.read_records(ingested.split_files("train"))]
    assert trainer.READ_PARALLELISM == 4
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1  # as on a one-core machine
    single = trainer.read_records(ingested.split_files("train")).with_options(options)
    assert [r.numpy() for r in single] == order and len(order) == 96


_CHILD = """
import json, sys
import components.keras_lib
from tfx.components.trainer.fn_args_utils import FnArgs
from components import trainer
trainer.run_fn(FnArgs(**json.loads(sys.argv[1])))
"""


def test_killed_run_resumes_from_last_checkpointed_epoch(ingested, tmp_path):
    training = dataclasses.replace(TINY, epochs=3, steps_per_epoch=12, augment=False)
    checkpoints = tmp_path / "checkpoints"
    first = fn_args(ingested, tmp_path / "first", "cifar_resnet20", training,
                    checkpoint_root=str(checkpoints))
    fields = {f: getattr(first, f) for f in ("train_files", "eval_files", "transform_graph_path",
                                             "schema_path", "serving_model_dir", "model_run_dir",
                                             "custom_config")}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(fields)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history_file = tmp_path / "first" / "run" / "history.json"
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        if history_file.exists() and json.loads(history_file.read_text())["epochs"]:
            break
        time.sleep(0.2)
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed = json.loads(history_file.read_text())["epochs"]
    assert [e["epoch"] for e in killed] == [1]

    second = fn_args(ingested, tmp_path / "second", "cifar_resnet20", training,
                     checkpoint_root=str(checkpoints))
    trainer.run_fn(second)
    resumed = json.loads((tmp_path / "second" / "run" / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in resumed] == [1, 2, 3]
    assert resumed[0] == killed[0]  # epoch 1 was restored, not trained again
    assert tf.saved_model.load(second.serving_model_dir).signatures["serving_default"]
