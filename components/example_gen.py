"""ImageExampleGen: a TFX ExampleGen that turns an image data set into tf.Examples.

It follows TFX's query-based ExampleGen conventions (as BigQueryExampleGen does): the component
subclasses ``QueryBasedExampleGen`` with a Beam executor; its input config has one split per
logical split whose pattern is the logical split (``train`` -> ``train``, ``eval`` -> ``eval``,
and ``validation`` -> ``validation`` when ``validation_fraction`` > 0); its output config is
empty, so TFX names the output splits after the input splits. They are written as gzipped
TFRecords to ``Split-train`` / ``Split-eval`` (/ ``Split-validation``) of the Examples artifact,
one file per work unit, numbered in the units' fixed order (the seeded listing of a folder, the
parts of a tfds split, the hash order of a train limit): the record order is the same in every
run, whichever Beam runner and workers wrote it. TFX's driver handles span and version (span
0 unless a range config says otherwise). The
per-record work runs in ``components.image_records``, which Beam workers import without
TensorFlow.

The data set is one string, ``tfds:NAME[:CONFIG]`` or ``imagefolder:PATH`` (see
``resnet_ablation.data_source``, which also defines split mapping, labels, record ids and the image
checks). Every output tf.Example has:

- ``image``: the original encoded bytes (file content, or the bytes tfds stored), never re-encoded;
- ``label`` (int64): index into the labels (sorted class folders, or the tfds ClassLabel order);
- ``label_name`` (bytes) and ``id`` (bytes): the class name and the stable record id.

Files that are not usable images are skipped and counted per split and reason. Besides the
splits, the artifact's URI holds ``labels.json`` ({"names", "num_classes", "source"}) and
``skipped.json`` ({"train": {reason: n}, "eval": {...}, "examples": {"train": n, "eval": m},
"first_skipped": [path or tfds id, ...], "eval_split_name": "test", "duplicates_of_train":
{"eval": n}: how many images of each other split are byte-identical to a train image,
"content_sha256": {split: ``content_digest``}}, plus "validation" keys in the maps when that
split is written), and the artifact carries the custom properties
``skipped_json``, ``examples_train``, ``examples_eval`` (and ``examples_validation``),
``num_classes`` and ``eval_split_name`` (``data_source.eval_split_name``: ``test``,
``validation``, ``eval`` or ``held_out``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

import apache_beam as beam
from absl import logging
from tfx import types
from tfx.components.example_gen import (
    base_example_gen_executor,
    component as example_gen_component,
    driver as example_gen_driver,
    utils as example_gen_utils,
    write_split,
)
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import image_records
from components.beam_executors import LocalBeamExecutorMixin
from components.example_gen_config import ImageGenConfig, input_fingerprint, limits_text, subset_rule
from resnet_ablation import data_source as ds
from resnet_ablation.data_source import LABELS_FILE, SKIPPED_FILE

TFDS_MAX_PARTS = 16  # a tfds split is read in at most this many parallel parts
FILES_PER_CHUNK = 256  # records in a work unit: image-folder files or train-limit batches

_WORK_DIR_KEY = "_image_example_gen_work_dir"  # exec property: listings and split summaries
_OPENED_KEY = "_image_example_gen_opened"  # exec property: the source Do opened (listed once)
_WORK_DIR_NAME = "_image_example_gen_work"  # under the Examples URI; removed after the run


# --- records ---------------------------------------------------------------------------------

def _open_source(config: ImageGenConfig) -> ds.ImageFolder | ds.TfdsSource:
    """Lists the image folder, or opens (and if needed prepares) the tfds set."""
    source = config.source
    source.check()
    if source.kind == "imagefolder":
        return ds.list_imagefolder(source.path)
    return ds.open_tfds(source.name, config.tfds_data_dir, config.tfds_download_dir,
                        config.tfds_manual_dir)


def _split_plan(opened: ds.ImageFolder | ds.TfdsSource, config: ImageGenConfig) -> ds.SplitPlan:
    names = opened.source_splits if isinstance(opened, ds.ImageFolder) else opened.split_sizes
    return ds.SplitPlan.of(names, config.eval_fraction, config.validation_fraction)


def _folder_units(folder: ds.ImageFolder, plan: ds.SplitPlan, split: str,
                  work_dir: str) -> list[image_records.ListingChunk]:
    """The split's files, listed (here, on the driver) into a listing file in `work_dir`."""
    files = [image_records.Candidate(f.id, f.label, f.path) for f in folder.files
             if plan.assign(f.id, f.source_split) == split]
    # The examples are not shuffled: each chunk's go to the file of its number, in listing
    # order, and a seeded shuffle of the listing mixes classes in every chunk and file.
    random.Random(f"ImageExampleGen:{split}").shuffle(files)
    return image_records.write_listing(
        files, os.path.join(work_dir, f"listing-{split}.jsonl"), FILES_PER_CHUNK, folder.root)


def _tfds_units(source: ds.TfdsSource, plan: ds.SplitPlan,
                split: str) -> list[image_records.TfdsPart]:
    """Parallel parts of each source split that feeds `split`, read without decoding.

    A source split feeding several logical splits (train, when eval or validation is held out
    of it) is read once per logical split; each keeps its own records.
    """
    import tensorflow_datasets as tfds

    return [image_records.TfdsPart(source, plan, split, name, instruction)
            for name in plan.sources_for(split) if source.split_sizes[name]
            for instruction in tfds.even_splits(
                name, min(TFDS_MAX_PARTS, source.split_sizes[name]))]


@beam.ptransform_fn
def _FirstByHash(units: beam.PCollection, limit: int) -> beam.PCollection:  # noqa: N802
    """Work units holding the `limit` candidates with the smallest ``data_source.limit_key``
    of their id."""
    return (units
            | "Read" >> beam.FlatMap(image_records.candidates_of)
            | "Smallest" >> beam.combiners.Top.Smallest(
                limit, key=image_records.candidate_limit_key)
            | "Batch" >> beam.FlatMap(image_records.batches, FILES_PER_CHUNK)
            | "Spread" >> beam.Reshuffle())


@beam.ptransform_fn
def _FirstByHashPerClass(units: beam.PCollection, limit: int) -> beam.PCollection:  # noqa: N802
    """Work units holding, of every class, the `limit` candidates with the smallest
    ``data_source.limit_key`` of their id (all of a class that has fewer), in that order."""
    return (units
            | "Read" >> beam.FlatMap(image_records.candidates_of)
            | "ByClass" >> beam.Map(lambda candidate: (candidate.label, candidate))
            | "Smallest" >> beam.combiners.Top.SmallestPerKey(
                limit, key=image_records.candidate_limit_key)
            | "Classes" >> beam.Values()
            | "Together" >> beam.combiners.ToList()
            | "Batch" >> beam.FlatMap(
                lambda per_class: image_records.batches(sorted(
                    (c for chosen in per_class for c in chosen),
                    key=image_records.candidate_limit_key), FILES_PER_CHUNK))
            | "Spread" >> beam.Reshuffle())


def _summary_path(work_dir: str, split: str) -> str:
    return os.path.join(work_dir, f"summary-{split}.json")


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tuple[int, int, list[bytes]])
def _ImageToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any],  # noqa: N802
                    split_pattern: str) -> beam.PCollection:
    """Reads logical split `split_pattern` (one of ``ImageGenConfig.splits``) as serialized
    tf.Examples, in batches: (unit index, unit count, the unit's examples) per work unit, which
    ``Executor.Do`` writes with ``_WriteSplit``.

    Runs inside ``Executor.Do``, which adds two private exec properties: the source it opened
    (so a folder is listed once, not once per split) and a work dir, which receives an image
    folder's listing and the split's outcome summary (see ``image_records.Outcomes.summary``)
    as JSON.
    """
    config = ImageGenConfig.from_exec_properties(exec_properties)
    if split_pattern not in config.splits:
        raise ValueError(f"ImageExampleGen split pattern must be one of {config.splits}, "
                         f"got {split_pattern!r}")
    if _OPENED_KEY not in exec_properties or _WORK_DIR_KEY not in exec_properties:
        raise ValueError("_ImageToExample runs inside ImageExampleGen's Executor.Do, which "
                         f"sets the {_OPENED_KEY} and {_WORK_DIR_KEY} exec properties")
    opened, work_dir = exec_properties[_OPENED_KEY], exec_properties[_WORK_DIR_KEY]
    plan = _split_plan(opened, config)
    if isinstance(opened, ds.ImageFolder):
        units = _folder_units(opened, plan, split_pattern, work_dir)
    else:
        units = _tfds_units(opened, plan, split_pattern)
    units = (pipeline | "ListUnits" >> beam.Create(image_records.numbered(units))
             | "SpreadUnits" >> beam.Reshuffle())
    if split_pattern == ds.TRAIN and config.train_limit:
        units = units | "TrainLimit" >> _FirstByHash(config.train_limit)
    if config.per_class_limit(split_pattern):
        units = units | "PerClassLimit" >> _FirstByHashPerClass(
            config.per_class_limit(split_pattern))
    results = (units
               | "ToExample" >> beam.FlatMap(image_records.to_examples, opened.labels)
               .with_outputs(image_records.OUTCOME, main="examples"))
    _ = (results[image_records.OUTCOME]
         | "Summarize" >> beam.CombineGlobally(image_records.MergeOutcomes())
         | "WriteSummary" >> beam.Map(image_records.write_json,
                                      _summary_path(work_dir, split_pattern)))
    return results.examples


# --- executor --------------------------------------------------------------------------------

def content_digest(summary: dict) -> str:
    """What a split holds, whatever its path or record order: SHA-256 over the sorted content
    digests of its kept images and its count per label. Two ingests of the same images, from
    any folder, give the same value (``ablation report`` compares it between shards)."""
    text = json.dumps([sorted(summary.get("digests", ())),
                       sorted((str(label), n) for label, n in summary.get("per_label", {}).items())])
    return hashlib.sha256(text.encode()).hexdigest()


def _skip_report(summaries: dict[str, dict], eval_split_name: str) -> dict[str, Any]:
    """skipped.json's content from the per-split summaries."""
    report: dict[str, Any] = {split: summary["skipped"] for split, summary in summaries.items()}
    report["examples"] = {split: summary["kept"] for split, summary in summaries.items()}
    first = sorted(entry for summary in summaries.values() for entry in summary["first_skipped"])
    report["first_skipped"] = [where for where, _ in first[:image_records.FIRST_SKIPPED]]
    report["eval_split_name"] = eval_split_name
    train = set(summaries.get(ds.TRAIN, {}).get("digests", ()))
    for key in (image_records.EXIF_ROTATED, image_records.LARGE):
        report[key] = {split: summary.get(key, 0) for split, summary in summaries.items()}
    report["duplicates_of_train"] = {
        split: len(train.intersection(summary.get("digests", ())))
        for split, summary in summaries.items() if split != ds.TRAIN}
    report["content_sha256"] = {split: content_digest(summary)
                                for split, summary in summaries.items()}
    for where, reason in first[:image_records.FIRST_SKIPPED]:
        logging.warning("ImageExampleGen skipped %s: %s", where, reason)
    return report


class Executor(LocalBeamExecutorMixin, base_example_gen_executor.BaseExampleGenExecutor):
    """ImageExampleGen's Beam executor. It never builds the TFX package TFX's Beam executors
    build for remote workers (``components.beam_executors``): its workers never import TFX. What
    a remote runner's workers need is this project's ``components`` package, given with
    ``--extra_package`` or a container image (see the README).

    ``Do`` opens the data set and plans its splits before Beam runs (a bad data string, a
    missing folder, an unknown tfds set or split, or an input config whose splits are not
    ``ImageGenConfig.splits`` raise ValueError naming it), builds each split with TFX's
    ``GenerateExamplesByBeam`` (one ``_ImageToExample`` per input split), writes it with
    ``_WriteSplit``, sets the payload and file format properties as TFX's ExampleGen does, then
    writes ``labels.json`` and ``skipped.json`` next to the splits and sets the artifact's custom
    properties. It raises ValueError naming the data set when no image at all was kept.
    """

    WORKERS_IMPORT_TFX = False  # they import components.image_records: see its docstring

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802
        return _ImageToExample

    def Do(self, input_dict: dict[str, list[types.Artifact]],  # noqa: N802
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        config = ImageGenConfig.from_exec_properties(exec_properties)
        opened = _open_source(config)
        plan = _split_plan(opened, config)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        input_config, output_config = _split_configs(exec_properties)
        _check_input_splits(input_config, config)
        examples.split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config))
        work_dir = os.path.join(examples.uri, _WORK_DIR_NAME)
        fileio.makedirs(work_dir)
        with self._make_beam_pipeline() as pipeline:
            splits = self.GenerateExamplesByBeam(pipeline,
                                                 {**exec_properties, _WORK_DIR_KEY: work_dir,
                                                  _OPENED_KEY: opened})
            for name, serialized in splits.items():
                _ = serialized | f"WriteSplit[{name}]" >> _WriteSplit(
                    artifact_utils.get_split_uri([examples], name))
        examples_utils.set_payload_format(examples, exec_properties.get(
            standard_component_specs.OUTPUT_DATA_FORMAT_KEY, example_gen_pb2.FORMAT_TF_EXAMPLE))
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
        summaries = _read_summaries(work_dir, input_config)
        fileio.rmtree(work_dir)
        _publish(examples, config, opened.labels, summaries, plan.eval_split_name)


@beam.ptransform_fn
def _WriteSplit(batches: beam.PCollection, split_uri: str) -> beam.PCollection:  # noqa: N802
    """Writes each work unit's serialized tf.Examples to its own gzipped TFRecord file,
    ``data_tfrecord-IIIII-of-NNNNN.gz`` numbered by the unit's place in the split (the names
    TFX's ``write_split.WriteSplit`` gives its files), without its Reshuffle: each worker writes
    the examples it made, so image bytes never travel between Beam workers, and the split's
    record order in file-name order is the listing's whichever worker took which unit (the
    listing was shuffled instead; see ``_folder_units``). Yields the paths written."""
    return batches | "Write" >> beam.Map(image_records.write_unit, os.path.join(
        split_uri, write_split.DEFAULT_TF_RECORD_FILE_NAME))


def _split_configs(
        exec_properties: dict[str, Any]) -> tuple[example_gen_pb2.Input, example_gen_pb2.Output]:
    input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return input_config, output_config


def _check_input_splits(input_config: example_gen_pb2.Input, config: ImageGenConfig) -> None:
    """Raises ValueError unless the input splits' patterns are ``config.splits`` (a split left
    out would silently drop its records)."""
    patterns = sorted(split.pattern for split in input_config.splits)
    if patterns != sorted(config.splits):
        raise ValueError(f"ImageExampleGen's input config has the split patterns {patterns}, "
                         f"expected {sorted(config.splits)} for validation_fraction "
                         f"{config.validation_fraction} (see image_input_config)")


def _read_summaries(work_dir: str, input_config: example_gen_pb2.Input) -> dict[str, dict]:
    """{output split name: the summary its PTransform wrote}."""
    summaries = {}
    for split in input_config.splits:
        with fileio.open(_summary_path(work_dir, split.pattern)) as file:
            summaries[split.name] = json.loads(file.read())
    return summaries


def _publish(examples: types.Artifact, config: ImageGenConfig, labels: tuple[str, ...],
             summaries: dict[str, dict], eval_split_name: str) -> None:
    """Writes labels.json and skipped.json, sets the custom properties, logs the outcome;
    raises ValueError naming the data set if no image was kept."""
    report = _skip_report(summaries, eval_split_name)
    report["subset"] = subset_rule(config)
    image_records.write_json({"names": list(labels), "num_classes": len(labels),
                              "source": config.data}, os.path.join(examples.uri, LABELS_FILE))
    image_records.write_json(report, os.path.join(examples.uri, SKIPPED_FILE))
    examples.set_string_custom_property("skipped_json", json.dumps(report, sort_keys=True))
    examples.set_int_custom_property("num_classes", len(labels))
    examples.set_string_custom_property("eval_split_name", eval_split_name)
    for split, count in report["examples"].items():
        examples.set_int_custom_property(f"examples_{split}", count)
    skipped = {split: report[split] for split in summaries}
    logging.info("ImageExampleGen: %s examples %s (eval: %s), skipped %s", config.data,
                 report["examples"], eval_split_name, skipped)
    if not sum(report["examples"].values()):
        raise ValueError(f"no valid images in data {config.data!r} (skipped: {skipped})")
    _check_classes(summaries, labels, config.data, limits_text(config))


def _check_classes(summaries: dict[str, dict], labels: tuple[str, ...], data: str,
                   limits: str) -> None:
    """Raises ValueError, before anything trains, unless at least 2 classes have train images
    and every class of another split has train images too. `limits` names the subset settings
    in force, for the hint."""
    hint = f" ({limits} may keep too few: raise it)" if limits else ""
    def present(split: str) -> set[int]:
        return {int(label) for label, n in summaries[split].get("per_label", {}).items() if n}

    def names(indices) -> str:
        return ", ".join(labels[i] for i in sorted(indices))

    train = present(ds.TRAIN)
    if len(train) < 2:
        raise ValueError(f"data {data!r}: {len(train)} class(es) have valid train images "
                         f"({names(train) or 'none'}); a classifier needs at least 2: add train "
                         f"images of the other classes ({names(set(range(len(labels))) - train)})"
                         + hint)
    for split in sorted(set(summaries) - {ds.TRAIN}):
        unseen = present(split) - train
        if unseen:
            raise ValueError(f"data {data!r}: the {split} split has images of class(es) with no "
                             f"valid train image ({names(unseen)}): no model can learn them; add "
                             f"train images of those classes or remove their {split} folders"
                             + hint)


class Driver(example_gen_driver.QueryBasedDriver):
    """ImageExampleGen's driver: TFX's query-based one, plus the ``input_fingerprint`` exec
    property that TFX's file-based ExampleGens set. Exec properties are part of the cache key,
    so an image folder whose files were added, removed or rewritten since the cached run is
    read again (as are the components after it); an unchanged one is still taken from the
    cache. The executor's output artifact records the fingerprint too."""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info,
                                                          component_info)
        config = ImageGenConfig.from_exec_properties(exec_properties)
        exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = input_fingerprint(config)
        return exec_properties


class ImageExampleGen(example_gen_component.QueryBasedExampleGen):
    """Ingests an image classification data set as ``train`` and ``eval`` tf.Example splits,
    and a ``validation`` split held out of train if asked.

    Args:
      data: ``tfds:NAME[:CONFIG]`` or ``imagefolder:PATH`` (``resnet_ablation.data_source``).
      eval_fraction: share of train records moved to eval when the source has no eval split.
      tfds_data_dir, tfds_download_dir, tfds_manual_dir: tfds' ``data_dir``, ``download_dir``
        and ``DownloadConfig(manual_dir=...)``; None uses tfds' defaults.
      train_limit: keep only this many train records (after validation is carved out), chosen
        deterministically by id hash.
      validation_fraction: share of train records moved, by id hash, to a third split
        ``validation`` (disjoint from train and eval); 0 (the default) writes no such split.
      train_per_class, eval_per_class: keep only this many records of each class of train /
        eval, chosen by id hash (a class-balanced subset; see ``ImageGenConfig``).

    Raises ValueError at construction for an invalid data string (not a missing path: the
    folder needs to exist only where the executor runs), fraction or limit. That
    eval_fraction + validation_fraction leave some train records is checked by the executor,
    which knows whether the source has its own eval split.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = Driver

    def __init__(self, data: str, eval_fraction: float = ds.DEFAULT_EVAL_FRACTION,
                 tfds_data_dir: str | None = None, tfds_download_dir: str | None = None,
                 tfds_manual_dir: str | None = None, train_limit: int | None = None,
                 validation_fraction: float = 0.0, train_per_class: int | None = None,
                 eval_per_class: int | None = None):
        config = ImageGenConfig(data, eval_fraction, tfds_data_dir, tfds_download_dir,
                                tfds_manual_dir, train_limit, validation_fraction,
                                train_per_class, eval_per_class)
        super().__init__(input_config=image_input_config(config.splits),
                         output_config=example_gen_pb2.Output(), custom_config=config.to_proto())


def image_input_config(splits: tuple[str, ...] = ds.LOGICAL_SPLITS) -> example_gen_pb2.Input:
    """One input split per logical split (``ImageGenConfig.splits``), its pattern the split's
    name: train -> train, eval -> eval (, validation -> validation)."""
    return example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=split, pattern=split) for split in splits])
