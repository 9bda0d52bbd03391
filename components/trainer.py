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
import glob
import hashlib
import json
import math
import os
import time
from typing import Any, Callable

import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft

from components import contracts, models
from components.contracts import (DIVERGED_FILE, HISTORY_FILE, PREDICTIONS_FILE, EpochRecord,
                                  Predictions, RunHistory, SplitPredictions)
from components.keras_lib import keras
from components.model_specs import get_spec, shortcut_option
from components.data_source import ID_KEY, IMAGE_KEY, LABEL_KEY, SKIPPED_FILE
from pipeline.config import TrainingConfig

READ_PARALLELISM = 4  # files read at once: fixed, so the record order never depends on the CPU
VALIDATION_SPLIT = "validation"


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """What one Trainer component trains: a variant, a seed and the study's TrainingConfig."""

    model: str
    seed: int
    training: TrainingConfig
    checkpoint_root: str | None = None  # stable across restarts of the same run
    shortcut: str | None = None  # None: the family's default shortcut option

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> "TrainerSettings":
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

    Deterministic in `seed` (shape [2]); zero is the train mean after normalisation.
    """
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    images = tf.image.stateless_random_flip_left_right(images, flip_seed)
    size = tf.shape(images)[1]
    pad = images.shape[1] // 8
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    batch = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform([batch, 2], crop_seed, 0, 2 * pad + 1, tf.int32)
    span = tf.cast(size + 2 * pad - 1, tf.float32)
    start = tf.cast(offsets, tf.float32) / span
    end = tf.cast(offsets + size - 1, tf.float32) / span
    boxes = tf.concat([start, end], axis=1)  # y1, x1, y2, x2: exact pixel-grid crops
    cropped = tf.image.crop_and_resize(padded, boxes, tf.range(batch), [size, size])
    return tf.cast(cropped, images.dtype)


def read_records(file_patterns: list[str] | str, limit: int | None = None) -> tf.data.Dataset:
    """Serialized records of gzipped TFRecord files, in an order fixed by the files alone; the
    first `limit` of them when given."""
    dataset = tf.data.TFRecordDataset(_files(file_patterns), "GZIP",
                                      num_parallel_reads=READ_PARALLELISM)
    return dataset if limit is None else dataset.take(limit)


def make_dataset(file_patterns: list[str] | str, tf_transform_output: tft.TFTransformOutput,
                 batch_size: int, *, training: bool, seed: int = 0, shuffle_buffer: int = 10_000,
                 augment: bool = False, limit: int | None = None,
                 with_ids: bool = False) -> tf.data.Dataset:
    """Batches of (normalised images [B, S, S, 3], labels [B]) from gzipped tf.Example files.

    The Transform graph is applied per batch, in parallel, after shuffling raw records; a
    training dataset repeats forever and drops the last partial batch. `limit` keeps the first
    records (see ``read_records``); `with_ids` adds the records' ids as a third element.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    keys = (IMAGE_KEY, LABEL_KEY) + ((ID_KEY,) if with_ids else ())
    spec = {key: raw_spec[key] for key in keys}
    transform = tf_transform_output.transform_features_layer()

    def parse_and_transform(serialized):
        features = tf.io.parse_example(serialized, spec)
        transformed = transform({key: features[key] for key in (IMAGE_KEY, LABEL_KEY)})
        images, labels = transformed[IMAGE_KEY], transformed[LABEL_KEY]
        return (images, labels, features[ID_KEY]) if with_ids else (images, labels)

    dataset = read_records(file_patterns, limit)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=training)
    dataset = dataset.map(parse_and_transform, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda batch, s: (augment_batch(batch[0], s), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


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


def add_weight_decay(model: keras.Model, weight_decay: float) -> None:
    """Adds weight_decay * ||w||^2 / 2 over conv and dense kernels to the loss (SGD-coupled decay
    as in the paper's Caffe/Torch setup, so momentum sees it)."""
    kernels = [w for w in model.trainable_weights if "kernel" in w.name]
    if weight_decay > 0:
        model.add_loss(lambda: weight_decay * tf.add_n(
            [tf.nn.l2_loss(tf.cast(k, tf.float32)) for k in kernels]))


def compiled_model(name: str, num_classes: int, image_size: int, training: TrainingConfig,
                   steps_per_epoch: int, shortcut: str | None = None) -> keras.Model:
    """Builds and compiles variant `name` under the distribution strategy, as the Trainer does:
    SGD with momentum and the warm-up schedule, coupled weight decay, optional XLA."""
    with distribution_strategy().scope():
        model = models.build_model(name, num_classes, (image_size, image_size, 3),
                                   shortcut=shortcut)
        add_weight_decay(model, training.weight_decay)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate_schedule(training, steps_per_epoch),
                                           momentum=training.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                     keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")],
            jit_compile=training.xla)
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
    model = "unknown model"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as file:
            model = next((line.split(":", 1)[1].strip() for line in file
                          if line.startswith("model name")), model)
    return f"CPU: {model} ({os.cpu_count()} cores)"


def set_precision(mode: str) -> str:
    """Sets the Keras dtype policy: mixed_float16 when `mode` is on, or auto with a GPU visible."""
    use_mixed = mode == "on" or (mode == "auto" and bool(tf.config.list_physical_devices("GPU")))
    policy = "mixed_float16" if use_mixed else "float32"
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
        self._start = time.perf_counter()

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
        write_history(self.history, self.directories)

    def _record(self, epoch: int, logs: dict, seconds: float) -> None:
        last = epoch + 1 == self.params.get("epochs")
        clean = self.clean_train() if last or (
            self.clean_every and (epoch + 1) % self.clean_every == 0) else {}
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
            images_per_second=self.images_per_epoch / seconds)
        self.history = dataclasses.replace(self.history, epochs=self.history.epochs + (entry,))


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
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(settings.seed)
    policy = set_precision(train.mixed_precision)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    steps = train.steps_per_epoch or max(count_examples(fn_args.train_files) // train.batch_size, 1)
    history = _new_history(settings, fn_args, tf_transform_output, steps, policy)
    model = compiled_model(settings.model, history.num_classes, history.image_size, train, steps,
                           shortcut=settings.shortcut)
    history = dataclasses.replace(history, params=models.trainable_params(model))

    def dataset(files, **options):
        return make_dataset(files, tf_transform_output, train.batch_size, **options)

    train_subset = dataset(fn_args.train_files, training=False, limit=train.train_eval_examples)
    backup_dir = (os.path.join(settings.checkpoint_root, _run_key(settings, fn_args))
                  if settings.checkpoint_root else None)
    if backup_dir and (previous := read_history(backup_dir)):
        history = dataclasses.replace(history, epochs=previous.epochs)
    recorder = HistoryRecorder(
        history, steps * train.batch_size, [fn_args.model_run_dir] + ([backup_dir] if backup_dir else []),
        lambda: model.evaluate(train_subset, verbose=0, return_dict=True), train.train_eval_every)
    callbacks = [recorder, keras.callbacks.TensorBoard(
        os.path.join(fn_args.model_run_dir, "logs"), profile_batch=0)]
    if backup_dir:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=True))
    print(f"Training {settings.model} (seed {settings.seed}, {policy}, xla={train.xla}): "
          f"{train.epochs} epochs x {steps} steps of {train.batch_size} images; validation on "
          f"{history.val_split}", flush=True)
    model.fit(dataset(fn_args.train_files, training=True, seed=settings.seed,
                      shuffle_buffer=train.shuffle_buffer, augment=train.augment),
              epochs=train.epochs, steps_per_epoch=steps,
              validation_data=dataset(fn_args.eval_files, training=False),
              validation_steps=train.eval_steps, callbacks=callbacks, verbose=2)
    _finish(recorder.history, model, fn_args, tf_transform_output, dataset)


def _new_history(settings: TrainerSettings, fn_args, tf_transform_output, steps: int,
                 policy: str) -> RunHistory:
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
        train_subset=min(settings.training.train_eval_examples, count_examples(fn_args.train_files)),
        shortcut=shortcut_option(spec.name, settings.shortcut) if spec.residual else "none",
        device=describe_devices())


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
        eval=predict_split(model, dataset(eval_files, training=False, with_ids=True)),
        train=predict_split(model, dataset(fn_args.train_files, training=False, limit=limit,
                                           with_ids=True)))
    _write_text(os.path.join(fn_args.model_run_dir, PREDICTIONS_FILE), predictions.to_json())
    write_history(dataclasses.replace(history, status="ok"), directories)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)

