"""The Transform module on Beam's DirectRunner: decode, resize, and TFT-computed normalisation
(per channel, or the paper's per-pixel mean)."""

import io
import json
import pathlib
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import preprocessing

SMOKE = pathlib.Path(__file__).resolve().parents[1] / "data" / "cifar10_smoke"


def _encoded_images() -> list[bytes]:
    """PNGs from the smoke set plus JPEGs of other sizes and colour modes."""
    images = [p.read_bytes() for p in sorted((SMOKE / "train").rglob("*.png"))[::50]]
    rng = np.random.default_rng(0)
    for mode, size in (("RGB", (50, 40)), ("L", (20, 33)), ("CMYK", (64, 64)), ("P", (16, 16))):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, "PNG" if mode == "P" else "JPEG")
        images.append(buffer.getvalue())
    return images


def _analyze_and_transform(encoded: list[bytes], image_size: int,
                           normalization: str | None = None):
    """preprocessing_fn through TFT's Beam implementation; `normalization` None: the default."""
    raw = [{"image": data, "label": i % 10} for i, data in enumerate(encoded)]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }))

    def preprocessing_fn(inputs):
        custom_config = {"image_size": image_size}
        if normalization is not None:
            custom_config["normalization"] = normalization
        return preprocessing.preprocessing_fn(inputs, custom_config)

    with tempfile.TemporaryDirectory() as tmp, tft_beam.Context(temp_dir=tmp):
        (transformed, transformed_metadata), _ = (
            (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
    return transformed, transformed_metadata


@pytest.mark.slow
@pytest.mark.parametrize("image_size", [32, 56])
def test_normalisation_statistics_equal_numpy_over_the_same_images(image_size):
    encoded = _encoded_images()
    decoded = preprocessing.decode_images(tf.constant(encoded), image_size).numpy()
    mean = decoded.mean(axis=(0, 1, 2), dtype=np.float64)
    std = decoded.std(axis=(0, 1, 2), dtype=np.float64)

    transformed, metadata = _analyze_and_transform(encoded, image_size)

    images = np.stack([row["image"] for row in transformed]).reshape(-1, image_size, image_size, 3)
    assert images.dtype == np.float32 and images.shape == (len(encoded), image_size, image_size, 3)
    np.testing.assert_allclose(images, (decoded - mean) / std, atol=1e-4)
    np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(images.std(axis=(0, 1, 2)), 1, atol=1e-4)
    assert [row["label"] for row in transformed] == [i % 10 for i in range(len(encoded))]
    spec = metadata.schema
    image_feature = next(f for f in spec.feature if f.name == "image")
    assert [d.size for d in image_feature.shape.dim] == [image_size, image_size, 3]


def test_decode_handles_every_colour_mode_and_size():
    encoded = _encoded_images()
    decoded = preprocessing.decode_images(tf.constant(encoded), 24).numpy()
    assert decoded.shape == (len(encoded), 24, 24, 3)
    assert decoded.min() >= 0 and decoded.max() <= 1
    # a grayscale JPEG decodes to three equal channels
    gray = decoded[-3]
    np.testing.assert_allclose(gray[..., 0], gray[..., 1])
    # a 32x32 PNG at its native size is returned pixel-exact
    png = np.asarray(Image.open(io.BytesIO(encoded[0])).convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(preprocessing.decode_images(tf.constant(encoded[:1]), 32)[0], png,
                               atol=1e-6)


@pytest.mark.slow
def test_per_pixel_mean_subtracts_the_train_pixel_mean_and_does_not_divide():
    """normalization = "per_pixel_mean": the output is the decoded images minus their mean at
    every position and channel (an S x S x 3 analyzer over the analyzed split), undivided."""
    encoded, image_size = _encoded_images(), 32
    decoded = preprocessing.decode_images(tf.constant(encoded), image_size).numpy()
    pixel_mean = decoded.mean(axis=0, dtype=np.float64)  # [32, 32, 3]
    assert np.ptp(pixel_mean, axis=(0, 1)).min() > 0.05  # it really varies across positions

    transformed, metadata = _analyze_and_transform(encoded, image_size, "per_pixel_mean")

    images = np.stack([row["image"] for row in transformed]).reshape(decoded.shape)
    np.testing.assert_allclose(images.mean(axis=0), 0, atol=1e-5)  # at every pixel and channel
    np.testing.assert_allclose(images, decoded - pixel_mean, atol=1e-5)  # nothing divided
    assert (images.std(axis=(0, 1, 2)) < 0.5).all()  # [0, 1]-scale pixels, not unit variance
    # not what per-channel normalisation would give
    channel = (decoded - decoded.mean(axis=(0, 1, 2))) / decoded.std(axis=(0, 1, 2))
    assert np.abs(images - channel).max() > 0.5
    image_feature = next(f for f in metadata.schema.feature if f.name == "image")
    assert [d.size for d in image_feature.shape.dim] == [image_size, image_size, 3]


def test_unknown_normalization_fails_in_validate_and_in_transform():
    from pipeline import config as config_lib

    config = config_lib.with_overrides(config_lib.PipelineConfig(), normalization="per_image")
    with pytest.raises(config_lib.ConfigError,
                       match="normalization must be one of per_channel, per_pixel_mean, got "
                             "'per_image'"):
        config_lib.validate(config)
    with pytest.raises(ValueError, match="per_image"):
        preprocessing.normalize(tf.zeros([1, 2, 2, 3]), "per_image")


@pytest.mark.parametrize("normalization", ["per_channel", "per_pixel_mean"])
def test_the_pipeline_passes_normalization_to_transform(normalization):
    from pipeline import config as config_lib, pipeline as pipeline_lib

    config = config_lib.PipelineConfig(normalization=normalization, image_size=32)
    transform = pipeline_lib.data_components(config)["transform"]
    custom_config = json.loads(transform.exec_properties["custom_config"])
    assert custom_config == {"image_size": 32, "normalization": normalization}
    assert config_lib.PipelineConfig().normalization == "per_channel"  # the default

