"""The Trainer module: one ``run_fn`` trains any variant of the study.

The component's ``custom_config`` (see ``trainer_custom_config``) names the model and seed and
carries the study's ``TrainingConfig``; everything else (data, Transform graph, schema) comes
from the Trainer's inputs, so every variant of a study is trained identically.

Outputs: the SavedModel in ``serving_model_dir`` with a ``serving_default`` signature taking
serialized tf.Examples with the raw ``image`` bytes (the Transform graph runs inside it) and a
``transform_features`` signature; in ``model_run_dir``, ``history.json`` and
``predictions.json`` (``resnet_ablation.contracts``) and TensorBoard logs.

A run whose training loss stops being finite is a result, not a crash: training stops, the
history records ``status = "diverged"`` with the epoch and the last finite epochs, and the
serving-model directory holds only ``contracts.DIVERGED_FILE``.

A Trainer started again with the same inputs and settings resumes from the checkpoint of its
last finished epoch and trains exactly as an uninterrupted run.

``TrainingConfig.replicas`` (or several GPUs) trains data-parallel under a MirroredStrategy:
the same run, batch_size the global batch (see ``optimisation.compiled_model`` for the loss
scaling and BatchNorm statistics, ``hardware.configure_replicas`` for CPU replicas).

Several workers (``TF_CONFIG`` naming them: a Vertex AI CustomJob's worker pools, a Kubeflow
TFJob) train under MultiWorkerMirroredStrategy (``hardware.distribution_strategy``): each
worker reads every batch and keeps its share (``input_pipeline.split_by_batch``), so N
workers train as N replicas of one process do. Every worker runs all of ``run_fn``; only the
chief's files land in the outputs (``hardware.write_path``), and no worker returns before the
chief's are written.

``run_fn`` reads as one run, top to bottom; the pieces it puts together are in
``input_pipeline`` (the data), ``hardware`` (threads, devices, precision), ``optimisation``
(the compiled model), ``training_callbacks`` (what each epoch records) and ``export`` (the
SavedModel).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft

from components import hardware, input_pipeline, optimisation
from components.export import export_serving_model
from components.training_callbacks import (
    EpochCheckpoint,
    EpochScalars,
    HistoryRecorder,
    ReplicaStatistics,
    predict_split,
    read_history,
    write_history,
    write_text,
)
from resnet_ablation import contracts, diagnostics, models, processor, progress_events, tensorboard_logs
from resnet_ablation.contracts import (
    DIVERGED_FILE,
    PREDICTIONS_FILE,
    RESPONSES_FILE,
    LayerResponses,
    Predictions,
    RunHistory,
    TrainingConfig,
)
from resnet_ablation.data_source import IMAGE_KEY, LABEL_KEY
from resnet_ablation.keras2 import keras
from resnet_ablation.model_specs import get_spec, shortcut_option

VALIDATION_SPLIT = "validation"
# custom_config keys of TFX's Vertex AI Trainer extension (tfx.extensions.google_cloud_ai_platform:
# the CustomJob it starts, its region); they reach run_fn too and are not the Trainer's settings
VERTEX_EXTENSION_PREFIX = "ai_platform_"


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
        """The settings of a Trainer's custom_config, ignoring the Vertex AI extension's keys
        (``VERTEX_EXTENSION_PREFIX``); ValueError for any other unknown key."""
        return contracts.from_dict(cls, {key: value for key, value in custom_config.items()
                                         if not key.startswith(VERTEX_EXTENSION_PREFIX)})


def trainer_custom_config(model: str, seed: int, training: TrainingConfig,
                          checkpoint_root: str | None,
                          shortcut: str | None = None) -> dict[str, Any]:
    """The Trainer component's custom_config for one variant (JSON-serialisable)."""
    return dataclasses.asdict(TrainerSettings(model, seed, training, checkpoint_root, shortcut))


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (``tfx.components.Trainer(run_fn="components.trainer.run_fn")``).

    Per-epoch validation runs on ``fn_args.eval_files`` (the ``validation`` split when the
    pipeline holds one out, else the eval split); the final predictions cover the eval split
    and the first ``train_eval_examples`` train records. A non-chief worker of a multi-worker
    run deletes its scratch folder before it returns or raises."""
    try:
        _train_and_export(fn_args)
    finally:
        hardware.remove_worker_scratch()


def _train_and_export(fn_args) -> None:
    """``run_fn``'s run: set up, train (or resume), record, export, wait for the workers."""
    settings = TrainerSettings.from_custom_config(fn_args.custom_config)
    train = settings.training
    policy = _set_up_process(settings)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train_examples = input_pipeline.count_examples(fn_args.train_files)
    steps = train.steps_per_epoch or max(train_examples // train.batch_size, 1)
    history = _new_history(settings, fn_args, tf_transform_output, steps, policy, train_examples)
    model = optimisation.compiled_model(settings.model, history.num_classes, history.image_size,
                                        train, steps, shortcut=settings.shortcut)
    history = dataclasses.replace(history, params=models.trainable_params(model))

    eval_examples = input_pipeline.count_examples(fn_args.eval_files)
    in_memory = input_pipeline.fits_in_memory(train, train_examples, eval_examples,
                                              history.image_size)
    dataset = functools.partial(input_pipeline.make_dataset,
                                tf_transform_output=tf_transform_output, batch_size=train.batch_size)
    train_subset = dataset(fn_args.train_files, limit=train.train_eval_examples, cache=in_memory)
    checkpoint, history, first_epoch = _resume(model, history, settings, fn_args)
    recorder = HistoryRecorder(
        history, steps * train.batch_size, [fn_args.model_run_dir, checkpoint.directory],
        lambda: model.evaluate(train_subset, verbose=0, return_dict=True), train.train_eval_every)
    callbacks = _callbacks(recorder, checkpoint, fn_args.model_run_dir,
                           replicated=model.distribute_strategy.num_replicas_in_sync > 1)
    _announce(settings, history, steps, first_epoch)
    if first_epoch < train.epochs:  # else killed after the last epoch: only _finish is left
        # under several replicas Keras distributes these datasets over the model's strategy
        # itself (experimental_distribute_dataset: each global batch split between replicas)
        model.fit(input_pipeline.training_dataset(
                      fn_args.train_files, tf_transform_output, train.batch_size,
                      seed=settings.seed, steps_per_epoch=steps,
                      epochs=range(first_epoch, train.epochs), shuffle_buffer=train.shuffle_buffer,
                      augment=train.augment, in_memory=in_memory),
                  initial_epoch=first_epoch, epochs=train.epochs, steps_per_epoch=steps,
                  validation_data=dataset(fn_args.eval_files,
                                          cache=in_memory and train.eval_steps is None),
                  validation_steps=train.eval_steps,
                  callbacks=callbacks,  # epoch lines: Keras', unless a runner shows them
                  verbose=0 if progress_events.listening() else 2)
    _finish(recorder.history, model, fn_args, tf_transform_output, dataset)
    checkpoint.delete()
    hardware.wait_for_workers(model.distribute_strategy)


# ---------------------------------------------------------------------------------------------
# run_fn's steps, in the order it takes them


def _set_up_process(settings: TrainerSettings) -> str:
    """Thread pools, CPU replicas, the workers' strategy, op determinism, seeds and the dtype
    policy of this process, in that order: the pools, the CPU split and a
    MultiWorkerMirroredStrategy before TensorFlow's runtime starts (nothing before them makes
    a tensor). Returns the policy's name."""
    train = settings.training
    hardware.configure_threads(train)
    hardware.configure_replicas(train.replicas)
    cluster = hardware.worker_cluster()
    hardware.check_workers(cluster)
    if cluster.workers > 1:  # now, before any tensor; compiled_model gets the same one
        hardware.distribution_strategy(train.replicas)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(settings.seed)
    policy = hardware.set_precision(train.mixed_precision)
    if policy == "mixed_bfloat16" and not hardware.cpu_has_bfloat16():
        print("Warning: mixed_bfloat16 on a CPU without bfloat16 units is emulated, several "
              "times slower than float32 here; run a bfloat16 study's shards on a processor "
              "with AVX512_BF16 or AMX-BF16", flush=True)
    return policy


def _new_history(settings: TrainerSettings, fn_args, tf_transform_output, steps: int,
                 policy: str, train_examples: int) -> RunHistory:
    """The run's history before its first epoch: what trains, on what, on which data."""
    spec = get_spec(settings.model)
    eval_split = input_pipeline.eval_split_name(fn_args.eval_files)
    val_split = input_pipeline.split_name(fn_args.eval_files)
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
        device=hardware.describe_devices(settings.training.replicas,
                                         hardware.worker_cluster().workers),
        cpu_flags=processor.speed_flags(), onednn=hardware.onednn_enabled(), tensorflow=tf.__version__)


def _num_classes(schema_path: str) -> int:
    schema = tfdv.load_schema_text(schema_path)
    return int(tfdv.get_feature(schema, LABEL_KEY).int_domain.max) + 1


def _resume(model: keras.Model, history: RunHistory, settings: TrainerSettings,
            fn_args) -> tuple[EpochCheckpoint, RunHistory, int]:
    """The run's checkpoint (``<checkpoint root>/<run key>``), restored if an earlier attempt
    left one: (the checkpoint, `history` with the epochs it restored, the number of them)."""
    backup_dir = os.path.join(settings.checkpoint_root
                              or default_checkpoint_root(fn_args.model_run_dir),
                              _run_key(settings, fn_args))
    checkpoint = EpochCheckpoint(model, backup_dir)
    first_epoch = checkpoint.restore()
    if previous := read_history(backup_dir):
        history = dataclasses.replace(history, epochs=previous.epochs[:first_epoch])
    return checkpoint, history, first_epoch


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
    fields = dataclasses.asdict(settings)
    if fields["training"]["replicas"] is None:  # the key runs had before replicas existed
        del fields["training"]["replicas"]
    identity = json.dumps([fields, list(fn_args.train_files), fn_args.transform_graph_path],
                          sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _callbacks(recorder: HistoryRecorder, checkpoint: EpochCheckpoint, model_run_dir: str,
               replicated: bool = False) -> list[keras.callbacks.Callback]:
    """The history first, then the checkpoint (never ahead of the history), then TensorBoard;
    with several replicas ``ReplicaStatistics`` before them all."""
    logs = os.path.join(model_run_dir, "logs")
    callbacks = [recorder, checkpoint,
                 EpochScalars(recorder, os.path.join(logs, tensorboard_logs.FOLDER)),
                 keras.callbacks.TensorBoard(hardware.write_path(logs), profile_batch=0)]
    return [ReplicaStatistics(), *callbacks] if replicated else callbacks


def _announce(settings: TrainerSettings, history: RunHistory, steps: int,
              first_epoch: int) -> None:
    """Prints what trains, how, on what, and where a resumed run picks up."""
    train = settings.training
    cluster = hardware.worker_cluster()
    print(f"Training {settings.model} (seed {settings.seed}, {history.precision}, "
          f"xla={train.xla}, oneDNN {'on' if history.onednn else 'off'}"
          + (f", {train.replicas} replicas" if (train.replicas or 1) > 1 else "")
          + (f", worker {cluster.index} of {cluster.workers}"
             + (" (chief)" if cluster.is_chief else "") if cluster.workers > 1 else "") + "): "
          f"{train.epochs} epochs x {steps} steps of {train.batch_size} images; validation on "
          f"{history.val_split}" + _resume_note(first_epoch, train.epochs), flush=True)


def _resume_note(first_epoch: int, epochs: int) -> str:
    if not first_epoch:
        return ""
    if first_epoch >= epochs:
        return f"; all {epochs} epochs were trained before: exporting"
    return f"; resuming at epoch {first_epoch + 1}"


def _finish(history: RunHistory, model: keras.Model, fn_args, tf_transform_output,
            dataset: Callable[..., tf.data.Dataset]) -> None:
    """Writes the final history and either the model and its predictions, or the marker."""
    directories = [fn_args.model_run_dir]
    if history.status == "diverged":
        write_history(history, directories)
        write_text(os.path.join(fn_args.serving_model_dir, DIVERGED_FILE),
                   f"{history.model} seed {history.seed} diverged in epoch "
                   f"{history.diverged_epoch}: no model was exported.\n")
        return
    eval_files = fn_args.eval_files
    if input_pipeline.split_name(eval_files) == VALIDATION_SPLIT:  # predict the eval split still
        eval_files = input_pipeline.split_files(eval_files, "eval")
    limit = history.training["train_eval_examples"]
    predictions = Predictions(
        eval=predict_split(model, dataset(eval_files, with_ids=True)),
        train=predict_split(model, dataset(fn_args.train_files, limit=limit, with_ids=True)))
    write_text(os.path.join(fn_args.model_run_dir, PREDICTIONS_FILE), predictions.to_json())
    eval_images = dataset(eval_files, limit=limit).map(lambda images, _: images)
    stds = diagnostics.response_stds(model, eval_images)
    responses = LayerResponses(tuple(name for name, _ in stds), tuple(std for _, std in stds),
                               min(limit, len(predictions.eval.ids)))
    write_text(os.path.join(fn_args.model_run_dir, RESPONSES_FILE), responses.to_json())
    write_history(dataclasses.replace(history, status="ok"), directories)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)

