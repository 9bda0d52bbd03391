"""The Trainer module: one ``run_fn`` trains any variant of the study.

The component's ``custom_config`` (see ``trainer_custom_config``) names the model and seed and
carries the study's ``TrainingConfig``; everything else (data, Transform graph, schema) comes
from the Trainer's inputs, so every variant of a study is trained identically.

Outputs: the SavedModel in ``serving_model_dir`` with a ``serving_default`` signature taking
serialized tf.Examples with the raw ``image`` bytes (the Transform graph runs inside it) and a
``transform_features`` signature; in ``model_run_dir``, ``history.json`` and
``predictions.json`` (``components.contracts``) and TensorBoard logs.

A run whose training loss stops being finite is a result, not a crash: training stops, the
history records ``status = "diverged"`` with the epoch and the last finite epochs, and the
serving-model directory holds only ``contracts.DIVERGED_FILE``.

Every dataset is read in an order that depends on the files and the seed only (a fixed read
parallelism and order-preserving maps), so every variant of a study sees the same examples in
the same order on any machine.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft

from components import contracts, diagnostics, models, processor, progress_events, tensorboard_logs
from components.contracts import (
    DIVERGED_FILE,
    HISTORY_FILE,
    PREDICTIONS_FILE,
    RESPONSES_FILE,
    EpochRecord,
    LayerResponses,
    Predictions,
    RunHistory,
    SplitPredictions,
    TrainingConfig,
)
from components.data_source import ID_KEY, IMAGE_KEY, LABEL_KEY, SKIPPED_FILE
from components.keras_lib import keras
from components.model_specs import get_spec, shortcut_option

READ_PARALLELISM = 4  # files read at once: fixed, so the record order never depends on the CPU
VALIDATION_SPLIT = "validation"


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """What one Trainer component trains: a variant, a seed and the study's TrainingConfig."""

    model: str
    seed: int
    training: TrainingConfig
    # stable across restarts of the same run; None: derived at run time from the ModelRun
    # artifact's URI (default_checkpoint_root)
    checkpoint_root: str | None = None
    shortcut: str | None = None  # None: the family's default shortcut option

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> TrainerSettings:
        return contracts.from_dict(cls, custom_config)


def trainer_custom_config(model: str, seed: int, training: TrainingConfig,
                          checkpoint_root: str | None,
                          shortcut: str | None = None) -> dict[str, Any]:
    """The Trainer component's custom_config for one variant (JSON-serialisable)."""
    return dataclasses.asdict(TrainerSettings(model, seed, training, checkpoint_root, shortcut))


# ---------------------------------------------------------------------------------------------
# Input pipeline


def _files(patterns: list[str] | str) -> list[str]:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return sorted(path for pattern in patterns for path in tf.io.gfile.glob(pattern))


def count_examples(patterns: list[str] | str) -> int:
    """Examples in a split: from ExampleGen's counts file when present, else by reading it."""
    files = _files(patterns)
    split_dir = os.path.dirname(files[0])
    counts = os.path.join(os.path.dirname(split_dir), SKIPPED_FILE)
    split = os.path.basename(split_dir).removeprefix("Split-")
    if tf.io.gfile.exists(counts):
        with tf.io.gfile.GFile(counts) as file:
            known = json.load(file).get("examples", {})
        if split in known:
            return int(known[split])
    return int(tf.data.TFRecordDataset(files, "GZIP").reduce(0, lambda n, _: n + 1))


def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random horizontal flip and random crop after zero-padding by 1/8 of the size, per image.

    Deterministic in `seed` (shape [2]); zero is the train mean after normalisation. The crop
    offsets are whole pixels (gathered rows and columns, no resampling).
    """
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    images = tf.image.stateless_random_flip_left_right(images, flip_seed)
    size, pad = images.shape[1], images.shape[1] // 8
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([tf.shape(images)[0], 2], crop_seed, 0, 2 * pad + 1,
                                          tf.int32)
    rows = offsets[:, :1] + tf.range(size)[tf.newaxis]  # [B, size]
    columns = offsets[:, 1:] + tf.range(size)[tf.newaxis]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, columns, axis=2, batch_dims=1)


def read_records(file_patterns: list[str] | str, limit: int | None = None) -> tf.data.Dataset:
    """Serialized records of gzipped TFRecord files, in an order fixed by the files alone; the
    first `limit` of them when given."""
    dataset = tf.data.TFRecordDataset(_files(file_patterns), "GZIP",
                                      num_parallel_reads=READ_PARALLELISM)
    return dataset if limit is None else dataset.take(limit)


def _parser(tf_transform_output: tft.TFTransformOutput, with_ids: bool = False):
    """serialized batch -> (normalised images [B, S, S, 3], labels [B][, ids [B]]), through the
    Transform graph."""
    raw_spec = tf_transform_output.raw_feature_spec()
    keys = (IMAGE_KEY, LABEL_KEY) + ((ID_KEY,) if with_ids else ())
    spec = {key: raw_spec[key] for key in keys}
    transform = tf_transform_output.transform_features_layer()

    def parse_and_transform(serialized):
        features = tf.io.parse_example(serialized, spec)
        transformed = transform({key: features[key] for key in (IMAGE_KEY, LABEL_KEY)})
        images, labels = transformed[IMAGE_KEY], transformed[LABEL_KEY]
        return (images, labels, features[ID_KEY]) if with_ids else (images, labels)

    return parse_and_transform


def make_dataset(file_patterns: list[str] | str, tf_transform_output: tft.TFTransformOutput,
                 batch_size: int, *, limit: int | None = None, with_ids: bool = False,
                 cache: bool = False) -> tf.data.Dataset:
    """Batches of (normalised images, labels[, ids]) of every record (the first `limit`), in
    the files' fixed order, the last batch partial: for evaluation and prediction. With
    `cache`, the first complete pass is kept in memory and later passes read it."""
    batches = (read_records(file_patterns, limit).batch(batch_size)
               .map(_parser(tf_transform_output, with_ids), num_parallel_calls=tf.data.AUTOTUNE))
    return (batches.cache() if cache else batches).prefetch(tf.data.AUTOTUNE)


def decoded_bytes(examples: int, image_size: int) -> int:
    """Memory that `examples` transformed images take as float32."""
    return examples * image_size * image_size * 3 * 4


def decoded_examples(file_patterns: list[str] | str, tf_transform_output: tft.TFTransformOutput
                     ) -> tuple[tf.Variable, tf.Variable]:
    """Every record decoded and transformed once, held in memory: (images, labels) in the
    files' fixed order (the order ``read_records`` yields), as variables on the CPU.

    Variables, not a ``from_tensor_slices`` dataset: a dataset embeds its tensor as a graph
    constant, and tf.data copied that constant into every epoch of the concatenated epochs
    (``training_dataset``), one copy of the split per epoch (25 GB for 30 epochs of 1,400
    images at 224x224). A variable is captured by reference, once."""
    started = time.perf_counter()
    batches = list(make_dataset(file_patterns, tf_transform_output, 512))
    images, labels = (tf.concat(column, 0) for column in zip(*batches))
    del batches
    print(f"Decoded {images.shape[0]} train images into memory "
          f"({images.numpy().nbytes / 2**20:.0f} MB) in {time.perf_counter() - started:.1f} s",
          flush=True)
    with tf.device("/cpu:0"):  # the input pipeline's device, whatever trains
        return tf.Variable(images, trainable=False), tf.Variable(labels, trainable=False)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation: a function of (seed, epoch) only."""
    return seed * 1_000_003 + epoch


def training_dataset(file_patterns: list[str] | str, tf_transform_output: tft.TFTransformOutput,
                     batch_size: int, *, seed: int, steps_per_epoch: int, epochs: range,
                     shuffle_buffer: int = 10_000, augment: bool = False,
                     in_memory: bool = False) -> tf.data.Dataset:
    """`steps_per_epoch` full batches of (images, labels) for each epoch in `epochs`.

    Epoch e reads the records shuffled with ``epoch_seed(seed, e)`` (repeating if the epoch is
    longer than the split) and augments its batch i with the stateless seed (epoch seed, i):
    what epoch e sees depends on (files, seed, e) only, so a run resumed at epoch k is fed
    exactly what an uninterrupted run is fed from epoch k on, however many iterators read
    it. (One dataset per epoch, concatenated: ``Dataset.shuffle`` takes no per-element seed. An
    epoch longer than the split repeats the epoch's permutation.) `in_memory` decodes the split
    once (``decoded_examples``) and shuffles the indices of the decoded examples instead of
    records: ``Dataset.shuffle``'s permutation depends on its seed and the element count only,
    so the same permutation, the same batches.
    """
    if not epochs:
        raise ValueError(f"no epoch to train: {epochs}")
    if in_memory:
        images, labels = decoded_examples(file_patterns, tf_transform_output)
        examples = tf.data.Dataset.range(images.shape[0])

        def to_images(indices):
            return tf.gather(images, indices), tf.gather(labels, indices)
    else:
        examples, to_images = read_records(file_patterns), _parser(tf_transform_output)

    def epoch_batches(epoch: int) -> tf.data.Dataset:
        this_seed = epoch_seed(seed, epoch)
        # reshuffle_each_iteration=False: the permutation is the seed's whatever iterator reads
        # it. With True, each new iterator gets the next permutation, and Keras' fit makes a
        # second iterator when the data is exactly one epoch long, as a resumed run's last
        # epoch is: it then trained on other batches than the uninterrupted run.
        batches = (examples.shuffle(shuffle_buffer, seed=this_seed,
                                    reshuffle_each_iteration=False).repeat()
                   .batch(batch_size, drop_remainder=True).take(steps_per_epoch))
        steps = tf.data.Dataset.range(steps_per_epoch)
        return tf.data.Dataset.zip((batches, steps.map(
            lambda i: tf.stack([tf.constant(this_seed, tf.int64), i]))))

    def prepare(batch, augment_seed):
        batch_images, batch_labels = to_images(batch)
        return (augment_batch(batch_images, augment_seed) if augment else batch_images), batch_labels

    dataset = functools.reduce(tf.data.Dataset.concatenate, map(epoch_batches, epochs))
    return dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Optimisation


@keras.utils.register_keras_serializable(package="resnet_ablation")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then cosine decay to 0, step decay (/10 at boundaries), or flat."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, kind: str = "cosine",
                 boundaries: tuple[int, ...] = ()):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps
        self.kind, self.boundaries = kind, tuple(boundaries)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        if self.kind == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            decayed = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        elif self.kind == "step":
            passed = tf.add_n([tf.cast(step >= b, tf.float32) for b in self.boundaries] or [0.0])
            decayed = self.peak * tf.pow(0.1, passed)
        else:
            decayed = tf.constant(self.peak)
        return tf.where(step < self.warmup_steps, self.peak * (step + 1) / warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "kind": self.kind,
                "boundaries": list(self.boundaries)}


def learning_rate_schedule(training: TrainingConfig, steps_per_epoch: int) -> WarmupSchedule:
    return WarmupSchedule(
        peak=training.learning_rate,
        warmup_steps=round(training.warmup_epochs * steps_per_epoch),
        total_steps=training.epochs * steps_per_epoch,
        kind=training.schedule,
        boundaries=tuple(e * steps_per_epoch for e in training.step_decay_epochs))


def add_weight_decay(model: keras.Model, weight_decay: float, scope: str = "all") -> None:
    """Adds weight_decay * ||w||^2 / 2 to the loss (SGD-coupled decay as in the paper's
    Caffe/Torch setups, so momentum sees it) over the trainable weights `scope` names: "all"
    (convolution and dense kernels, the dense bias, BatchNorm gamma and beta: what
    fb.resnet.torch's optim.sgd, Caffe's default decay_mult 1 and torchvision's reference
    script decay) or "kernels" (convolution and dense kernels only). BatchNorm's moving
    statistics are not trainable and never decayed."""
    by_scope = {"all": model.trainable_weights,
                "kernels": [w for w in model.trainable_weights if "kernel" in w.name]}
    if scope not in by_scope:
        raise ValueError(f"weight decay scope must be one of {', '.join(by_scope)}, got {scope!r}")
    weights = by_scope[scope]
    if weight_decay > 0:
        model.add_loss(lambda: weight_decay * tf.add_n(
            [tf.nn.l2_loss(tf.cast(w, tf.float32)) for w in weights]))


def compiled_model(name: str, num_classes: int, image_size: int, training: TrainingConfig,
                   steps_per_epoch: int, shortcut: str | None = None) -> keras.Model:
    """Builds and compiles variant `name` under the distribution strategy, as the Trainer does:
    SGD with momentum and the warm-up schedule, coupled weight decay, optional XLA; the
    optimizer's variables are created here (built), so a checkpoint restores all of them."""
    with distribution_strategy().scope():
        model = models.build_model(name, num_classes, (image_size, image_size, 3),
                                   shortcut=shortcut)
        add_weight_decay(model, training.weight_decay, training.weight_decay_scope)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate_schedule(training, steps_per_epoch),
                                           momentum=training.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                     keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")],
            jit_compile=training.xla)
        # now, not in fit's first traced step: a checkpoint restored before fit restores the
        # momentum at once, and EpochCheckpoint.restore can check that everything matched
        model.optimizer.build(model.trainable_variables)
    return model


# ---------------------------------------------------------------------------------------------
# Hardware


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over several visible GPUs, else the default strategy (one GPU or CPU)."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def describe_devices() -> str:
    """What trains here: "N x GPU (names)" or "CPU: model (N cores)"."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = {tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
                 for gpu in gpus}
        return f"{len(gpus)} x GPU ({', '.join(sorted(names))})"
    return processor.describe()


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
    float32 otherwise and always for off."""
    if mode == "off":
        return "float32"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if mode == "on" or cpu_has_bfloat16() else "float32"


def set_precision(mode: str) -> str:
    """Sets the global Keras dtype policy to ``precision_policy(mode)``; returns its name."""
    policy = precision_policy(mode)
    keras.mixed_precision.set_global_policy(policy)
    return policy


# ---------------------------------------------------------------------------------------------
# Callbacks


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
        clean = self.clean_train() if last or (
            self.clean_every and (epoch + 1) % self.clean_every == 0) else {}
        clean_seconds = time.perf_counter() - started
        entry = EpochRecord(
            epoch=epoch + 1,
            train_loss=contracts.finite(logs.get("cross_entropy")),
            train_accuracy=contracts.finite(logs.get("accuracy")),
            val_loss=contracts.finite(logs.get("val_cross_entropy")),
            val_accuracy=contracts.finite(logs.get("val_accuracy")),
            clean_train_loss=contracts.finite(clean.get("cross_entropy")),
            clean_train_accuracy=contracts.finite(clean.get("accuracy")),
            learning_rate=float(self.model.optimizer.learning_rate),  # the schedule's value now
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
        self.writer = tf.summary.create_file_writer(self.logdir)
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
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=1)

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns the number of finished epochs.

        Every variable of the model and its optimizer is restored at once (``compiled_model``
        builds the optimizer) and must match the checkpoint (AssertionError otherwise)."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.finished.numpy())

    def on_epoch_end(self, epoch, logs=None):
        if not self.model.stop_training:  # a diverged epoch is not worth resuming from
            self.finished.assign(epoch + 1)
            self.manager.save()

    def delete(self) -> None:
        """Removes the checkpoints once the run is finished (the history.json there stays)."""
        for path in tf.io.gfile.glob(os.path.join(self.directory, "ckpt-*")) + [
                os.path.join(self.directory, "checkpoint")]:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)


def write_history(history: RunHistory, directories: list[str]) -> None:
    for directory in directories:
        _write_text(os.path.join(directory, HISTORY_FILE), history.to_json())


def read_history(directory: str) -> RunHistory | None:
    path = os.path.join(directory, HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        return RunHistory.from_json(file.read())


def _write_text(path: str, text: str) -> None:
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


# ---------------------------------------------------------------------------------------------
# Export


def export_serving_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                         directory: str) -> None:
    """Saves `model` with signatures on serialized raw tf.Examples (Transform graph inside)."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    image_spec = {IMAGE_KEY: raw_spec[IMAGE_KEY]}
    labelled_spec = {key: raw_spec[key] for key in (IMAGE_KEY, LABEL_KEY)}
    examples = tf.TensorSpec([None], tf.string, name="examples")

    @tf.function(input_signature=[examples])
    def serve(serialized):
        features = model.tft_layer(tf.io.parse_example(serialized, image_spec))
        return {"probabilities": model(features[IMAGE_KEY], training=False)}

    @tf.function(input_signature=[examples])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, labelled_spec))

    model.save(directory, save_format="tf",
               signatures={"serving_default": serve, "transform_features": transform_features})


# ---------------------------------------------------------------------------------------------
# The entry point


def _num_classes(schema_path: str) -> int:
    schema = tfdv.load_schema_text(schema_path)
    return int(tfdv.get_feature(schema, LABEL_KEY).int_domain.max) + 1


def default_checkpoint_root(model_run_dir: str) -> str:
    """``<run folder>/checkpoints/<task folder>``, from the Trainer's ModelRun URI: the same for
    every attempt of one Trainer in one pipeline run, wherever the run's root is.

    - LocalDagRunner: ``ROOT/Trainer.x/model_run/<execution id>`` -> ``ROOT/checkpoints/Trainer.x``
    - KFP backend: ``ROOT/<pipeline>/<run id>/Trainer-x[/<attempt uuid>]/model_run`` ->
      ``ROOT/<pipeline>/<run id>/checkpoints/Trainer-x`` (a retried run keeps its run id)
    - kfp.local: ``ROOT/<pipeline>-<start time>/<task>/model_run``
    - Vertex AI: ``ROOT/<project number>/<job id>/Trainer-x_<task id>/model_run``
    """
    path = model_run_dir.rstrip("/")
    if os.path.basename(path).isdigit():  # a local orchestrator's execution id
        path = os.path.dirname(path)
    path = os.path.dirname(path)  # the output key, model_run
    name = os.path.basename(path)
    if len(name) == 36 and name.count("-") == 4 and set(name) <= set("0123456789abcdef-"):
        path = os.path.dirname(path)  # the KFP driver's per-attempt salt
    return os.path.join(os.path.dirname(path), "checkpoints", os.path.basename(path))


def _run_key(settings: TrainerSettings, fn_args) -> str:
    """Identifies one training run: same inputs and settings resume the same checkpoints."""
    identity = json.dumps([dataclasses.asdict(settings), list(fn_args.train_files),
                           fn_args.transform_graph_path], sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def split_files(file_patterns: list[str], split: str) -> list[str]:
    """The patterns of another split of the same Examples artifact (``.../Split-<split>/*``)."""
    return [os.path.join(os.path.dirname(os.path.dirname(pattern)), f"Split-{split}",
                         os.path.basename(pattern)) for pattern in file_patterns]


def _split_name(file_patterns: list[str]) -> str:
    return os.path.basename(os.path.dirname(file_patterns[0])).removeprefix("Split-")


def _eval_split_name(file_patterns: list[str]) -> str:
    """What ExampleGen says the eval split is ("test", "held_out", ...); "eval" if unsaid."""
    counts = os.path.join(os.path.dirname(os.path.dirname(_files(file_patterns)[0])), SKIPPED_FILE)
    if not tf.io.gfile.exists(counts):
        return "eval"
    with tf.io.gfile.GFile(counts) as file:
        return json.load(file).get("eval_split_name", "eval")


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (``tfx.components.Trainer(run_fn="components.trainer.run_fn")``).

    Per-epoch validation runs on ``fn_args.eval_files`` (the ``validation`` split when the
    pipeline holds one out, else the eval split); the final predictions cover the eval split
    and the first ``train_eval_examples`` train records."""
    settings = TrainerSettings.from_custom_config(fn_args.custom_config)
    train = settings.training
    configure_threads(train)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(settings.seed)
    policy = set_precision(train.mixed_precision)
    if policy == "mixed_bfloat16" and not cpu_has_bfloat16():
        print("Warning: mixed_bfloat16 on a CPU without bfloat16 units is emulated, several "
              "times slower than float32 here; run a bfloat16 study's shards on a processor "
              "with AVX512_BF16 or AMX-BF16", flush=True)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train_examples = count_examples(fn_args.train_files)
    steps = train.steps_per_epoch or max(train_examples // train.batch_size, 1)
    history = _new_history(settings, fn_args, tf_transform_output, steps, policy, train_examples)
    model = compiled_model(settings.model, history.num_classes, history.image_size, train, steps,
                           shortcut=settings.shortcut)
    history = dataclasses.replace(history, params=models.trainable_params(model))

    in_memory = fits_in_memory(train, train_examples, count_examples(fn_args.eval_files),
                               history.image_size)

    def dataset(files, **options):
        return make_dataset(files, tf_transform_output, train.batch_size, **options)

    train_subset = dataset(fn_args.train_files, limit=train.train_eval_examples, cache=in_memory)
    backup_dir = os.path.join(settings.checkpoint_root
                              or default_checkpoint_root(fn_args.model_run_dir),
                              _run_key(settings, fn_args))
    checkpoint = EpochCheckpoint(model, backup_dir)
    first_epoch = checkpoint.restore()
    if previous := read_history(backup_dir):
        history = dataclasses.replace(history, epochs=previous.epochs[:first_epoch])
    recorder = HistoryRecorder(
        history, steps * train.batch_size, [fn_args.model_run_dir, backup_dir],
        lambda: model.evaluate(train_subset, verbose=0, return_dict=True), train.train_eval_every)
    logs = os.path.join(fn_args.model_run_dir, "logs")
    callbacks = [recorder, checkpoint,
                 EpochScalars(recorder, os.path.join(logs, tensorboard_logs.FOLDER)),
                 keras.callbacks.TensorBoard(logs, profile_batch=0)]
    print(f"Training {settings.model} (seed {settings.seed}, {policy}, xla={train.xla}, "
          f"oneDNN {'on' if history.onednn else 'off'}): "
          f"{train.epochs} epochs x {steps} steps of {train.batch_size} images; validation on "
          f"{history.val_split}" + _resume_note(first_epoch, train.epochs), flush=True)
    if first_epoch < train.epochs:  # else killed after the last epoch: only _finish is left
        model.fit(training_dataset(fn_args.train_files, tf_transform_output, train.batch_size,
                                   seed=settings.seed, steps_per_epoch=steps,
                                   epochs=range(first_epoch, train.epochs),
                                   shuffle_buffer=train.shuffle_buffer, augment=train.augment,
                                   in_memory=in_memory),
                  initial_epoch=first_epoch, epochs=train.epochs, steps_per_epoch=steps,
                  validation_data=dataset(fn_args.eval_files,
                                          cache=in_memory and train.eval_steps is None),
                  validation_steps=train.eval_steps,
                  callbacks=callbacks,  # epoch lines: Keras', unless a runner shows them
                  verbose=0 if progress_events.listening() else 2)
    _finish(recorder.history, model, fn_args, tf_transform_output, dataset)
    checkpoint.delete()


def _resume_note(first_epoch: int, epochs: int) -> str:
    if not first_epoch:
        return ""
    if first_epoch >= epochs:
        return f"; all {epochs} epochs were trained before: exporting"
    return f"; resuming at epoch {first_epoch + 1}"


def fits_in_memory(training: TrainingConfig, train_examples: int, eval_examples: int,
                   image_size: int) -> bool:
    """Whether the train split, the eval split and the train subset, decoded, fit in
    ``training.memory_cache_mb``."""
    examples = train_examples + eval_examples + min(training.train_eval_examples, train_examples)
    return decoded_bytes(examples, image_size) <= training.memory_cache_mb * 2**20


def _new_history(settings: TrainerSettings, fn_args, tf_transform_output, steps: int,
                 policy: str, train_examples: int) -> RunHistory:
    spec = get_spec(settings.model)
    eval_split = _eval_split_name(fn_args.eval_files)
    val_split = _split_name(fn_args.eval_files)
    return RunHistory(
        model=spec.name, family=spec.family, depth=spec.depth, residual=spec.residual, params=0,
        seed=settings.seed, batch_size=settings.training.batch_size,
        image_size=tf_transform_output.transformed_feature_spec()[IMAGE_KEY].shape[0],
        num_classes=_num_classes(fn_args.schema_path), steps_per_epoch=steps, precision=policy,
        xla=settings.training.xla, training=dataclasses.asdict(settings.training),
        val_split=val_split if val_split == VALIDATION_SPLIT else eval_split,
        eval_split=eval_split,
        train_subset=min(settings.training.train_eval_examples, train_examples),
        shortcut=shortcut_option(spec.name, settings.shortcut) if spec.residual else "none",
        device=describe_devices(), cpu_flags=processor.speed_flags(), onednn=onednn_enabled(),
        tensorflow=tf.__version__)


def _finish(history: RunHistory, model: keras.Model, fn_args, tf_transform_output,
            dataset: Callable[..., tf.data.Dataset]) -> None:
    """Writes the final history and either the model and its predictions, or the marker."""
    directories = [fn_args.model_run_dir]
    if history.status == "diverged":
        write_history(history, directories)
        _write_text(os.path.join(fn_args.serving_model_dir, DIVERGED_FILE),
                    f"{history.model} seed {history.seed} diverged in epoch "
                    f"{history.diverged_epoch}: no model was exported.\n")
        return
    eval_files = (split_files(fn_args.eval_files, "eval")
                  if _split_name(fn_args.eval_files) == VALIDATION_SPLIT else fn_args.eval_files)
    limit = history.training["train_eval_examples"]
    predictions = Predictions(
        eval=predict_split(model, dataset(eval_files, with_ids=True)),
        train=predict_split(model, dataset(fn_args.train_files, limit=limit, with_ids=True)))
    _write_text(os.path.join(fn_args.model_run_dir, PREDICTIONS_FILE), predictions.to_json())
    eval_images = dataset(eval_files, limit=limit).map(lambda images, _: images)
    stds = diagnostics.response_stds(model, eval_images)
    responses = LayerResponses(tuple(name for name, _ in stds), tuple(std for _, std in stds),
                               min(limit, len(predictions.eval.ids)))
    _write_text(os.path.join(fn_args.model_run_dir, RESPONSES_FILE), responses.to_json())
    write_history(dataclasses.replace(history, status="ok"), directories)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)

