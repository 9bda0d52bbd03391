"""The model family: parameter counts against the references, shapes, and structure."""

import math

import numpy as np
import pytest

from components import model_specs, models
from components.keras_lib import keras

# torchvision's trainable parameter counts at 1000 classes.
IMAGENET_TRAINABLE = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def _shortcut_params(model):
    return sum(int(np.prod(w.shape)) for layer in model.layers if "_shortcut" in layer.name
               for w in layer.trainable_weights)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_imagenet_counts_match_torchvision_and_plain_drops_only_projections(depth):
    resnet = models.build_model(f"resnet{depth}", 1000, (224, 224, 3))
    plain = models.build_model(f"plain{depth}", 1000, (224, 224, 3))
    assert models.trainable_params(resnet) == IMAGENET_TRAINABLE[f"resnet{depth}"]
    assert models.trainable_params(plain) == (
        models.trainable_params(resnet) - _shortcut_params(resnet))


def test_plain_counts_quoted_in_issue():
    assert models.trainable_params(models.build_model("plain50", 1000, (224, 224, 3))) == 22_780_456
    assert models.trainable_params(models.build_model("plain34", 1000, (224, 224, 3))) == 21_623_848


@pytest.mark.parametrize("depth, millions, digits",
                         [(20, 0.27, 2), (32, 0.46, 2), (44, 0.66, 2), (56, 0.85, 2), (110, 1.7, 1)])
def test_cifar_counts_match_paper_table_6(depth, millions, digits):
    resnet = models.build_model(f"cifar_resnet{depth}", 10, (32, 32, 3))
    plain = models.build_model(f"cifar_plain{depth}", 10, (32, 32, 3))
    count = models.trainable_params(resnet)
    assert round(count / 1e6, digits) == millions
    assert models.trainable_params(plain) == count  # option A shortcuts have no parameters


def test_cifar_resnet20_exact():
    assert models.trainable_params(models.build_model("cifar_resnet20", 10, (32, 32, 3))) == 269_722


@pytest.mark.parametrize("name, size, classes", [
    ("resnet18", 32, 10), ("plain50", 32, 10), ("cifar_resnet20", 32, 10),
    ("cifar_plain56", 32, 100), ("resnet50", 224, 1000), ("plain34", 224, 2),
])
def test_output_is_a_probability_vector(name, size, classes):
    model = models.build_model(name, classes, (size, size, 3))
    images = np.random.default_rng(0).standard_normal((2, size, size, 3), np.float32)
    probabilities = model(images, training=False).numpy()
    assert probabilities.shape == (2, classes)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.build_model("cifar_resnet20", 10, (32, 32, 3))
        assert model.get_layer("stem_conv").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "cifar_resnet20"])
def test_one_add_per_residual_block_and_none_in_plain_twin(name):
    spec = model_specs.get_spec(name)
    count_adds = lambda model: sum(isinstance(l, keras.layers.Add) for l in model.layers)
    resnet = models.build_model(name, 10, (32, 32, 3))
    plain = models.build_model(spec.twin, 10, (32, 32, 3))
    assert count_adds(resnet) == sum(spec.blocks_per_stage)
    assert count_adds(plain) == 0
    assert len(models.main_path_convolutions(resnet)) == len(models.main_path_convolutions(plain))


@pytest.mark.parametrize("name", ["resnet50", "cifar_plain20"])
def test_every_convolution_is_biasless_and_followed_by_batchnorm(name):
    model = models.build_model(name, 10, (32, 32, 3))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs
    for conv in convs:
        assert not conv.use_bias, conv.name
        consumers = [node.outbound_layer for node in conv.outbound_nodes]
        assert [type(c) for c in consumers] == [keras.layers.BatchNormalization], conv.name


def test_depth_counts_weighted_layers():
    for name in ["resnet18", "resnet34", "resnet50", "resnet101", "cifar_resnet56"]:
        spec = model_specs.get_spec(name)
        model = models.build_model(name, 10, (32, 32, 3))
        # depth = main-path convolutions + the dense head
        assert len(models.main_path_convolutions(model)) + 1 == spec.depth, name


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    y = models.ZeroPadShortcut(channels=8, stride=2)(x).numpy()
    assert y.shape == (2, 2, 2, 8)
    np.testing.assert_array_equal(y[..., 2:5], x[:, ::2, ::2, :])
    assert not y[..., :2].any() and not y[..., 5:].any()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet51'.*resnet50.*cifar_plain110"):
        models.build_model("resnet51", 10, (32, 32, 3))


def test_twins_pair_up():
    for name in model_specs.MODEL_NAMES:
        spec = model_specs.get_spec(name)
        twin = model_specs.get_spec(spec.twin)
        assert twin.twin == name and twin.residual != spec.residual
        assert (twin.depth, twin.block, twin.blocks_per_stage) == (
            spec.depth, spec.block, spec.blocks_per_stage)


@pytest.mark.parametrize("name", ["plain18", "resnet18", "cifar_resnet20"])
def test_gradient_profile_has_one_finite_positive_entry_per_convolution(name):
    keras.utils.set_random_seed(0)
    model = models.build_model(name, 10, (32, 32, 3))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4, 32, 32, 3), np.float32)
    labels = rng.integers(0, 10, 4)
    profile = models.conv_gradient_norms(model, images, labels)
    assert [layer for layer, _ in profile] == [c.name for c in models.main_path_convolutions(model)]
    assert len(profile) == model_specs.get_spec(name).depth - 1
    assert all(math.isfinite(norm) and norm > 0 for _, norm in profile)
