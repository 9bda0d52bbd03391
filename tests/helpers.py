"""Helpers the tests share: reading an Examples artifact back, the train_limit subset."""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from tfx.dsl.io import fileio
from tfx.types import Artifact

from resnet_ablation.data_source import ID_KEY, IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, limit_key


def first_by_hash(record_ids, limit: int) -> list[str]:
    """The `limit` ids ``train_limit = limit`` keeps (smallest ``limit_key``)."""
    return sorted(record_ids, key=limit_key)[:limit]


def read_examples(examples: Artifact | str, split: str) -> list[dict[str, Any]]:
    """Reads one split of an Examples artifact (or its URI) back, sorted by id.

    Each record is {"id": str, "label": int, "label_name": str, "image": bytes}.
    """
    uri = examples if isinstance(examples, str) else examples.uri
    files = fileio.glob(os.path.join(uri, f"Split-{split}", "*.gz"))
    records = []
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        records.append({
            ID_KEY: feature[ID_KEY].bytes_list.value[0].decode("utf-8"),
            LABEL_KEY: feature[LABEL_KEY].int64_list.value[0],
            LABEL_NAME_KEY: feature[LABEL_NAME_KEY].bytes_list.value[0].decode("utf-8"),
            IMAGE_KEY: feature[IMAGE_KEY].bytes_list.value[0],
        })
    return sorted(records, key=lambda record: record[ID_KEY])
