"""The ResNet / plain model family of He et al. (2015), built from one block and one stage builder.

Every variant is a row of ``model_specs.MODEL_SPECS``. A plain net is the residual builder
with ``residual=False``: the same layers, minus the shortcut branch and its addition.

Conventions (torchvision's ResNet v1.5):
- every convolution is followed by BatchNorm (epsilon 1e-5, momentum 0.9) and has no bias;
  He-normal initialisation as torchvision's kaiming_normal_(mode="fan_out",
  nonlinearity="relu") (``he_normal_fan_out``); ReLU after BatchNorm, and after the addition in
  residual blocks;
- a bottleneck block strides on its 3x3 convolution ("v1.5"), not on its first 1x1 as in the
  paper and Keras' ``applications.ResNet50``; parameter counts are the same either way;
- a window that strides (convolution or max-pool) zero-pads kernel // 2 on every side, as
  torchvision does, so its output (i, j) is centred on input (2i, 2j): the pixel the shortcut
  reads. Keras' ``padding="same"`` pads only bottom/right at stride 2, which would centre it on
  (2i + 1, 2j + 1), one pixel off the shortcut. Stride-1 windows keep ``"same"`` (symmetric);
- shortcuts follow option A, B or C of the paper's Table 3 (``model_specs.SHORTCUT_OPTIONS``);
  by default B for ImageNet-style nets (identity, 1x1 projection + BatchNorm where the shape
  changes) and A for CIFAR-style nets (identity, parameter-free subsample and zero-pad of the
  channels where the shape changes);
- the head is global average pooling and a dense layer whose softmax runs in float32, so a
  ``mixed_float16`` policy leaves the probabilities in full precision.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from resnet_ablation.keras2 import keras
from resnet_ablation.model_specs import MODEL_NAMES, ModelSpec, Shortcut, get_spec, shortcut_option

__all__ = ["MODEL_NAMES", "build_model", "get_spec", "main_path_convolutions",
           "trainable_params"]


def subsample(x, stride: int):
    """The pixels (stride*i, stride*j) of the NHWC tensor `x`: ``x[:, ::stride, ::stride, :]``.

    Where height and width are multiples of `stride` (as everywhere in the model family), a
    reshape that puts each pixel's `stride` right-hand neighbours beside its channels, then a
    slice of whole rows and of the first channels: the same values and gradients, bit for bit,
    at several times the speed of TensorFlow's strided slice and its gradient on a CPU
    (`tests/test_models.py`). Any other size takes the strided slice."""
    if stride == 1:
        return x
    _, height, width, channels = x.shape
    if height is None or width is None or height % stride or width % stride:
        return x[:, ::stride, ::stride, :]
    rows = tf.reshape(x, [-1, height // stride, stride, width // stride, stride * channels])
    first = tf.slice(rows, [0, 0, 0, 0, 0], [-1, -1, 1, -1, channels])
    return tf.reshape(first, [-1, height // stride, width // stride, channels])


@keras.utils.register_keras_serializable(package="resnet_ablation")
class ZeroPadShortcut(keras.layers.Layer):
    """Option A shortcut: subsample by `stride` (reading pixels (stride*i, stride*j)), then
    zero-pad the channels evenly on both sides up to `channels`."""

    def __init__(self, channels: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.stride = stride

    def call(self, inputs):
        x = subsample(inputs, self.stride)
        missing = self.channels - x.shape[-1]
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [missing // 2, missing - missing // 2]])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "stride": self.stride}


def he_normal_fan_out() -> keras.initializers.Initializer:
    """A convolution kernel initializer: N(0, 2 / fan_out), fan_out = kh * kw * filters, not
    truncated; exactly torchvision's and fb.resnet.torch's (``kaiming_normal_(mode="fan_out",
    nonlinearity="relu")``: std = sqrt(2) / sqrt(fan_out)). Keras' "he_normal" differs twice:
    it uses fan_in, and draws from a normal truncated at +-2 sigma (sigma rescaled so the variance
    is still 2 / fan_in, so no value exceeds 2.27 times the target std). A new instance per
    layer, so Keras never warns about a reused unseeded initializer."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def _pad_for(x, kernel: int, stride: int, name: str):
    """`x` and the padding mode that centre a `kernel` window at `stride` on pixel stride*i.

    A strided window with kernel > 1 gets `x` zero-padded by kernel // 2 on every side (layer
    `name`_pad) and "valid"; any other window gets `x` unchanged and "same".
    """
    if stride == 1 or kernel == 1:
        return x, "same"
    return keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x), "valid"


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    """Convolution `name`_conv (no bias), BatchNorm `name`_bn, and ReLU `name`_relu if `relu`."""
    x, padding = _pad_for(x, kernel, stride, name)
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                            kernel_initializer=he_normal_fan_out(), name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _shortcut(x, channels: int, stride: int, option: Shortcut, name: str):
    """The shortcut from `x` to `channels` channels at `stride`, following `option`: identity
    where the shape is kept (except in C); else A zero-pads, B and C project (1x1 conv + BN)."""
    if option != "C" and stride == 1 and x.shape[-1] == channels:
        return x
    if option == "A":
        return ZeroPadShortcut(channels, stride, name=f"{name}_shortcut_pad")(x)
    return _conv_bn(x, channels, 1, stride, f"{name}_shortcut", relu=False)


def _block(x, spec: ModelSpec, filters: int, stride: int, shortcut: Shortcut | None, name: str):
    """One basic or bottleneck block; a shortcut of option `shortcut` and its addition unless
    `shortcut` is None (plain)."""
    channels = filters * spec.expansion
    if spec.block == "bottleneck":
        y = _conv_bn(x, filters, 1, 1, f"{name}_1")
        y = _conv_bn(y, filters, 3, stride, f"{name}_2")
        y = _conv_bn(y, channels, 1, 1, f"{name}_3", relu=False)
    else:
        y = _conv_bn(x, filters, 3, stride, f"{name}_1")
        y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    if shortcut is not None:
        skip = _shortcut(x, channels, stride, shortcut, name)
        y = keras.layers.Add(name=f"{name}_add")([skip, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _stage(x, spec: ModelSpec, shortcut: Shortcut | None, index: int, blocks: int, filters: int):
    """A stage of `blocks` blocks; all but the first stage halve the resolution in block 1."""
    stride = 1 if index == 0 else 2
    for block in range(blocks):
        x = _block(x, spec, filters, stride if block == 0 else 1, shortcut,
                   name=f"stage{index + 1}_block{block + 1}")
    return x


def _stem(x, spec: ModelSpec):
    if spec.family == "cifar":
        return _conv_bn(x, spec.filters_per_stage[0], 3, 1, "stem")
    x = _conv_bn(x, spec.filters_per_stage[0], 7, 2, "stem")
    # torchvision pads this max-pool with -inf; zeros are equivalent here because its input
    # comes out of a ReLU (>= 0) and every window holds at least one real pixel.
    x, padding = _pad_for(x, 3, 2, "stem_pool")
    return keras.layers.MaxPooling2D(3, strides=2, padding=padding, name="stem_pool")(x)


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int], *,
                shortcut: str | None = None) -> keras.Model:
    """Builds variant `name` for `num_classes` classes on `input_shape` (H, W, C) float images.

    `shortcut` is the paper's option "A", "B" or "C" (``model_specs.SHORTCUT_OPTIONS``) for a
    residual net's shortcuts, or None for the family default (``model_specs.DEFAULT_SHORTCUT``);
    plain nets have no shortcut and ignore it. The model outputs class probabilities (float32
    even under a mixed-precision policy). Raises ValueError for an unknown name or shortcut
    option, or a non-positive class count.
    """
    spec = get_spec(name)
    option = shortcut_option(name, shortcut)  # validated even for plain nets, which drop it
    if not spec.residual:
        option = None
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _stem(inputs, spec)
    for index, (blocks, filters) in enumerate(zip(spec.blocks_per_stage, spec.filters_per_stage)):
        x = _stage(x, spec, option, index, blocks, filters)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def trainable_params(model: keras.Model) -> int:
    """Number of trainable scalars (BatchNorm's moving statistics excluded)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def main_path_convolutions(model: keras.Model) -> list[keras.layers.Conv2D]:
    """The convolutions on the main (non-shortcut) path, input to output."""
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D) and "_shortcut" not in layer.name]
