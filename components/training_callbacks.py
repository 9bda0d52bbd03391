"""What a training run records while it trains: Keras callbacks and the files they write.

- ``HistoryRecorder``: an ``EpochRecord`` per finished epoch into ``history.json``
  (``write_history``, ``read_history``); a non-finite training loss stops training and marks
  the history ``diverged`` instead of raising.
- ``EpochScalars``: the paper's scalars of every recorded epoch for TensorBoard.
- ``EpochCheckpoint``: the model, its optimizer and the finished epochs after every epoch, so a
  killed run resumes exactly where it stopped.
- ``ReplicaStatistics``: one set of BatchNorm moving statistics for every replica's evaluation.
- ``predict_split``: the predicted class of every example of a split (``predictions.json``).

Files go through ``tf.io.gfile`` (``write_text``): any file system TensorFlow reads will do.
Every file or folder written goes where ``hardware.write_path`` says: its path on the chief (and
in every single-worker run), a scratch folder on a multi-worker run's other workers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import tensorflow as tf

from components.hardware import write_path
from resnet_ablation import contracts, progress_events, tensorboard_logs
from resnet_ablation.contracts import HISTORY_FILE, EpochRecord, RunHistory, SplitPredictions
from resnet_ablation.keras2 import keras


class HistoryRecorder(keras.callbacks.Callback):
    """Records an ``EpochRecord`` per finished epoch and rewrites history.json in `directories`.

    An epoch whose training loss is not finite is not recorded: the history becomes
    ``diverged`` at that epoch and training stops. `clean_train` measures the model on the fixed
    train subset (``{"accuracy": ..., "cross_entropy": ...}``); it runs every `clean_every`
    epochs (0: never during training) and after the last epoch.
    """

    def __init__(self, history: RunHistory, images_per_epoch: int, directories: list[str],
                 clean_train: Callable[[], dict[str, float]], clean_every: int):
        super().__init__()
        self.history, self.images_per_epoch = history, images_per_epoch
        self.directories, self.clean_train, self.clean_every = directories, clean_train, clean_every

    def on_epoch_begin(self, epoch, logs=None):
        kept = tuple(entry for entry in self.history.epochs if entry.epoch <= epoch)  # on resume
        self.history = dataclasses.replace(self.history, epochs=kept)
        self._start, self._validation = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):  # fit's validation pass
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._validation += time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._start
        if contracts.finite(logs.get("loss")) is None:
            self.history = dataclasses.replace(self.history, status="diverged",
                                               diverged_epoch=epoch + 1)
            self.model.stop_training = True
            print(f"{self.history.model}: training loss became {logs.get('loss')} in epoch "
                  f"{epoch + 1}; recorded as diverged, nothing is exported", flush=True)
        else:
            self._record(epoch, logs, seconds)
            progress_events.emit(progress_events.EpochDone(
                self.history.model, self.history.seed, self.params.get("epochs"),
                self.history.epochs[-1]))
        write_history(self.history, self.directories)

    def _record(self, epoch: int, logs: dict, seconds: float) -> None:
        last = epoch + 1 == self.params.get("epochs")
        started = time.perf_counter()
        measure = last or bool(self.clean_every and (epoch + 1) % self.clean_every == 0)
        if measure:
            progress_events.emit(progress_events.MeasuringTrainError(
                self.history.model, self.history.seed, epoch + 1, self.params.get("epochs"),
                self.history.train_subset))
        clean = self.clean_train() if measure else {}
        clean_seconds = time.perf_counter() - started
        entry = EpochRecord(
            epoch=epoch + 1,
            train_loss=contracts.finite(logs.get("cross_entropy")),
            train_accuracy=contracts.finite(logs.get("accuracy")),
            val_loss=contracts.finite(logs.get("val_cross_entropy")),
            val_accuracy=contracts.finite(logs.get("val_accuracy")),
            clean_train_loss=contracts.finite(clean.get("cross_entropy")),
            clean_train_accuracy=contracts.finite(clean.get("accuracy")),
            # the schedule's value now (a MirroredVariable under several replicas)
            learning_rate=float(keras.backend.get_value(self.model.optimizer.learning_rate)),
            seconds=seconds,
            images_per_second=self.images_per_epoch / seconds,
            validation_seconds=self._validation,
            clean_train_seconds=clean_seconds if clean else None,
            weight_decay_term=_difference(logs.get("loss"), logs.get("cross_entropy")))
        self.history = dataclasses.replace(self.history, epochs=self.history.epochs + (entry,))


def _difference(total, part) -> float | None:
    total, part = contracts.finite(total), contracts.finite(part)
    return None if total is None or part is None else total - part


class EpochScalars(keras.callbacks.Callback):
    """Writes the paper's scalars of every epoch `recorder` records (``tensorboard_logs``) to
    `logdir`: the epochs restored on a resume first, then each new one."""

    def __init__(self, recorder: HistoryRecorder, logdir: str):
        super().__init__()
        self.recorder, self.logdir = recorder, logdir

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(write_path(self.logdir))
        history = self.recorder.history
        tensorboard_logs.write_hparams(self.writer, history)
        for record in history.epochs:
            tensorboard_logs.write_epoch(self.writer, record, history.val_split)

    def on_epoch_end(self, epoch, logs=None):
        history = self.recorder.history
        if history.epochs and history.epochs[-1].epoch == epoch + 1:
            tensorboard_logs.write_epoch(self.writer, history.epochs[-1], history.val_split)

    def on_train_end(self, logs=None):
        self.writer.close()


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model, the optimizer (momentum, step count) and the number of finished epochs
    into `directory` after every finished epoch; ``restore`` returns the epoch to start from.
    Every worker of a multi-worker run restores from `directory` and saves (a collective
    step), a non-chief into its ``write_path``.

    Together with ``training_dataset`` (epoch e's data depends on (seed, e) only) a run killed
    after epoch k and restarted trains exactly as an uninterrupted run. Place it after
    ``HistoryRecorder``: the history is written first, so it is never behind the checkpoint.
    """

    def __init__(self, model: keras.Model, directory: str):
        super().__init__()
        self.directory = directory
        self.finished = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                              finished_epochs=self.finished)
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_path(directory),
                                                  max_to_keep=1)

    def restore(self) -> int:
        """Restores the latest checkpoint in `directory`, if any; returns the number of
        finished epochs.

        Every variable of the model and its optimizer is restored at once (``compiled_model``
        builds the optimizer) and must match the checkpoint (AssertionError otherwise)."""
        latest = tf.train.latest_checkpoint(self.directory)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return int(self.finished.numpy())

    def on_epoch_end(self, epoch, logs=None):
        if not self.model.stop_training:  # a diverged epoch is not worth resuming from
            self.finished.assign(epoch + 1)
            self.manager.save()

    def delete(self) -> None:
        """Removes the checkpoints this process saved once the run is finished (the
        history.json there stays)."""
        written = self.manager.directory
        for path in tf.io.gfile.glob(os.path.join(written, "ckpt-*")) + [
                os.path.join(written, "checkpoint")]:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)


class ReplicaStatistics(keras.callbacks.Callback):
    """Under several replicas, sets every replica's BatchNorm moving statistics to their mean
    before each evaluation (fit's validation, then the clean train measurement at the epoch's
    end), so every replica evaluates with the statistics a checkpoint stores and a one-device
    model reads. Training is unaffected (it normalises with batch statistics), and the mean
    of the per-replica moving averages evolves as without the sync (the update is linear),
    so a resumed run evaluates exactly as an uninterrupted one. Place it first."""

    def on_test_begin(self, logs=None):
        self.synchronize()

    def on_epoch_end(self, epoch, logs=None):
        self.synchronize()

    def synchronize(self) -> None:
        for layer in self.model.submodules:
            if isinstance(layer, keras.layers.BatchNormalization):
                for variable in (layer.moving_mean, layer.moving_variance):
                    variable.assign(variable.read_value())  # cross-replica: the mean, to all


def write_history(history: RunHistory, directories: list[str]) -> None:
    """Writes `history` as ``history.json`` into each of `directories`."""
    for directory in directories:
        write_text(os.path.join(directory, HISTORY_FILE), history.to_json())


def read_history(directory: str) -> RunHistory | None:
    """The ``history.json`` in `directory`; None if there is none."""
    path = os.path.join(directory, HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        return RunHistory.from_json(file.read())


def write_text(path: str, text: str) -> None:
    """Writes `text` to ``write_path(path)``, creating its folder."""
    path = write_path(path)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as file:
        file.write(text)


def predict_split(model: keras.Model, dataset: tf.data.Dataset) -> SplitPredictions:
    """The predicted class of every example of `dataset` (batches of images, labels, ids)."""
    predict = tf.function(lambda images: tf.argmax(model(images, training=False), axis=-1))
    ids, labels, predicted = [], [], []
    for images, batch_labels, batch_ids in dataset:
        ids += [i.decode("utf-8", "replace") for i in batch_ids.numpy().reshape(-1)]
        labels += batch_labels.numpy().reshape(-1).astype(int).tolist()
        predicted += predict(images).numpy().astype(int).tolist()
    return SplitPredictions(tuple(ids), tuple(labels), tuple(predicted))

