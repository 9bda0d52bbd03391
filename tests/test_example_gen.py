"""ImageExampleGen: the real TFX executor on Beam's DirectRunner, on the tiny committed fixtures
under tests/fixtures (regenerate them with tests/fixtures/make_fixtures.py). No mocks."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from google.protobuf import struct_pb2
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from PIL import ImageFile
from tfx.orchestration import metadata, pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as keys
from tfx.utils import proto_utils

from components import example_gen as eg, example_gen_config, image_records
from resnet_ablation import data_source as ds
from tests.helpers import first_by_hash, read_examples

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
PETS, CIFAR_FLAT, BROKEN = FIXTURES / "pets", FIXTURES / "cifar_flat", FIXTURES / "broken"
SMOKE = pathlib.Path(__file__).resolve().parents[1] / "data" / "cifar10_smoke"  # train/, test/
NO_SKIPS = dict.fromkeys(image_records.SKIP_REASONS, 0)


# --- a local tfds data set built from the pets fixture ---------------------------------------

class ExampleGenTestPets(tfds.core.GeneratorBasedBuilder):
    """tfds name "example_gen_test_pets". ClassLabel order dog, cat: deliberately not sorted.

    Config "with_test": train and test splits (pets/train, pets/validation); config
    "train_only": one train split holding all ten images.
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="with_test"),
                       tfds.core.BuilderConfig(name="train_only")]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, supervised_keys=("image", "label"),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(),
                "label": tfds.features.ClassLabel(names=["dog", "cat"])}))

    def _split_generators(self, dl_manager):
        train, test = sorted(PETS.glob("train/*/*")), sorted(PETS.glob("validation/*/*"))
        if self.builder_config.name == "train_only":
            return {"train": self._generate_examples(train + test)}
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, paths):
        for path in paths:
            yield path.name, {"image": str(path), "label": path.parent.name}


class ExampleGenTestText(tfds.core.GeneratorBasedBuilder):
    """tfds name "example_gen_test_text": a ClassLabel but no Image feature (never prepared)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["a", "b"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield "0", {"text": "a", "label": 0}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> pathlib.Path:
    data_dir = tmp_path_factory.mktemp("tfds")
    for config in ("with_test", "train_only"):
        tfds.builder(f"example_gen_test_pets/{config}", data_dir=data_dir).download_and_prepare(
            download_dir=data_dir / "downloads")
    return data_dir


def stored_tfds_records(name: str, data_dir: pathlib.Path, split: str) -> dict[str, tuple]:
    """{tfds id: (image bytes as stored, label)} read with tfds itself."""
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=False,
                        read_config=tfds.ReadConfig(add_tfds_id=True),
                        decoders={"image": tfds.decode.SkipDecoding()})
    return {record["tfds_id"].decode(): (record["image"], int(record["label"]))
            for record in tfds.as_numpy(dataset)}


# --- helpers ---------------------------------------------------------------------------------

def exec_properties(splits=None, **config) -> dict:
    """The exec properties the component would pass; `config` goes into custom_config as is
    (no validation here, so tests can pass invalid settings). The input config has `splits`,
    by default those the config's validation_fraction calls for."""
    struct = struct_pb2.Struct()
    struct.update({key: value for key, value in config.items() if value is not None})
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(struct)
    splits = splits or ds.logical_splits(config.get("validation_fraction", 0.0))
    return {
        keys.INPUT_CONFIG_KEY: proto_utils.proto_to_json(eg.image_input_config(splits)),
        keys.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Output()),
        keys.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(custom_config),
        keys.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        keys.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }


def run_executor(tmp_path: pathlib.Path, data: str, splits=None,
                 **config) -> standard_artifacts.Examples:
    """Runs Executor.Do into a fresh Examples artifact under tmp_path and returns it."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    os.makedirs(examples.uri)
    eg.Executor().Do({}, {keys.EXAMPLES_KEY: [examples]},
                     exec_properties(splits, data=data, **config))
    return examples


def run_pipeline(tmp_path: pathlib.Path, component) -> metadata_store_pb2.Artifact:
    """Runs `component` alone in a LocalDagRunner pipeline with ML Metadata; returns the
    Examples artifact it published."""
    mlmd = metadata.sqlite_metadata_connection_config(str(tmp_path / "mlmd.sqlite"))
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name="example_gen_test", pipeline_root=str(tmp_path / "root"),
        components=[component], metadata_connection_config=mlmd))
    [published] = metadata_store.MetadataStore(mlmd).get_artifacts_by_type("Examples")
    return published


def read_json(examples, name: str):
    return json.loads(pathlib.Path(examples.uri, name).read_text())


def folder_ids(root: pathlib.Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def ids(records) -> list[str]:
    return [record["id"] for record in records]


def split_ids(examples) -> tuple[list[str], list[str]]:
    """The sorted record ids of the train and the eval split."""
    return ids(read_examples(examples, "train")), ids(read_examples(examples, "eval"))


def in_band(record_ids, low: float, high: float) -> list[str]:
    """The sorted ids whose ``id_fraction`` lies in [low, high)."""
    return sorted(i for i in record_ids if low <= ds.id_fraction(i) < high)


# --- 1. image folder with split folders ------------------------------------------------------

def test_split_folders_keep_labels_ids_and_original_bytes(tmp_path):
    data = f"imagefolder:{PETS}"
    examples = run_executor(tmp_path, data)

    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    assert sorted(os.listdir(examples.uri)) == ["Split-eval", "Split-train", "labels.json",
                                                "skipped.json"]
    train, evaluation = read_examples(examples, "train"), read_examples(examples, "eval")
    assert ids(train) == [i for i in folder_ids(PETS) if i.startswith("train/")]
    assert ids(evaluation) == [i for i in folder_ids(PETS) if i.startswith("validation/")]
    assert (len(train), len(evaluation)) == (6, 4)
    for record in train + evaluation:
        class_name = record["id"].split("/")[1]
        assert record["label_name"] == class_name
        assert record["label"] == ["cat", "dog"].index(class_name)
        assert record["image"] == (PETS / record["id"]).read_bytes()

    assert read_json(examples, "labels.json") == {"names": ["cat", "dog"], "num_classes": 2,
                                                  "source": data}
    skipped = read_json(examples, "skipped.json")
    content = skipped.pop("content_sha256")
    assert sorted(content) == ["eval", "train"] and content["train"] != content["eval"]
    assert skipped == {
        "train": NO_SKIPS, "eval": NO_SKIPS, "examples": {"train": 6, "eval": 4},
        "first_skipped": [], "eval_split_name": "validation",  # eval is the validation/ folder
        "exif_rotated": {"train": 0, "eval": 0}, "large": {"train": 0, "eval": 0},
        "duplicates_of_train": {"eval": 0}, "subset": ""}
    assert examples.get_int_custom_property("examples_train") == 6
    assert examples.get_int_custom_property("examples_eval") == 4
    assert examples.get_int_custom_property("num_classes") == 2
    assert examples.get_string_custom_property("eval_split_name") == "validation"
    assert not examples.has_custom_property("examples_validation")
    # what TFX's ExampleGen records, so StatisticsGen, Transform and the Trainer read it as usual
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert examples.get_string_custom_property("file_format") == "tfrecords_gzip"
    assert all(re.fullmatch(r"data_tfrecord-\d{5}-of-\d{5}\.gz", name)
               for split in ("Split-train", "Split-eval")
               for name in os.listdir(pathlib.Path(examples.uri, split)))


def test_eval_images_identical_to_train_images_are_counted(tmp_path):
    """A test image that is a byte copy of a train image (under another name) is found by its
    content digest; re-encoded or different images are not."""
    source = sorted((SMOKE / "train" / "cat").glob("*.png"))[:3]
    dogs = sorted((SMOKE / "train" / "dog").glob("*.png"))[:2]  # a second class, all distinct
    for split, names in (("train", source[:2]), ("test", source[1:])):
        for name in ("cat", "dog"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
        for i, path in enumerate(names):
            shutil.copy(path, tmp_path / "data" / split / "cat" / f"{split}{i}.png")
        shutil.copy(dogs[split == "test"], tmp_path / "data" / split / "dog" / f"{split}.png")
    examples = run_executor(tmp_path, f"imagefolder:{tmp_path / 'data'}")
    assert read_json(examples, "skipped.json")["duplicates_of_train"] == {"eval": 1}


def test_jpegs_with_an_exif_orientation_are_kept_as_stored_and_counted(tmp_path):
    from PIL import Image

    def jpeg(path: pathlib.Path, orientation: int | None) -> None:
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation
        Image.new("RGB", (12, 8), (200, 10, 10)).save(path, "JPEG", exif=exif)

    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            jpeg(tmp_path / "data" / split / name / "plain.jpg", None)
    jpeg(tmp_path / "data" / "train" / "cat" / "turned.jpg", 6)  # shown rotated 90 degrees
    jpeg(tmp_path / "data" / "train" / "dog" / "upright.jpg", 1)  # orientation 1: as stored
    examples = run_executor(tmp_path, f"imagefolder:{tmp_path / 'data'}")
    report = read_json(examples, "skipped.json")
    assert report["exif_rotated"] == {"train": 1, "eval": 0}
    assert report["examples"] == {"train": 4, "eval": 2}
    stored = (tmp_path / "data" / "train" / "cat" / "turned.jpg").read_bytes()
    assert stored in {r["image"] for r in read_examples(examples, "train")}  # bytes as stored


def test_written_order_mixes_classes(tmp_path):
    # Examples are written without a shuffle of their own; the listing is shuffled instead, so
    # the files do not hold one class after another (CIFAR_FLAT: 5 classes of 8 files).
    examples = run_executor(tmp_path, f"imagefolder:{CIFAR_FLAT}")
    files = sorted(pathlib.Path(examples.uri, "Split-train").glob("*.gz"))
    written = [tf.train.Example.FromString(record).features.feature["label"].int64_list.value[0]
               for record in tf.data.TFRecordDataset(
                   [str(f) for f in files], compression_type="GZIP").as_numpy_iterator()]
    runs = sum(1 for before, after in zip(written, written[1:]) if before != after) + 1
    assert len(written) > 20 and runs > len(written) // 2


@pytest.mark.slow
def test_written_order_is_the_listings_whichever_worker_takes_which_unit(tmp_path, monkeypatch):
    # A unit's examples go to the file of its number, so two multi-processing runs, whose
    # workers take the units in different orders, write the same files with the same records.
    monkeypatch.setattr(eg, "FILES_PER_CHUNK", 3)  # CIFAR_FLAT's 40 files: about 14 units
    beam_args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

    def written(run: str) -> dict[str, list[str]]:
        examples = standard_artifacts.Examples()
        examples.uri = str(tmp_path / run)
        os.makedirs(examples.uri)
        eg.Executor(eg.Executor.Context(beam_pipeline_args=list(beam_args))).Do(
            {}, {keys.EXAMPLES_KEY: [examples]}, exec_properties(data=f"imagefolder:{CIFAR_FLAT}"))
        return {path.name: [tf.train.Example.FromString(record).features.feature["id"]
                            .bytes_list.value[0].decode()
                            for record in tf.data.TFRecordDataset(str(path), "GZIP")
                            .as_numpy_iterator()]
                for path in sorted(pathlib.Path(examples.uri, "Split-train").iterdir())}

    first = written("first")
    assert written("second") == first
    count = len(first)
    assert list(first) == [f"data_tfrecord-{i:05d}-of-{count:05d}.gz" for i in range(count)]
    assert [len(ids) for ids in first.values()][:-1] == [3] * (count - 1)
    assert sum(map(len, first.values())) > 20


# --- 2. image folder without split level: hash split -----------------------------------------

def test_stable_hash_is_sha256_and_spreads_evenly():
    record_id = "train/cat/cat.1.jpg"
    expected = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big")
    assert ds.id_hash(record_id) == expected
    fractions = [ds.id_fraction(f"class/{n}.png") for n in range(20_000)]
    assert 0.19 < sum(f < 0.2 for f in fractions) / len(fractions) < 0.21
    assert all(0.0 <= f < 1.0 for f in fractions)


@pytest.mark.slow
def test_no_split_level_is_hash_split_and_deterministic_through_the_pipeline(tmp_path):
    data = f"imagefolder:{CIFAR_FLAT}"
    examples = run_executor(tmp_path / "direct", data)
    train, evaluation = split_ids(examples)
    all_ids = folder_ids(CIFAR_FLAT)
    assert sorted(train + evaluation) == all_ids  # each file exactly once
    assert evaluation == [i for i in all_ids if ds.id_fraction(i) < 0.2]
    assert 4 <= len(evaluation) <= 12  # 20% of 40, give or take the hash
    assert read_json(examples, "labels.json")["names"] == [
        "airplane", "automobile", "bird", "cat", "ship"]

    assert read_json(examples, "skipped.json")["eval_split_name"] == "held_out"

    # The same data again, through the component in a LocalDagRunner pipeline with ML Metadata,
    # now with train_limit: eval is identical, train is the 20 smallest ids by hash (enough
    # for every eval class to keep train images: fewer is refused, see below).
    published = run_pipeline(tmp_path, eg.ImageExampleGen(data=data, train_limit=20))
    assert split_ids(published.uri) == (sorted(first_by_hash(train, 20)), evaluation)
    properties = published.custom_properties
    assert properties["examples_train"].int_value == 20
    assert properties["examples_eval"].int_value == len(evaluation)
    assert properties["eval_split_name"].string_value == "held_out"
    assert properties["span"].int_value == 0
    assert json.loads(properties["skipped_json"].string_value)["examples"] == {
        "train": 20, "eval": len(evaluation)}


@pytest.mark.slow
def test_per_class_limits_keep_the_same_balanced_subset_wherever_the_folder_sits(tmp_path):
    """train_per_class / eval_per_class keep, of every class, the ids with the smallest hash;
    a copy of the folder elsewhere keeps the same images (the id is the path inside it)."""
    per_class = {"train": 7, "eval": 3}
    copy = tmp_path / "elsewhere" / "smoke"
    shutil.copytree(SMOKE, copy)
    artifacts = [run_executor(tmp_path / name, f"imagefolder:{folder}",
                              train_per_class=7, eval_per_class=3)
                 for name, folder in (("here", SMOKE), ("there", copy))]
    chosen = [split_ids(examples) for examples in artifacts]
    assert chosen[0] == chosen[1]
    assert read_json(artifacts[0], "skipped.json")["subset"].startswith(
        "train: the 7 images of each class whose id has the smallest hash; eval: the 3 images")
    for split_index, (split, folder) in enumerate((("train", "train"), ("eval", "test"))):
        by_class = collections.defaultdict(list)
        for record_id in folder_ids(SMOKE / folder):
            by_class[record_id.split("/")[0]].append(f"{folder}/{record_id}")
        expected = sorted(i for class_ids in by_class.values()
                          for i in first_by_hash(class_ids, per_class[split]))
        assert len(by_class) == 10 and len(expected) == 10 * per_class[split]
        assert chosen[0][split_index] == expected


@pytest.mark.slow
def test_a_class_without_train_images_is_refused_before_training(tmp_path):
    """Eval images of a class train lacks (here: train_limit 5 keeps 5 of 5 classes' images,
    not all classes), and a single train class, fail ExampleGen, naming the classes."""
    with pytest.raises(ValueError, match=r"with no valid train image \(.+\).*train_limit 5 "):
        run_executor(tmp_path / "limited", f"imagefolder:{CIFAR_FLAT}", train_limit=5)
    one_class = tmp_path / "one" / "train" / "cat"
    one_class.mkdir(parents=True)
    for path in sorted((SMOKE / "train" / "cat").glob("*.png"))[:3]:
        shutil.copy(path, one_class / path.name)
    with pytest.raises(ValueError, match=r"1 class\(es\) have valid train images \(cat\); a "
                                         r"classifier needs at least 2"):
        run_executor(tmp_path / "one-run", f"imagefolder:{tmp_path / 'one'}")


# --- 3. a local tfds data set ----------------------------------------------------------------

@pytest.mark.slow
def test_tfds_set_with_test_split_keeps_classlabel_order_and_stored_bytes(tmp_path, tfds_dir):
    name = "example_gen_test_pets/with_test"
    examples = run_executor(tmp_path, "tfds:example_gen_test_pets:with_test",
                            tfds_data_dir=str(tfds_dir), train_limit=4)
    stored = {split: stored_tfds_records(name, tfds_dir, split) for split in ("train", "test")}
    train, evaluation = read_examples(examples, "train"), read_examples(examples, "eval")

    assert ids(evaluation) == sorted(stored["test"])  # eval is never limited
    assert ids(train) == sorted(first_by_hash(stored["train"], 4))
    for record in train + evaluation:
        image, label = {**stored["train"], **stored["test"]}[record["id"]]
        assert (record["image"], record["label"]) == (image, label)
        assert record["label_name"] == ["dog", "cat"][label]
    assert {record["label_name"] for record in evaluation} == {"dog", "cat"}
    assert read_json(examples, "labels.json") == {
        "names": ["dog", "cat"], "num_classes": 2, "source": "tfds:example_gen_test_pets:with_test"}
    assert read_json(examples, "skipped.json")["examples"] == {"train": 4, "eval": 4}
    assert examples.get_string_custom_property("eval_split_name") == "test"


@pytest.mark.slow
def test_tfds_set_with_only_train_is_hash_split(tmp_path, tfds_dir):
    examples = run_executor(tmp_path, "tfds:example_gen_test_pets:train_only",
                            tfds_data_dir=str(tfds_dir), eval_fraction=0.5)
    stored = stored_tfds_records("example_gen_test_pets/train_only", tfds_dir, "train")
    train, evaluation = split_ids(examples)
    assert sorted(train + evaluation) == sorted(stored)
    assert evaluation == sorted(i for i in stored if ds.id_fraction(i) < 0.5)
    assert 0 < len(evaluation) < 10
    assert examples.get_string_custom_property("eval_split_name") == "held_out"


# --- 4. broken files -------------------------------------------------------------------------

def test_broken_files_are_skipped_counted_and_reported(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    examples = run_executor(tmp_path, f"imagefolder:{BROKEN}")

    skipped = {"train/cat/empty.jpg": "empty", "train/cat/text.jpg": "not_an_image",
               "train/cat/image.tif": "unsupported_format",
               "train/cat/truncated.jpg": "truncated", "train/cat/corrupt.png": "undecodable",
               "validation/dog/empty.png": "empty"}
    kept = [i for i in folder_ids(BROKEN) if i not in skipped]
    report = read_json(examples, "skipped.json")
    content = report.pop("content_sha256")
    assert sorted(content) == ["eval", "train"]
    assert report == {
        "train": {**NO_SKIPS, "empty": 1, "not_an_image": 1, "unsupported_format": 1,
                  "truncated": 1, "undecodable": 1},
        "eval": {**NO_SKIPS, "empty": 1},
        "examples": {"train": 8, "eval": 1},
        "first_skipped": sorted(str(BROKEN / i) for i in skipped),
        "eval_split_name": "validation", "exif_rotated": {"train": 0, "eval": 0},
        "large": {"train": 0, "eval": 0}, "duplicates_of_train": {"eval": 0}, "subset": ""}
    train, evaluation = read_examples(examples, "train"), read_examples(examples, "eval")
    assert ids(train) + ids(evaluation) == kept
    assert {i.split("/")[-1] for i in ids(train)} >= {
        "png_named.jpg", "gray.jpg", "cmyk.jpg", "palette.png", "tiny.gif", "tiny.bmp"}
    for record in train + evaluation:
        assert record["image"] == (BROKEN / record["id"]).read_bytes()

    assert json.loads(examples.get_string_custom_property("skipped_json")) == {
        **report, "content_sha256": content}
    assert examples.get_int_custom_property("examples_train") == 8
    assert examples.get_int_custom_property("examples_eval") == 1
    for record_id, reason in skipped.items():
        assert f"skipped {BROKEN / record_id}: {reason}" in caplog.text
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- 5. errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["", "cifar10", "tfds:", "tfds:Cifar10", "tfds:a:b:c",
                                  "imagefolder:", "folder:/tmp", " tfds:cifar10"])
def test_bad_data_strings_are_rejected_naming_the_input(spec):
    with pytest.raises(ValueError) as error:
        ds.parse_data(spec)
    assert f"invalid data {spec!r}: expected 'tfds:NAME[:CONFIG]'" in str(error.value)
    assert "'imagefolder:PATH'" in str(error.value)


def test_data_strings_parse():
    assert ds.parse_data("tfds:cifar10") == ds.DataSource("tfds", name="cifar10")
    assert ds.parse_data("tfds:emnist:balanced") == ds.DataSource("tfds", name="emnist/balanced")
    assert ds.parse_data(f"imagefolder:{PETS}") == ds.DataSource("imagefolder", path=str(PETS))
    assert ds.parse_data("imagefolder:rel/dir").path == os.path.abspath("rel/dir")


def test_component_and_executor_reject_a_bad_data_string(tmp_path):
    with pytest.raises(ValueError, match="invalid data 'cifar10'"):
        eg.ImageExampleGen(data="cifar10")
    with pytest.raises(ValueError, match="eval_fraction must be between 0 and 1"):
        eg.ImageExampleGen(data="tfds:cifar10", eval_fraction=1.0)
    with pytest.raises(ValueError, match="train_limit must be a positive integer, got 0"):
        eg.ImageExampleGen(data="tfds:cifar10", train_limit=0)
    with pytest.raises(ValueError, match="eval_per_class must be a positive integer, got 0"):
        eg.ImageExampleGen(data="tfds:cifar10", eval_per_class=0)
    with pytest.raises(ValueError, match="train_limit and train_per_class exclude each other"):
        eg.ImageExampleGen(data="tfds:cifar10", train_limit=5, train_per_class=5)
    for fraction in (-0.1, 1.0):
        with pytest.raises(ValueError, match=f"validation_fraction must be at least 0 .*and "
                                             f"below 1, got {fraction}"):
            eg.ImageExampleGen(data="tfds:cifar10", validation_fraction=fraction)
    with pytest.raises(ValueError, match="invalid data 'cifar10'"):
        run_executor(tmp_path, "cifar10")


def test_missing_folder_fails_before_beam_runs(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(ValueError, match=re.escape(f"image folder '{missing}' does not exist")):
        run_executor(tmp_path, f"imagefolder:{missing}")
    assert os.listdir(tmp_path / "examples") == []


@pytest.mark.parametrize("data, message", [
    ("tfds:no_such_data_set_xyz", "unknown tfds data set 'no_such_data_set_xyz'"),
    ("tfds:example_gen_test_pets:bogus",
     "cannot open tfds data set 'example_gen_test_pets/bogus': .*BuilderConfig bogus not found"),
])
def test_unknown_tfds_name_or_config_is_rejected_naming_it(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        run_executor(tmp_path, data, tfds_data_dir=str(tmp_path))


def test_tfds_set_without_image_feature_is_rejected_naming_its_features(tmp_path):
    with pytest.raises(ValueError, match="'example_gen_test_text' is not an image classification "
                                         "set.*has text: Text, label: ClassLabel"):
        ds.open_tfds("example_gen_test_text", data_dir=str(tmp_path))


def test_zero_valid_images_fail_naming_the_data_set(tmp_path):
    folder = tmp_path / "junk" / "cls"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_text("not an image")
    (folder / "b.png").write_bytes(b"")
    data = f"imagefolder:{tmp_path / 'junk'}"
    with pytest.raises(ValueError, match=re.escape(f"no valid images in data '{data}'")):
        run_executor(tmp_path, data)


@pytest.mark.parametrize("folders, message", [
    (["train/cat", "extra/cat"], r"mixes split folders \['train'\] with other folders \['extra'\]"),
    (["validation/cat"], r"has split folders \['validation'\] but no 'train'"),
    ([], "has no class folders"),
])
def test_bad_folder_layouts_are_rejected_naming_the_folder(tmp_path, folders, message):
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True)
    with pytest.raises(ValueError, match=re.escape(f"image folder '{tmp_path}' ") + message):
        ds.list_imagefolder(str(tmp_path))


# --- 6. validation split and the eval split's name (issue #11) -------------------------------

@pytest.mark.slow
def test_validation_split_follows_the_papers_cifar_protocol(tmp_path):
    # A source with a test split: validation is [0, 0.1) of train by id hash, ~10 % (CIFAR-10:
    # 45k train / 5k validation); eval is the test folder whole; train_limit picks among the rest.
    source_train = [i for i in folder_ids(SMOKE) if i.startswith("train/")]
    examples = run_executor(tmp_path, f"imagefolder:{SMOKE}", validation_fraction=0.1,
                            train_limit=20)

    assert artifact_utils.decode_split_names(examples.split_names) == [
        "train", "eval", "validation"]
    assert sorted(os.listdir(examples.uri)) == [
        "Split-eval", "Split-train", "Split-validation", "labels.json", "skipped.json"]
    train, evaluation = split_ids(examples)
    validation = ids(read_examples(examples, "validation"))
    assert validation == in_band(source_train, 0.0, 0.1)  # never limited
    assert 0.07 <= len(validation) / len(source_train) <= 0.13
    assert train == sorted(first_by_hash(in_band(source_train, 0.1, 1.0), 20))
    assert evaluation == [i for i in folder_ids(SMOKE) if i.startswith("test/")]
    assert not set(validation) & (set(train) | set(evaluation))

    report = read_json(examples, "skipped.json")
    assert report["examples"] == {"train": 20, "eval": len(evaluation),
                                  "validation": len(validation)}
    assert report["validation"] == NO_SKIPS and report["eval_split_name"] == "test"
    assert examples.get_int_custom_property("examples_validation") == len(validation)
    assert examples.get_string_custom_property("eval_split_name") == "test"


@pytest.mark.slow
def test_validation_split_is_deterministic_and_disjoint_from_a_held_out_eval(tmp_path):
    # A flat folder: eval is [0, 0.2) by id hash, validation the next band [0.2, 0.45). Run once
    # through the executor, once through the component in a pipeline: the same records.
    data, all_ids = f"imagefolder:{CIFAR_FLAT}", folder_ids(CIFAR_FLAT)
    direct = run_executor(tmp_path / "direct", data, validation_fraction=0.25)
    published = run_pipeline(tmp_path, eg.ImageExampleGen(data=data, validation_fraction=0.25))

    assert published.properties["split_names"].string_value == direct.split_names
    for split in ("train", "eval", "validation"):
        assert read_examples(published.uri, split) == read_examples(direct, split)
    train, evaluation = split_ids(direct)
    validation = ids(read_examples(direct, "validation"))
    assert evaluation == in_band(all_ids, 0.0, 0.2)
    assert validation == in_band(all_ids, 0.2, 0.45)
    assert sorted(train + evaluation + validation) == all_ids  # each file exactly once
    assert 4 <= len(validation) <= 16  # 25 % of 40, give or take the hash
    properties = published.custom_properties
    assert properties["examples_validation"].int_value == len(validation)
    assert properties["eval_split_name"].string_value == "held_out"


@pytest.mark.slow
def test_tfds_validation_split_is_carved_from_train(tmp_path, tfds_dir):
    examples = run_executor(tmp_path, "tfds:example_gen_test_pets:with_test",
                            tfds_data_dir=str(tfds_dir), validation_fraction=0.3)
    stored = {split: stored_tfds_records("example_gen_test_pets/with_test", tfds_dir, split)
              for split in ("train", "test")}
    validation = read_examples(examples, "validation")
    assert ids(validation) == in_band(stored["train"], 0.0, 0.3) != []
    assert split_ids(examples) == (in_band(stored["train"], 0.3, 1.0), sorted(stored["test"]))
    for record in validation:
        assert (record["image"], record["label"]) == stored["train"][record["id"]]
    assert examples.get_string_custom_property("eval_split_name") == "test"


@pytest.mark.slow
def test_zero_validation_fraction_changes_nothing(tmp_path):
    # No validation split: the component's exec properties (its cache key) and every output are
    # what they were before the setting existed.
    data = f"imagefolder:{PETS}"
    component = eg.ImageExampleGen(data=data, validation_fraction=0.0)
    assert component.exec_properties == eg.ImageExampleGen(data=data).exec_properties
    struct = struct_pb2.Struct()
    example_gen_config.ImageGenConfig(data, validation_fraction=0.0).to_proto().custom_config.Unpack(struct)
    assert set(struct.keys()) == {"data", "eval_fraction"}

    default = run_executor(tmp_path / "default", data)
    zero = run_executor(tmp_path / "zero", data, validation_fraction=0.0)
    assert zero.split_names == default.split_names
    assert sorted(os.listdir(zero.uri)) == sorted(os.listdir(default.uri))
    for split in ("train", "eval"):
        assert read_examples(zero, split) == read_examples(default, split)
    assert read_json(zero, "skipped.json") == read_json(default, "skipped.json")
    assert zero.mlmd_artifact.custom_properties == default.mlmd_artifact.custom_properties


def test_executor_rejects_input_splits_without_the_validation_split(tmp_path):
    with pytest.raises(ValueError, match=re.escape(
            "input config has the split patterns ['eval', 'train'], expected ['eval', 'train', "
            "'validation'] for validation_fraction 0.1")):
        run_executor(tmp_path, f"imagefolder:{PETS}", splits=ds.LOGICAL_SPLITS,
                     validation_fraction=0.1)
    assert os.listdir(tmp_path / "examples") == []


@pytest.mark.parametrize("source_splits, name", [
    (["train"], "held_out"), (["train", "test"], "test"), (["train", "validation"], "validation"),
    (["train", "val"], "validation"), (["valid", "train"], "validation"),
    (["train", "eval"], "eval"), (["validation", "train", "test"], "test+validation"),
])
def test_eval_split_name_names_the_source_of_eval(source_splits, name):
    assert ds.eval_split_name(source_splits) == name
    assert ds.SplitPlan.of(source_splits).eval_split_name == name


def test_validation_band_is_disjoint_from_eval_and_sized_by_its_fraction():
    record_ids = [f"class/{n}.png" for n in range(20_000)]

    def shares(plan: ds.SplitPlan) -> dict[str, float]:
        counts = collections.Counter(plan.assign(i, "train") for i in record_ids)
        return {split: count / len(record_ids) for split, count in counts.items()}

    with_test = ds.SplitPlan.of(["train", "test"], validation_fraction=0.1)
    assert with_test.logical_splits == ("train", "eval", "validation")
    assert with_test.sources_for("validation") == ("train",)
    assert with_test.sources_for("eval") == ("test",)
    assert with_test.assign("class/0.png", "test") == "eval"
    assert with_test.bands == (("validation", 0.0, 0.1),)
    assert shares(with_test).keys() == {"train", "validation"}
    assert 0.09 < shares(with_test)["validation"] < 0.11

    held_out = ds.SplitPlan.of(["train"], eval_fraction=0.2, validation_fraction=0.1)
    assert held_out.bands == (("eval", 0.0, 0.2), ("validation", 0.2, pytest.approx(0.3)))
    assert held_out.sources_for("eval") == held_out.sources_for("validation") == ("train",)
    assert 0.19 < shares(held_out)["eval"] < 0.21
    assert 0.09 < shares(held_out)["validation"] < 0.11

    off = ds.SplitPlan.of(["train", "test"])
    assert off.logical_splits == ("train", "eval") and off.sources_for("validation") == ()
    assert shares(off) == {"train": 1.0}


@pytest.mark.parametrize("source_splits, eval_fraction, validation_fraction, message", [
    (["train"], 0.2, -0.1, "validation_fraction must be at least 0 .*got -0.1"),
    (["train"], 0.2, 1.0, "validation_fraction must be at least 0 .*below 1, got 1.0"),
    (["train"], 0.5, 0.5, "eval_fraction 0.5 \\+ validation_fraction 0.5 leave no train records"),
])
def test_split_plan_rejects_bad_validation_fractions(source_splits, eval_fraction,
                                                      validation_fraction, message):
    with pytest.raises(ValueError, match=message):
        ds.SplitPlan.of(source_splits, eval_fraction, validation_fraction)


def test_a_source_eval_split_leaves_eval_fraction_out_of_the_sum():
    assert ds.SplitPlan.of(["train", "test"], 0.5, 0.6).bands == (("validation", 0.0, 0.6),)


# --- splits and listing (pure Python) --------------------------------------------------------

def test_split_names_map_onto_train_and_eval():
    assert [ds.logical_split(name) for name in ("train", "test", "validation", "val", "eval",
                                                "valid")] == ["train"] + ["eval"] * 5
    with pytest.raises(ValueError, match="unknown split 'extra'"):
        ds.SplitPlan.of(["train", "extra"])
    plan = ds.SplitPlan.of(["train", "test", "validation"])
    assert plan.sources_for("eval") == ("test", "validation")
    assert plan.assign("any", "train") == "train"
    hashed = ds.SplitPlan.of(["train"], eval_fraction=0.2)
    assert hashed.sources_for("eval") == ("train",)
    assert {hashed.assign(f"{n}", "train") for n in range(100)} == {"train", "eval"}


def test_listing_ignores_hidden_entries_and_reads_nested_files(tmp_path):
    for path in ("b/.DS_Store", "b/x.png", "b/sub/y.png", "a/.hidden/z.png", ".git/HEAD"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    folder = ds.list_imagefolder(str(tmp_path))
    assert folder.labels == ("a", "b")
    assert [(f.id, f.label, f.source_split) for f in folder.files] == [
        ("b/sub/y.png", 1, "train"), ("b/x.png", 1, "train")]


@pytest.mark.slow
def test_the_content_digest_follows_the_images_not_their_folder(tmp_path):
    """The same images at another path give the same ``content_sha256`` (shards merge by it);
    one image less, or one rewritten, gives another."""
    def content(folder: pathlib.Path, name: str) -> dict:
        return read_json(run_executor(tmp_path / name, f"imagefolder:{folder}"),
                         "skipped.json")["content_sha256"]

    moved = tmp_path / "elsewhere" / "pets"
    shutil.copytree(PETS, moved)
    original = content(PETS, "original")
    assert content(moved, "moved") == original
    first_train = sorted((moved / "train").rglob("*.*"))[0]
    first_train.unlink()
    fewer = content(moved, "fewer")
    assert fewer["train"] != original["train"] and fewer["eval"] == original["eval"]
    other = sorted((moved / "validation").rglob("*.*"))[0]
    other.write_bytes(sorted((moved / "train").rglob("*.*"))[0].read_bytes())
    assert content(moved, "rewritten")["eval"] != original["eval"]
