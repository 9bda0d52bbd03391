"""The Transform module: raw tf.Examples (encoded image bytes) to normalised float images.

TFX Transform loads this file's ``preprocessing_fn``. The graph it produces is applied on the
fly, by the Trainer's input pipeline and inside the exported serving signature; the 224x224
float images are never materialised (``materialize=False``).

Contract: ``image`` (PNG/JPEG/GIF/BMP bytes, any channel count) becomes float32
``[image_size, image_size, 3]``, scaled to [0, 1], then normalised with statistics that TFT
analyzers compute over the whole train split (the pipeline analyzes ``train`` only), as
``normalization`` says:

- ``"per_channel"`` (the default): minus the per-channel mean, divided by the per-channel
  standard deviation;
- ``"per_pixel_mean"``: minus the per-pixel mean, an ``[image_size, image_size, 3]`` image of
  the train split's mean at every position and channel, and not divided by anything: the
  paper's CIFAR input (section 4.2, "with the per-pixel mean subtracted"). The scale is
  irrelevant to the network: its first convolution is followed by BatchNorm.

Either way every input is centred at 0 (per channel, or at every pixel), so the Trainer's
zero-padding for random crops pads with the train mean. ``label`` passes through as int64.
``image_size`` and ``normalization`` come from the Transform component's ``custom_config``.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from resnet_ablation.contracts import NORMALIZATIONS
from resnet_ablation.data_source import IMAGE_KEY, LABEL_KEY  # raw and transformed feature names

DEFAULT_IMAGE_SIZE = 224
DEFAULT_NORMALIZATION = "per_channel"


def decode_images(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """[N] encoded images -> [N, image_size, image_size, 3] float32 in [0, 1] (bilinear resize)."""

    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(image, [image_size, image_size])  # float32, 0..255
        return image / 255.0

    spec = tf.TensorSpec([image_size, image_size, 3], tf.float32)
    return tf.map_fn(decode_one, encoded, fn_output_signature=spec)


def channel_moments(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Full-pass per-channel mean and standard deviation of [N, H, W, 3] images (TFT analyzers)."""
    mean = tft.mean(tf.reduce_mean(images, axis=[1, 2]), reduce_instance_dims=False)
    mean_square = tft.mean(tf.reduce_mean(tf.square(images), axis=[1, 2]),
                           reduce_instance_dims=False)
    std = tf.sqrt(tf.maximum(mean_square - tf.square(mean), 1e-12))
    return mean, std


def pixel_mean(images: tf.Tensor) -> tf.Tensor:
    """Full-pass mean of [N, H, W, 3] images at every position and channel: [H, W, 3] (TFT)."""
    return tft.mean(images, reduce_instance_dims=False)


def normalize(images: tf.Tensor, normalization: str) -> tf.Tensor:
    """`images` [N, S, S, 3] in [0, 1] normalised with train-split statistics (TFT analyzers)."""
    if normalization == "per_channel":
        mean, std = channel_moments(images)
        return (images - mean) / std
    if normalization == "per_pixel_mean":
        return images - pixel_mean(images)
    raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
                     f"got {normalization!r}")


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config=None) -> dict[str, tf.Tensor]:
    """TFX Transform entry point; see the module docstring for the contract."""
    custom_config = custom_config or {}
    image_size = int(custom_config.get("image_size", DEFAULT_IMAGE_SIZE))
    normalization = custom_config.get("normalization", DEFAULT_NORMALIZATION)
    images = decode_images(tf.reshape(inputs[IMAGE_KEY], [-1]), image_size)
    outputs = {IMAGE_KEY: normalize(images, normalization)}
    if LABEL_KEY in inputs:
        outputs[LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
    return outputs
