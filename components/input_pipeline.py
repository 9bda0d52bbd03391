"""The Trainer's input pipeline: an Examples artifact's gzipped TFRecords in, batches of
(normalised images, labels[, ids]) out, through the Transform graph.

- Which files: ``count_examples``, ``split_files``, ``split_name`` and ``eval_split_name`` read
  the layout ExampleGen writes (``Split-<name>/`` folders beside its counts file).
- Evaluation and prediction: ``make_dataset``, every record in the files' order, the last batch
  partial.
- Training: ``training_dataset``, full batches shuffled and augmented (``augment_batch``) per
  epoch by ``epoch_seed``; streamed, or from the split decoded once (``decoded_examples``) when
  ``fits_in_memory``.

Both are split by batch among the workers of a multi-worker run (``split_by_batch``).
Every dataset is read in an order that depends on the files and the seed only (a fixed read
parallelism and order-preserving maps), so every variant of a study sees the same examples in
the same order on any machine.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from resnet_ablation.contracts import TrainingConfig
from resnet_ablation.data_source import ID_KEY, IMAGE_KEY, LABEL_KEY, SKIPPED_FILE

READ_PARALLELISM = 4  # files read at once: fixed, so the record order never depends on the CPU


def _files(patterns: list[str] | str) -> list[str]:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return sorted(path for pattern in patterns for path in tf.io.gfile.glob(pattern))


def _counts(files: list[str]) -> dict[str, Any]:
    """ExampleGen's counts file of the artifact holding `files` (``SKIPPED_FILE``); {} if none."""
    path = os.path.join(os.path.dirname(os.path.dirname(files[0])), SKIPPED_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as file:
        return json.load(file)


def count_examples(patterns: list[str] | str) -> int:
    """Examples in a split: from ExampleGen's counts file when present, else by reading it."""
    files = _files(patterns)
    known = _counts(files).get("examples", {})
    split = os.path.basename(os.path.dirname(files[0])).removeprefix("Split-")
    if split in known:
        return int(known[split])
    return int(tf.data.TFRecordDataset(files, "GZIP").reduce(0, lambda n, _: n + 1))


def split_files(file_patterns: list[str], split: str) -> list[str]:
    """The patterns of another split of the same Examples artifact (``.../Split-<split>/*``)."""
    return [os.path.join(os.path.dirname(os.path.dirname(pattern)), f"Split-{split}",
                         os.path.basename(pattern)) for pattern in file_patterns]


def split_name(file_patterns: list[str]) -> str:
    """The split `file_patterns` read ("train", "eval", "validation")."""
    return os.path.basename(os.path.dirname(file_patterns[0])).removeprefix("Split-")


def eval_split_name(file_patterns: list[str]) -> str:
    """What ExampleGen says the eval split is ("test", "held_out", ...); "eval" if unsaid."""
    return _counts(_files(file_patterns)).get("eval_split_name", "eval")


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
    return split_by_batch((batches.cache() if cache else batches).prefetch(tf.data.AUTOTUNE))


def decoded_bytes(examples: int, image_size: int) -> int:
    """Memory that `examples` transformed images take as float32."""
    return examples * image_size * image_size * 3 * 4


def fits_in_memory(training: TrainingConfig, train_examples: int, eval_examples: int,
                   image_size: int) -> bool:
    """Whether the train split, the eval split and the train subset, decoded, fit in
    ``training.memory_cache_mb``."""
    examples = train_examples + eval_examples + min(training.train_eval_examples, train_examples)
    return decoded_bytes(examples, image_size) <= training.memory_cache_mb * 2**20


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
    return split_by_batch(dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
                          .prefetch(tf.data.AUTOTUNE))


def split_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with ``AutoShardPolicy.DATA``: under several workers each reads all of it and
    keeps its replicas' share of every global batch, the split one process's replicas get
    (the default, FILE, would give each worker other files). No effect on one worker."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
