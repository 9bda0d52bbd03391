"""The model family: parameter counts against the references, shapes, and structure."""

import functools
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from resnet_ablation import model_specs, models
from resnet_ablation.keras2 import keras

# torchvision's trainable parameter counts at 1000 classes.
IMAGENET_TRAINABLE = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


RESIDUAL_NAMES = [name for name in model_specs.MODEL_NAMES if model_specs.get_spec(name).residual]


@functools.cache
def _trainable(name, shortcut=None):
    """Trainable count of `name`, built once per session with 1000 classes if ImageNet-style,
    else 10 (the counts do not depend on the input size, so 32x32 images)."""
    classes = 1000 if model_specs.get_spec(name).family == "imagenet" else 10
    return models.trainable_params(models.build_model(name, classes, (32, 32, 3),
                                                      shortcut=shortcut))


def _projection_params(name, every_block):
    """Parameters of 1x1 projection + BatchNorm shortcuts in `name`, from the spec table alone:
    in every block (option C) or only where a block changes the shape (option B)."""
    spec = model_specs.get_spec(name)
    total, channels = 0, spec.filters_per_stage[0]  # the stem's output channels
    for stage, (blocks, filters) in enumerate(zip(spec.blocks_per_stage, spec.filters_per_stage)):
        out = filters * spec.expansion
        for block in range(blocks):
            if every_block or (stage > 0 and block == 0) or channels != out:
                total += channels * out + 2 * out  # kernel, BatchNorm gamma and beta
            channels = out
    return total


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_imagenet_counts_match_torchvision(depth):
    assert _trainable(f"resnet{depth}") == IMAGENET_TRAINABLE[f"resnet{depth}"]


@pytest.mark.slow
def test_plain_counts_quoted_in_issue():
    assert _trainable("plain50") == 22_780_456
    assert _trainable("plain34") == 21_623_848


@pytest.mark.slow
@pytest.mark.parametrize("depth, millions, digits",
                         [(20, 0.27, 2), (32, 0.46, 2), (44, 0.66, 2), (56, 0.85, 2), (110, 1.7, 1)])
def test_cifar_counts_match_paper_table_6(depth, millions, digits):
    count = _trainable(f"cifar_resnet{depth}")
    assert round(count / 1e6, digits) == millions
    assert _trainable(f"cifar_plain{depth}") == count  # option A shortcuts have no parameters


def test_cifar_resnet20_exact():
    assert _trainable("cifar_resnet20") == 269_722


@pytest.mark.slow
@pytest.mark.parametrize("name", RESIDUAL_NAMES)
def test_shortcut_options_differ_from_plain_twin_by_their_projections_only(name):
    plain = _trainable(model_specs.get_spec(name).twin)
    assert _trainable(name, "A") == plain
    assert _trainable(name, "B") == plain + _projection_params(name, every_block=False)
    assert _trainable(name, "C") == plain + _projection_params(name, every_block=True)
    default = model_specs.DEFAULT_SHORTCUT[model_specs.get_spec(name).family]
    assert _trainable(name) == _trainable(name, default)


@pytest.mark.parametrize("name, shortcut, count", [
    ("resnet34", "A", 21_623_848), ("resnet34", "C", 22_716_840), ("resnet50", "A", 22_780_456),
    ("resnet50", "C", 40_128_552), ("cifar_resnet20", "B", 272_474),
    ("cifar_resnet20", "C", 283_962), ("cifar_resnet110", "C", 1_826_202),
])
def test_shortcut_option_counts_quoted_in_readme(name, shortcut, count):
    assert _trainable(name, shortcut) == count


def test_shortcut_defaults_follow_the_paper_and_validate_without_tensorflow():
    code = ("import sys; from resnet_ablation import model_specs as m; "
            "print(m.SHORTCUT_OPTIONS, m.shortcut_option('resnet50'), "
            "m.shortcut_option('cifar_plain20'), m.shortcut_option('resnet18', 'C'), "
            "'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.split() == ["('A',", "'B',", "'C')", "B", "A", "C", "False"]


@pytest.mark.parametrize("shortcut", ["D", "a", "", "none"])
def test_unknown_shortcut_option_lists_valid_options(shortcut):
    with pytest.raises(ValueError, match=f"unknown shortcut option '{shortcut}'; "
                                         "valid options: A, B, C, or None"):
        model_specs.shortcut_option("resnet18", shortcut)
    with pytest.raises(ValueError, match="valid options: A, B, C"):  # plain nets validate too
        models.build_model("cifar_plain20", 10, (32, 32, 3), shortcut=shortcut)


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "cifar_resnet20"])
def test_one_add_per_residual_block_and_none_in_plain_twin(name):
    spec = model_specs.get_spec(name)

    def count_adds(model):
        return sum(isinstance(layer, keras.layers.Add) for layer in model.layers)

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


@pytest.mark.slow
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


@pytest.mark.parametrize("shape, stride", [((3, 8, 6, 5), 2), ((2, 7, 9, 3), 2),
                                           ((2, 9, 6, 4), 3), ((2, 4, 4, 3), 1)])
@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_subsample_equals_the_strided_slice_in_values_and_gradients(shape, stride, dtype):
    x = tf.cast(tf.random.stateless_normal(shape, seed=(1, 2)), dtype)
    upstream = tf.cast(tf.random.stateless_normal(
        [shape[0], -(-shape[1] // stride), -(-shape[2] // stride), shape[3]], seed=(3, 4)), dtype)

    def value_and_gradient(subsample):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = subsample(x)
            loss = tf.reduce_sum(tf.cast(y * upstream, tf.float32))
        return y.numpy(), tape.gradient(loss, x).numpy()

    fast = value_and_gradient(lambda x: models.subsample(x, stride))
    strided = value_and_gradient(lambda x: x[:, ::stride, ::stride, :])
    def bits(array):  # compared bit for bit: 0.0 and -0.0 differ
        return array.view(np.uint16 if array.itemsize == 2 else np.uint32)

    for got, expected in zip(fast, strided):
        assert got.shape == expected.shape
        np.testing.assert_array_equal(bits(got), bits(expected))
    gradient = fast[1].astype(np.float32)  # the upstream gradient at the pixels read, else 0
    np.testing.assert_array_equal(gradient[:, ::stride, ::stride, :],
                                  upstream.numpy().astype(np.float32))
    unread = np.ones(shape, bool)
    unread[:, ::stride, ::stride, :] = False
    assert not gradient[unread].any()


def test_option_a_in_a_bottleneck_net_pads_wherever_the_shape_changes():
    model = models.build_model("resnet50", 10, (32, 32, 3), shortcut="A")
    pads = [layer for layer in model.layers if isinstance(layer, models.ZeroPadShortcut)]
    # stage 1 keeps the resolution but widens 64 -> 256; the other stages halve it
    assert [(p.name, p.channels, p.stride) for p in pads] == [
        ("stage1_block1_shortcut_pad", 256, 1), ("stage2_block1_shortcut_pad", 512, 2),
        ("stage3_block1_shortcut_pad", 1024, 2), ("stage4_block1_shortcut_pad", 2048, 2)]
    assert not any("_shortcut" in layer.name for layer in model.layers
                   if isinstance(layer, keras.layers.Conv2D))


def test_option_c_projects_in_every_block():
    model = models.build_model("resnet18", 10, (32, 32, 3), shortcut="C")
    projections = [layer.name for layer in model.layers
                   if isinstance(layer, keras.layers.Conv2D) and "_shortcut" in layer.name]
    assert projections == [f"stage{s}_block{b}_shortcut_conv" for s in (1, 2, 3, 4) for b in (1, 2)]


def _reached(source, target, pixel):
    """Positions (row, column) of tensor `target` that change when `pixel` of tensor `source`,
    an input of `target` in the same model, goes from 0 to 1 in every channel (inference mode)."""
    submodel = keras.Model(source, target)
    x = np.zeros((1, *source.shape[1:]), np.float32)
    before = submodel(x, training=False).numpy()
    x[0, pixel[0], pixel[1], :] = 1.0
    change = np.abs(submodel(x, training=False).numpy() - before).sum(axis=(0, 3))
    return {(int(row), int(column)) for row, column in np.argwhere(change > 0)}


@pytest.mark.slow
@pytest.mark.parametrize("name, shortcut", [
    ("cifar_resnet20", None), ("resnet18", None), ("resnet34", "C"), ("resnet50", "A")])
def test_downsampling_blocks_stride_and_shortcut_read_the_same_pixels(name, shortcut):
    # Output (i, j) of both branches must be centred on input (2i, 2j), where the shortcut
    # reads. Keras' padding="same" on the strided 3x3 would centre it on (2i + 1, 2j + 1):
    # input pixel (4, 6) would then reach outputs (1..2, 2..3) instead of (2, 3) alone.
    spec = model_specs.get_spec(name)
    model = models.build_model(name, 10, (32 if spec.family == "cifar" else 128,) * 2 + (3,),
                               shortcut=shortcut)
    for stage in range(2, len(spec.blocks_per_stage) + 1):  # block 1 of stages 2.. downsamples
        block = f"stage{stage}_block1"
        block_input = model.get_layer(
            f"stage{stage - 1}_block{spec.blocks_per_stage[stage - 2]}_out").output
        [strided] = [conv for conv in models.main_path_convolutions(model)
                     if conv.name.startswith(f"{block}_") and conv.strides == (2, 2)]
        shortcut_output = model.get_layer(f"{block}_add").input[0]
        assert _reached(block_input, strided.output, (4, 6)) == {(2, 3)}, block
        assert _reached(block_input, shortcut_output, (4, 6)) == {(2, 3)}, block


def test_imagenet_stem_pads_symmetrically_like_torchvision():
    # torchvision: Conv2d(3, 64, 7, stride=2, padding=3), then MaxPool2d(3, 2, padding=1)
    model = models.build_model("resnet18", 10, (64, 64, 3))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 64, 64, 3), np.float32)
    conv = model.get_layer("stem_conv")
    expected = tf.nn.conv2d(images, conv.kernel, 2, [[0, 0], [3, 3], [3, 3], [0, 0]])
    stem_conv = keras.Model(model.input, conv.output)
    np.testing.assert_allclose(stem_conv(images), expected, rtol=1e-5, atol=1e-5)

    activations = np.abs(rng.standard_normal((2, 32, 32, 64), np.float32))  # ReLU output
    padded = tf.pad(activations, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
    expected = tf.nn.max_pool2d(padded, 3, 2, "VALID")
    pool = keras.Model(model.get_layer("stem_relu").output, model.get_layer("stem_pool").output)
    np.testing.assert_array_equal(pool(activations), expected)


@pytest.mark.slow
def test_option_a_model_survives_save_and_load(tmp_path):
    model = models.build_model("cifar_resnet20", 10, (32, 32, 3), shortcut="A")
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3), np.float32)
    model.save(tmp_path / "model", save_format="tf")  # as the Trainer saves
    loaded = keras.models.load_model(tmp_path / "model")
    assert isinstance(loaded.get_layer("stage2_block1_shortcut_pad"), models.ZeroPadShortcut)
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-6, atol=1e-6)


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


def test_conv_init_is_untruncated_he_normal_fan_out_like_torchvision():
    """Every convolution kernel ~ N(0, 2 / fan_out), fan_out = kh * kw * filters, untruncated:
    torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu"), std = sqrt(2 / fan_out).
    Keras' "he_normal" (fan_in, truncated) fails both checks: the std is off wherever the
    channel count changes (the stem by 2.3x), and no weight lies beyond 2.27 std."""
    import math

    keras.utils.set_random_seed(0)
    model = models.build_model("cifar_resnet20", 10, (32, 32, 3), shortcut="C")  # + 1x1 convs
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 19 + 9
    standardized = []
    for conv in convs:
        initializer = conv.kernel_initializer
        assert isinstance(initializer, keras.initializers.VarianceScaling)
        assert (initializer.scale, initializer.mode, initializer.distribution) == (
            2.0, "fan_out", "untruncated_normal")
        kernel = conv.kernel.numpy().astype(np.float64)
        height, width, _, filters = kernel.shape
        target = math.sqrt(2.0 / (height * width * filters))
        # the sample std of n normals is within 5 / sqrt(2 n) of sigma, relative, all but surely
        assert abs(kernel.std() / target - 1) < 5 / math.sqrt(2 * kernel.size), conv.name
        assert abs(kernel.mean()) < 5 * target / math.sqrt(kernel.size), conv.name
        standardized.append(kernel.ravel() / kernel.std())
    z = np.abs(np.concatenate(standardized))
    assert z.size > 250_000
    # untruncated: N(0, 1) puts 1.24 % beyond 2.5 and 0.27 % beyond 3; Keras' truncated normal
    # puts nothing beyond 2 / 0.8796 = 2.27 of its std
    assert 0.010 < (z > 2.5).mean() < 0.015
    assert 0.0018 < (z > 3).mean() < 0.0036
    assert z.max() > 4
