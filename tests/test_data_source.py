"""The data string's one owner: parsing, anchoring, relative forms, and class names."""

import os
import pathlib

import pytest

from pipeline import config as config_lib
from resnet_ablation import data_source as ds


def test_a_relative_image_folder_is_anchored_to_the_base_and_tilde_expanded(tmp_path):
    assert ds.parse_data("imagefolder:a/b", tmp_path).path == str(tmp_path / "a" / "b")
    assert ds.parse_data("imagefolder:a", None).path == os.path.join(os.getcwd(), "a")
    assert ds.parse_data("imagefolder:/x/y", tmp_path).path == "/x/y"
    assert ds.parse_data("imagefolder:~/x").path == os.path.join(os.path.expanduser("~"), "x")


@pytest.mark.parametrize("spec", ["imagefolder:", "", "tfds:", "tfds:Bad Name", "folder:x", None])
def test_invalid_data_strings_are_refused_naming_them(spec):
    with pytest.raises(ValueError, match="invalid data"):
        ds.parse_data(spec)


def test_spec_round_trips_and_is_absolute_for_folders(tmp_path):
    assert ds.parse_data("tfds:cifar10").spec == "tfds:cifar10"
    assert ds.parse_data("tfds:imagenet2012:5.1.0").spec == "tfds:imagenet2012:5.1.0"
    source = ds.parse_data("imagefolder:data", tmp_path)
    assert source.spec == f"imagefolder:{tmp_path / 'data'}"
    assert ds.parse_data(source.spec) == source


def test_relative_to_gives_a_portable_string_or_none_outside_the_root(tmp_path):
    inside = ds.parse_data("imagefolder:data/cifar", tmp_path)
    assert inside.relative_to(tmp_path) == "imagefolder:data/cifar"
    assert ds.parse_data("imagefolder:/elsewhere").relative_to(tmp_path) is None
    assert ds.parse_data("imagefolder:" + str(tmp_path.parent)).relative_to(tmp_path) is None
    assert ds.parse_data("tfds:cifar10").relative_to(tmp_path) == "tfds:cifar10"


def test_profiles_anchor_their_image_folder_to_the_repository():
    config = config_lib.load_profile("cifar_cpu")
    assert config.data == f"imagefolder:{config_lib.REPO_ROOT.parent / 'shared/datasets/cifar10/png'}"
    assert config.source.path == str(config_lib.REPO_ROOT.parent / "shared/datasets/cifar10/png")


def test_class_names_come_from_folder_names_without_listing_files(tmp_path):
    for split, name in (("train", "dog"), ("train", "cat"), ("test", "cat"), ("test", "bird")):
        (tmp_path / split / name).mkdir(parents=True, exist_ok=True)
    (tmp_path / "train" / "cat" / "deep" / "deeper").mkdir(parents=True)
    os.mkfifo(tmp_path / "train" / "cat" / "x.png")  # reading it would block
    source = ds.parse_data("imagefolder:" + str(tmp_path))
    assert ds.class_names(source) == ("bird", "cat", "dog")


def test_class_names_name_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=str(pathlib.Path(tmp_path, "nope"))):
        ds.class_names(ds.parse_data(f"imagefolder:{tmp_path / 'nope'}"))
