"""What a model costs to run: arithmetic per image and activation memory, from its layers.

FLOPs count a multiply-add as two operations (the convention of hardware peaks, so a rate
divided by a peak is a true fraction). Only convolutions and dense layers are counted: they
hold all but a fraction of a percent of a ResNet's arithmetic; BatchNorm, ReLU, additions and
pooling are left out. He et al. report multiply-adds ("3.6 billion FLOPs" for ResNet-34, 3.8 for
ResNet-50 with the stride on the first 1x1), i.e. half of ``forward_flops``.

Training costs about three forward passes (the forward, and the backward's two products of the
same size: the gradient with respect to the input and to the weights), ``TRAIN_FLOPS_PER_FORWARD``.
"""

from __future__ import annotations

from resnet_ablation.keras2 import keras

TRAIN_FLOPS_PER_FORWARD = 3


def _output_elements(layer) -> int:
    """Elements of `layer`'s output for one image (batch dimension left out)."""
    count = 1
    for dim in layer.output.shape[1:]:
        count *= int(dim)
    return count


def layer_forward_flops(layer) -> int:
    """FLOPs of one image through `layer`: 2 x multiply-adds of a convolution or dense layer,
    0 for any other layer."""
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w = layer.kernel_size
        inputs = int(layer.input.shape[-1]) // layer.groups
        return 2 * kernel_h * kernel_w * inputs * _output_elements(layer)
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(layer.input.shape[-1]) * _output_elements(layer)
    return 0


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass through `model` (a built functional model)."""
    return sum(layer_forward_flops(layer) for layer in model.layers)


def train_flops(model: keras.Model) -> int:
    """FLOPs of one image's training step (forward and backward), ``3 x forward_flops``."""
    return TRAIN_FLOPS_PER_FORWARD * forward_flops(model)


def activation_elements(model: keras.Model) -> int:
    """Elements of every layer's output for one image: what training keeps for the backward
    pass, to a first approximation (frameworks keep some more, fuse some away)."""
    return sum(_output_elements(layer) for layer in model.layers
               if not isinstance(layer, keras.layers.InputLayer))


def fraction_of_peak(images_per_second: float, flops_per_image: float,
                     peak_flops_per_second: float) -> float:
    """The share of `peak_flops_per_second` that training at `images_per_second` uses."""
    return images_per_second * flops_per_image / peak_flops_per_second
