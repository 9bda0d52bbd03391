"""Relative gradient norms and layer-response stds (the paper's Fig. 7) on real models."""

import math

import numpy as np
import pytest
import tensorflow as tf

from resnet_ablation import diagnostics, models
from resnet_ablation.keras2 import keras
from tests.conftest import SMOKE_DATA


def _batch(size=4, pixels=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, pixels, pixels, 3), np.float32), rng.integers(0, 10, size)


@pytest.mark.parametrize("name", ["plain18", "cifar_resnet20"])
def test_relative_gradient_norm_per_convolution(name):
    keras.utils.set_random_seed(0)
    model = models.build_model(name, 10, (32, 32, 3))
    images, labels = _batch()
    profile = diagnostics.relative_gradient_norms(model, images, labels)
    convs = models.main_path_convolutions(model)
    assert [layer for layer, _ in profile] == [c.name for c in convs]
    assert all(math.isfinite(r) and r > 0 for _, r in profile)
    # the first entry by hand: ‖∂L/∂W‖ / ‖W‖ of the stem kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, model(images, training=True)))
    gradient = tape.gradient(loss, convs[0].kernel)
    assert profile[0][1] == pytest.approx(float(tf.norm(gradient) / tf.norm(convs[0].kernel)),
                                          rel=1e-4)


@pytest.mark.slow
def test_gradient_profile_averages_seeds_and_changes_with_training():
    batches, classes = diagnostics.image_batches(str(SMOKE_DATA), 8, 2, 32)
    assert classes == 10 and len(batches) == 2 and batches[0][0].shape == (8, 32, 32, 3)
    flat = np.concatenate([b[0] for b in batches])
    np.testing.assert_allclose(flat.mean(axis=(0, 1, 2)), 0, atol=1e-4)  # normalised
    np.testing.assert_allclose(flat.std(axis=(0, 1, 2)), 1, atol=1e-4)
    profile = diagnostics.gradient_profile("cifar_plain20", classes, batches, seeds=[0, 1],
                                           steps=3, learning_rate=0.05)
    assert set(profile) == {"init", "trained"}
    assert profile["init"].shape == profile["trained"].shape == (19,)
    assert not np.allclose(profile["init"], profile["trained"])
    one_seed = diagnostics.gradient_profile("cifar_plain20", classes, batches, seeds=[0],
                                            steps=0, learning_rate=0.05)
    assert not np.allclose(one_seed["init"], profile["init"])  # the second seed counts


@pytest.mark.slow
@pytest.mark.parametrize("name, layers", [("cifar_resnet20", 19), ("cifar_plain56", 55),
                                          ("resnet50", 16), ("plain34", 32)])
def test_response_layers_are_the_bn_after_every_3x3_convolution(name, layers):
    model = models.build_model(name, 10, (32, 32, 3))
    found = diagnostics.response_layers(model)
    assert len(found) == layers
    assert all(isinstance(layer, keras.layers.BatchNormalization) for layer in found)


@pytest.mark.slow
def test_response_stds_pool_every_element_weighted_by_batch():
    keras.utils.set_random_seed(3)
    model = models.build_model("cifar_resnet20", 10, (32, 32, 3))
    first, second = _batch(5, seed=1)[0], _batch(2, seed=2)[0]  # unequal batches
    stds = diagnostics.response_stds(model, [first, second])
    layers = diagnostics.response_layers(model)
    assert [name for name, _ in stds] == [layer.name for layer in layers]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = [np.concatenate([a, b]) for a, b in zip(
        *(probe(x, training=False) for x in (first, second)))]
    expected = [float(np.std(o.astype(np.float64))) for o in outputs]
    np.testing.assert_allclose([s for _, s in stds], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="at least one batch"):
        diagnostics.response_stds(model, [])
