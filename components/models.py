"""The ResNet / plain model family of He et al. (2015), built from one block and one stage builder.

Every variant is a row of ``model_specs.MODEL_SPECS``. A plain net is the residual builder
with ``residual=False``: the same layers, minus the shortcut branch and its addition.

Conventions (torchvision's ResNet v1.5):
- every convolution is followed by BatchNorm (epsilon 1e-5, momentum 0.9) and has no bias;
  He-normal initialisation; ReLU after BatchNorm, and after the addition in residual blocks;
- a bottleneck block strides on its 3x3 convolution ("v1.5"), not on its first 1x1 as in the
  paper and Keras' ``applications.ResNet50``; parameter counts are the same either way;
- ImageNet-style shortcuts are identities, with a 1x1 projection + BatchNorm (option B) only
  where the shape changes; CIFAR-style shortcuts are parameter-free (option A: subsample and
  zero-pad the channels);
- the head is global average pooling and a dense layer whose softmax runs in float32, so a
  ``mixed_float16`` policy leaves the probabilities in full precision.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from components.keras_lib import keras
from components.model_specs import MODEL_NAMES, ModelSpec, get_spec

__all__ = ["MODEL_NAMES", "build_model", "conv_gradient_norms", "get_spec",
           "main_path_convolutions", "trainable_params"]


@keras.utils.register_keras_serializable(package="resnet_ablation")
class ZeroPadShortcut(keras.layers.Layer):
    """Option A shortcut: subsample by `stride`, then zero-pad channels to `channels`."""

    def __init__(self, channels: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.stride = stride

    def call(self, inputs):
        x = inputs[:, ::self.stride, ::self.stride, :]
        missing = self.channels - x.shape[-1]
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [missing // 2, missing - missing // 2]])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "stride": self.stride}


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _shortcut(x, spec: ModelSpec, channels: int, stride: int, name: str):
    if stride == 1 and x.shape[-1] == channels:
        return x
    if spec.family == "cifar":
        return ZeroPadShortcut(channels, stride, name=f"{name}_shortcut_pad")(x)
    return _conv_bn(x, channels, 1, stride, f"{name}_shortcut", relu=False)


def _block(x, spec: ModelSpec, filters: int, stride: int, name: str):
    """One basic or bottleneck block; the shortcut and its addition only when residual."""
    channels = filters * spec.expansion
    if spec.block == "bottleneck":
        y = _conv_bn(x, filters, 1, 1, f"{name}_1")
        y = _conv_bn(y, filters, 3, stride, f"{name}_2")
        y = _conv_bn(y, channels, 1, 1, f"{name}_3", relu=False)
    else:
        y = _conv_bn(x, filters, 3, stride, f"{name}_1")
        y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    if spec.residual:
        y = keras.layers.Add(name=f"{name}_add")([_shortcut(x, spec, channels, stride, name), y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _stage(x, spec: ModelSpec, index: int, blocks: int, filters: int):
    """A stage of `blocks` blocks; all but the first stage halve the resolution in block 1."""
    stride = 1 if index == 0 else 2
    for block in range(blocks):
        x = _block(x, spec, filters, stride if block == 0 else 1,
                   name=f"stage{index + 1}_block{block + 1}")
    return x


def _stem(x, spec: ModelSpec):
    if spec.family == "cifar":
        return _conv_bn(x, spec.filters_per_stage[0], 3, 1, "stem")
    x = _conv_bn(x, spec.filters_per_stage[0], 7, 2, "stem")
    return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> keras.Model:
    """Builds variant `name` for `num_classes` classes on `input_shape` (H, W, C) float images.

    The model outputs class probabilities (float32 even under a mixed-precision policy).
    Raises ValueError for an unknown name or a non-positive class count.
    """
    spec = get_spec(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _stem(inputs, spec)
    for index, (blocks, filters) in enumerate(zip(spec.blocks_per_stage, spec.filters_per_stage)):
        x = _stage(x, spec, index, blocks, filters)
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


def conv_gradient_norms(model: keras.Model, images, labels) -> list[tuple[str, float]]:
    """L2 norm of the loss gradient w.r.t. each main-path convolution kernel, input to output.

    The loss is the mean sparse categorical cross-entropy of `model` on (`images`, `labels`)
    with BatchNorm in training mode (batch statistics), as in the first training step.
    """
    convs = main_path_convolutions(model)
    kernels = [layer.kernel for layer in convs]
    with tf.GradientTape() as tape:
        probabilities = model(images, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        loss = tf.reduce_mean(loss)
    gradients = tape.gradient(loss, kernels)
    return [(layer.name, float(tf.norm(g))) for layer, g in zip(convs, gradients)]
