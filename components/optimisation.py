"""How the Trainer optimises: SGD with momentum under a warm-up learning-rate schedule, weight
decay coupled into the loss.

``compiled_model`` builds and compiles a variant exactly as the Trainer trains it (under
``hardware.distribution_strategy``, the optimizer's variables built), so tests and benchmarks
measure the Trainer's own train step. ``WarmupSchedule`` is registered with Keras
(``resnet_ablation>WarmupSchedule``), so a saved optimizer configuration deserialises.
"""

from __future__ import annotations

import math

import tensorflow as tf

from components.hardware import distribution_strategy
from resnet_ablation import models
from resnet_ablation.contracts import TrainingConfig
from resnet_ablation.keras2 import keras


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
    optimizer's variables are created here (built), so a checkpoint restores all of them.

    Several replicas (``TrainingConfig.replicas``, or several GPUs): the model, the optimizer
    and the weight-decay loss are created under the MirroredStrategy's scope and Keras' fit
    splits each global batch of ``batch_size`` into ``batch_size / replicas`` per replica.
    Keras scales each replica's cross-entropy (mean over its batch) and the regularization
    losses (``model.losses``, the weight-decay term) by 1 / replicas and the gradients are
    summed over replicas: the gradient of the global batch's mean cross-entropy plus the
    weight-decay gradient once, so the rate (scaled by the global batch) means what it means
    on one device (tests/test_distribution.py checks it against a one-device step).

    BatchNorm normalises with each replica's own batch statistics (Keras' default
    BatchNormalization, not the synchronized one): what the paper's multi-GPU training did
    (Caffe and fb.resnet.torch computed BN per GPU on its share of the batch; He et al. 2015,
    sec. 3.4, batch 256 over 8 GPUs), and no cross-replica all-reduce in every BN layer. Its
    moving statistics are per replica too (ON_READ variables, read and checkpointed as their
    mean); ``training_callbacks.ReplicaStatistics`` makes every replica evaluate with that
    mean, so the validation metrics do not depend on which replica evaluated which batch."""
    with distribution_strategy(training.replicas).scope():
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

