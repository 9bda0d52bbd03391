"""TensorBoard event files of a run, written from its ``RunHistory``: the paper's numbers.

One run folder per (model, seed), so ``tensorboard --logdir <pipeline root>`` (or a published
study's ``runs`` folder) lays the runs side by side. Scalars per epoch:

- ``error/<val split>``: 1 - accuracy on the per-epoch validation split (the paper's test error
  when that split is the test set); ``error/train_clean``: the paper's training error (inference
  mode, no augmentation, the fixed train subset) where it was measured;
- ``cross_entropy/train`` (Keras' running mean over the augmented batches, *without* the
  weight-decay term), ``cross_entropy/train_clean``, ``cross_entropy/<val split>``;
- ``weight_decay_term``: the decay term on its own (Keras' ``loss`` minus the cross-entropy),
  which is what makes Keras' own ``loss`` read 55-300 for plain-56;
- ``learning_rate`` and ``images_per_second``.

The HParams plugin gets model, depth, residual, shortcut, seed, precision and batch size, with
the final errors as its metrics. The Trainer writes the events as it trains
(``EpochScalars``); ``write_run`` writes a whole history at once (shard folders).
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from resnet_ablation.contracts import EpochRecord, RunHistory

FOLDER = "paper"  # under a ModelRun's logs/, beside Keras' own train/ and validation/


def run_name(history: RunHistory) -> str:
    return f"{history.model}_seed{history.seed}"


def hparams(history: RunHistory) -> dict[str, object]:
    return {"model": history.model, "depth": history.depth, "residual": history.residual,
            "shortcut": history.shortcut, "seed": history.seed, "precision": history.precision,
            "batch_size": history.batch_size}


def scalars(record: EpochRecord, val_split: str) -> dict[str, float]:
    """The scalars of one epoch (see the module docstring); unmeasured ones left out."""
    def error(accuracy):
        return None if accuracy is None else 1.0 - accuracy

    values = {
        f"error/{val_split}": error(record.val_accuracy),
        "error/train_clean": error(record.clean_train_accuracy),
        "cross_entropy/train": record.train_loss,
        "cross_entropy/train_clean": record.clean_train_loss,
        f"cross_entropy/{val_split}": record.val_loss,
        "weight_decay_term": record.weight_decay_term,
        "learning_rate": record.learning_rate,
        "images_per_second": record.images_per_second,
    }
    return {tag: value for tag, value in values.items() if value is not None}


def write_epoch(writer, record: EpochRecord, val_split: str) -> None:
    with writer.as_default():
        for tag, value in scalars(record, val_split).items():
            tf.summary.scalar(tag, value, step=record.epoch)
    writer.flush()


def write_hparams(writer, history: RunHistory) -> None:
    with writer.as_default():
        hparams_api.hparams(hparams(history), trial_id=run_name(history))
    writer.flush()


def write_run(history: RunHistory, logdir: str) -> str:
    """Writes `history` as one run's event files under ``logdir/<model>_seed<k>``; returns that
    folder."""
    folder = os.path.join(logdir, run_name(history))
    writer = tf.summary.create_file_writer(folder)
    write_hparams(writer, history)
    for record in history.epochs:
        write_epoch(writer, record, history.val_split)
    writer.close()
    return folder
