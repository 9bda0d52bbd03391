"""resnet_ablation.tensorboard_logs: the paper's scalars and hparams in event files TensorBoard reads."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from resnet_ablation import tensorboard_logs
from resnet_ablation.contracts import RunHistory

PUBLISHED = pathlib.Path(__file__).resolve().parents[1] / "docs/results/cifar_cpu/runs/seed0"


def read_scalars(folder: str):
    """({tag: {step: value}} of every scalar, the accumulator) of one run folder."""
    events = event_accumulator.EventAccumulator(folder, size_guidance={"tensors": 0})
    events.Reload()
    scalars = {tag: {e.step: float(tf.make_ndarray(e.tensor_proto))
                     for e in events.Tensors(tag)}
               for tag in events.Tags()["tensors"] if not tag.startswith("_hparams_")}
    return scalars, events


def test_a_published_history_becomes_the_paper_scalars_with_hparams(tmp_path):
    history = RunHistory.from_json(
        (PUBLISHED / "cifar_plain56_seed0.history.json").read_text())
    last = history.epochs[-1]
    history = dataclasses.replace(history, epochs=(*history.epochs[:-1], dataclasses.replace(
        last, weight_decay_term=55.5)))
    folder = tensorboard_logs.write_run(history, str(tmp_path))
    assert pathlib.Path(folder).name == "cifar_plain56_seed0"
    scalars, events = read_scalars(folder)
    epochs = [record.epoch for record in history.epochs]
    val = history.val_split
    assert sorted(scalars[f"error/{val}"]) == epochs
    for record in history.epochs:
        assert scalars[f"error/{val}"][record.epoch] == pytest.approx(1 - record.val_accuracy)
        assert scalars["cross_entropy/train"][record.epoch] == pytest.approx(record.train_loss)
        assert scalars["learning_rate"][record.epoch] == pytest.approx(record.learning_rate)
    measured = [r for r in history.epochs if r.clean_train_accuracy is not None]
    assert measured and sorted(scalars["error/train_clean"]) == [r.epoch for r in measured]
    assert scalars["error/train_clean"][measured[-1].epoch] == pytest.approx(
        1 - measured[-1].clean_train_accuracy)
    assert scalars["weight_decay_term"] == {last.epoch: pytest.approx(55.5)}  # only where recorded

    [hparams_tag] = [t for t in events.Tags()["tensors"] if t == "_hparams_/session_start_info"]
    content = events.SummaryMetadata(hparams_tag).plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["model"].string_value == "cifar_plain56"
    assert start.hparams["depth"].number_value == 56
    assert start.hparams["residual"].bool_value is False
    assert start.hparams["seed"].number_value == 0
