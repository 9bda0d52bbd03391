"""ImageExampleGen's settings: ``ImageGenConfig`` (validated on construction, carried to the
executor as ExampleGen's ``custom_config``), the subset rule it states for reports, and the
fingerprint of the data it points at (the driver's cache key)."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.protobuf import json_format, struct_pb2
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from resnet_ablation import contracts, data_source as ds


@dataclasses.dataclass(frozen=True)
class ImageGenConfig:
    """The component's settings; constructing one validates them (ValueError otherwise).

    ``train_limit``: keep only the first train records in ``data_source.limit_key`` order of
    their ids (a deterministic subset for fast profiles). It selects among the
    candidate records before the image checks, so a limited split may hold fewer images if some
    of those are skipped. It applies after validation is carved out; eval and validation are
    never limited.

    ``train_per_class`` / ``eval_per_class``: keep only the first records *of each class* of
    train / eval, in the same ``limit_key`` order — a class-balanced subset that is the same
    images on every machine and run, whatever folder the data sits in (the id is the path
    under the folder). Chosen, like ``train_limit``, before the image checks. A class with fewer
    records keeps all of them. ``train_limit`` and ``train_per_class`` exclude each other.

    ``validation_fraction``: share of train records (by id hash, disjoint from any eval hold-out;
    see ``data_source``) written as a third split ``validation``; 0 writes no such split.
    """

    data: str
    eval_fraction: float = ds.DEFAULT_EVAL_FRACTION
    tfds_data_dir: str | None = None
    tfds_download_dir: str | None = None
    tfds_manual_dir: str | None = None
    train_limit: int | None = None
    validation_fraction: float = 0.0
    train_per_class: int | None = None
    eval_per_class: int | None = None

    def __post_init__(self):
        ds.parse_data(self.data)
        ds.check_eval_fraction(self.eval_fraction)
        ds.check_validation_fraction(self.validation_fraction)
        for key in ("train_limit", "train_per_class", "eval_per_class"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.train_limit is not None and self.train_per_class is not None:
            raise ValueError("train_limit and train_per_class exclude each other: give one")

    def per_class_limit(self, split: str) -> int | None:
        """Records kept of each class in logical split `split` (None: no per-class limit)."""
        return {ds.TRAIN: self.train_per_class, ds.EVAL: self.eval_per_class}.get(split)

    @property
    def source(self) -> ds.DataSource:
        return ds.parse_data(self.data)

    @property
    def splits(self) -> tuple[str, ...]:
        """The logical splits written (``data_source.logical_splits``)."""
        return ds.logical_splits(self.validation_fraction)

    def to_proto(self) -> example_gen_pb2.CustomConfig:
        """The settings as ExampleGen's CustomConfig (a packed google.protobuf.Struct).

        Unset settings are left out, and so is a validation_fraction of 0: without a validation
        split the config is what it was before that setting existed (same cache key)."""
        struct = struct_pb2.Struct()
        struct.update({key: value for key, value in dataclasses.asdict(self).items()
                       if value is not None and (key, value) != ("validation_fraction", 0)})
        config = example_gen_pb2.CustomConfig()
        config.custom_config.Pack(struct)
        return config

    @classmethod
    def from_exec_properties(cls, exec_properties: dict[str, Any]) -> ImageGenConfig:
        """Reads the settings back from the executor's ``custom_config`` (JSON) property."""
        custom_config = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
        if not custom_config:
            raise ValueError("ImageExampleGen's executor needs the custom_config exec property")
        config = example_gen_pb2.CustomConfig()
        proto_utils.json_to_proto(custom_config, config)
        struct = struct_pb2.Struct()
        if not config.custom_config.Unpack(struct):
            raise ValueError("ImageExampleGen's custom_config must hold a google.protobuf.Struct")
        return contracts.from_dict(cls, json_format.MessageToDict(struct))


def subset_rule(config: ImageGenConfig) -> str:
    """The subset settings as a sentence for reports; empty when every image is kept."""
    rules = []
    if config.train_limit:
        rules.append(f"train: the {config.train_limit:,} images whose id has the smallest hash")
    for split in (ds.TRAIN, ds.EVAL):
        if config.per_class_limit(split):
            rules.append(f"{split}: the {config.per_class_limit(split):,} images of each class "
                         f"whose id has the smallest hash")
    return ("; ".join(rules) + " (SHA-256 of the record id, the path under the data folder or "
            "the tfds id: the same images on every machine and run)") if rules else ""


def limits_text(config: ImageGenConfig) -> str:
    """The subset settings in force, e.g. ``train_per_class 500``; empty if none."""
    return ", ".join(f"{key} {getattr(config, key)}"
                     for key in ("train_limit", "train_per_class", "eval_per_class")
                     if getattr(config, key))


def input_fingerprint(config: ImageGenConfig) -> str:
    """What the data set holds now (``data_source.folder_fingerprint`` of an image folder,
    ``data_source.tfds_fingerprint`` of a tfds set), for the driver."""
    source = config.source
    source.check()
    if source.kind == "imagefolder":
        return ds.folder_fingerprint(ds.list_imagefolder(source.path))
    return ds.tfds_fingerprint(source.name, config.tfds_data_dir)
