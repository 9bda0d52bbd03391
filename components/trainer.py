"""The Trainer module: one ``run_fn`` trains any variant of the study.

The component's ``custom_config`` (see ``trainer_custom_config``) names the model and seed and
carries the study's ``TrainingConfig``; everything else (data, Transform graph, schema) comes
from the Trainer's inputs, so every variant of a study is trained identically.

Outputs: the SavedModel in ``serving_model_dir`` with a ``serving_default`` signature taking
serialized tf.Examples with the raw ``image`` bytes (the Transform graph runs inside it) and a
``transform_features`` signature; in ``model_run_dir``, ``history.json`` (one entry per epoch)
and TensorBoard logs.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import time
from typing import Any

import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft

from components import models
from components.keras_lib import keras
from components.model_specs import get_spec
from components.data_source import IMAGE_KEY, LABEL_KEY, SKIPPED_FILE
from pipeline.config import TrainingConfig

HISTORY_FILE = "history.json"


class TrainingDivergedError(RuntimeError):
    """The training loss stopped being finite; nothing is exported."""


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """What one Trainer component trains: a variant, a seed and the study's TrainingConfig."""

    model: str
    seed: int
    training: TrainingConfig
    checkpoint_root: str | None = None  # stable across restarts of the same run

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> "TrainerSettings":
        training = dict(custom_config["training"])
        training["step_decay_epochs"] = tuple(training.get("step_decay_epochs", ()))
        return cls(custom_config["model"], int(custom_config["seed"]),
                   TrainingConfig(**training), custom_config.get("checkpoint_root"))


def trainer_custom_config(model: str, seed: int, training: TrainingConfig,
                          checkpoint_root: str | None) -> dict[str, Any]:
    """The Trainer component's custom_config for one variant (JSON-serialisable)."""
    return {"model": model, "seed": seed, "training": dataclasses.asdict(training),
            "checkpoint_root": checkpoint_root}


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


def make_dataset(file_patterns: list[str] | str, tf_transform_output: tft.TFTransformOutput,
                 batch_size: int, *, training: bool, seed: int = 0, shuffle_buffer: int = 10_000,
                 augment: bool = False) -> tf.data.Dataset:
    """Batches of (normalised images [B, S, S, 3], labels [B]) from gzipped tf.Example files.

    The Transform graph is applied per batch, in parallel, after shuffling raw records; a
    training dataset repeats forever and drops the last partial batch.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    spec = {key: raw_spec[key] for key in (IMAGE_KEY, LABEL_KEY)}
    transform = tf_transform_output.transform_features_layer()

    def parse_and_transform(serialized):
        transformed = transform(tf.io.parse_example(serialized, spec))
        return transformed[IMAGE_KEY], transformed[LABEL_KEY]

    dataset = tf.data.TFRecordDataset(_files(file_patterns), "GZIP",
                                      num_parallel_reads=tf.data.AUTOTUNE)
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
                   steps_per_epoch: int) -> keras.Model:
    """Builds and compiles variant `name` under the distribution strategy, as the Trainer does:
    SGD with momentum and the warm-up schedule, coupled weight decay, optional XLA."""
    with distribution_strategy().scope():
        model = models.build_model(name, num_classes, (image_size, image_size, 3))
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


def set_precision(mode: str) -> str:
    """Sets the Keras dtype policy: mixed_float16 when `mode` is on, or auto with a GPU visible."""
    use_mixed = mode == "on" or (mode == "auto" and bool(tf.config.list_physical_devices("GPU")))
    policy = "mixed_float16" if use_mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


# ---------------------------------------------------------------------------------------------
# Callbacks


class DivergenceGuard(keras.callbacks.Callback):
    """Raises TrainingDivergedError when an epoch's training loss is not finite."""

    def __init__(self, model_name: str):
        super().__init__()
        self.model_name = model_name

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDivergedError(
                f"{self.model_name}: training loss became {loss} in epoch {epoch + 1}; "
                "nothing was exported. Lower base_learning_rate or add warm-up epochs.")


class HistoryRecorder(keras.callbacks.Callback):
    """Appends one entry per epoch and rewrites history.json in each of `directories`."""

    def __init__(self, header: dict[str, Any], images_per_epoch: int, directories: list[str],
                 epochs: list[dict[str, Any]] | None = None):
        super().__init__()
        self.header, self.images_per_epoch = header, images_per_epoch
        self.directories, self.epochs = directories, list(epochs or [])

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs = [entry for entry in self.epochs if entry["epoch"] <= epoch]  # on resume
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._start
        rate = self.model.optimizer.learning_rate  # the schedule's current value
        self.epochs.append({
            "epoch": epoch + 1,
            "train_loss": float(logs.get("cross_entropy", math.nan)),
            "train_accuracy": float(logs.get("accuracy", math.nan)),
            "val_loss": float(logs.get("val_cross_entropy", math.nan)),
            "val_accuracy": float(logs.get("val_accuracy", math.nan)),
            "learning_rate": float(rate),
            "seconds": seconds,
            "images_per_second": self.images_per_epoch / seconds,
        })
        write_history({**self.header, "epochs": self.epochs}, self.directories)


def write_history(history: dict[str, Any], directories: list[str]) -> None:
    for directory in directories:
        tf.io.gfile.makedirs(directory)
        with tf.io.gfile.GFile(os.path.join(directory, HISTORY_FILE), "w") as file:
            json.dump(history, file, indent=2)


def read_history(directory: str) -> dict[str, Any] | None:
    path = os.path.join(directory, HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        return json.load(file)


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


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (``tfx.components.Trainer(run_fn="components.trainer.run_fn")``)."""
    settings = TrainerSettings.from_custom_config(fn_args.custom_config)
    train = settings.training
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(settings.seed)
    policy = set_precision(train.mixed_precision)
    spec = get_spec(settings.model)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    image_size = tf_transform_output.transformed_feature_spec()[IMAGE_KEY].shape[0]
    num_classes = _num_classes(fn_args.schema_path)

    steps = train.steps_per_epoch or max(count_examples(fn_args.train_files) // train.batch_size, 1)
    train_data = make_dataset(fn_args.train_files, tf_transform_output, train.batch_size,
                              training=True, seed=settings.seed,
                              shuffle_buffer=train.shuffle_buffer, augment=train.augment)
    eval_data = make_dataset(fn_args.eval_files, tf_transform_output, train.batch_size,
                             training=False)

    model = compiled_model(settings.model, num_classes, image_size, train, steps)

    backup_dir = None
    previous_epochs: list[dict[str, Any]] = []
    if settings.checkpoint_root:
        backup_dir = os.path.join(settings.checkpoint_root, _run_key(settings, fn_args))
        previous_epochs = (read_history(backup_dir) or {}).get("epochs", [])
    header = {"model": spec.name, "family": spec.family, "depth": spec.depth,
              "residual": spec.residual, "params": models.trainable_params(model),
              "seed": settings.seed, "batch_size": train.batch_size, "image_size": image_size,
              "num_classes": num_classes, "steps_per_epoch": steps, "precision": policy,
              "xla": train.xla, "training": dataclasses.asdict(train)}
    callbacks = [
        DivergenceGuard(spec.name),
        HistoryRecorder(header, steps * train.batch_size,
                        [fn_args.model_run_dir] + ([backup_dir] if backup_dir else []),
                        previous_epochs),
        keras.callbacks.TensorBoard(os.path.join(fn_args.model_run_dir, "logs"), profile_batch=0),
    ]
    if backup_dir:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=True))
    print(f"Training {spec.name} (seed {settings.seed}, {policy}, xla={train.xla}): "
          f"{train.epochs} epochs x {steps} steps of {train.batch_size} images", flush=True)
    model.fit(train_data, epochs=train.epochs, steps_per_epoch=steps,
              validation_data=eval_data, validation_steps=train.eval_steps,
              callbacks=callbacks, verbose=2)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)
