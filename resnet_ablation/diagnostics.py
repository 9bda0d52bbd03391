"""What happens inside the nets: relative gradient norms per layer, and the paper's Fig. 7
layer-response standard deviations.

- ``relative_gradient_norms``: ‖∂loss/∂W‖ / ‖W‖ of every main-path convolution kernel, input to
  output (raw gradient norms mix in the layer's shape and scale; the ratio is the relative
  change one SGD step makes). ``gradient_profile`` averages it over real batches and seeds, at
  initialisation and after some training steps.
- ``response_stds``: the standard deviation of each 3×3 layer's response — its BatchNorm output,
  before the addition and the nonlinearity — of a trained model in inference mode (paper §4.2,
  Fig. 7: residual functions respond more weakly than plain layers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from resnet_ablation.keras2 import keras
from resnet_ablation.models import build_model, main_path_convolutions


def relative_gradient_norms(model: keras.Model, images, labels) -> list[tuple[str, float]]:
    """(layer name, ‖∂L/∂W‖ / ‖W‖) for each main-path convolution kernel, input to output.

    L is the mean sparse categorical cross-entropy of `model` on (`images`, `labels`) with
    BatchNorm in training mode (batch statistics), as in a training step."""
    convs = main_path_convolutions(model)
    kernels = [layer.kernel for layer in convs]
    with tf.GradientTape() as tape:
        probabilities = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    gradients = tape.gradient(loss, kernels)
    return [(layer.name, float(tf.norm(g) / tf.norm(k)))
            for layer, g, k in zip(convs, gradients, kernels)]


def gradient_profile(name: str, num_classes: int, batches: Sequence[tuple[np.ndarray, np.ndarray]],
                     *, seeds: Sequence[int], steps: int, learning_rate: float,
                     momentum: float = 0.9) -> dict[str, np.ndarray]:
    """Mean ``relative_gradient_norms`` of model `name` over `batches` and `seeds`, per layer:
    ``{"init": [...], "trained": [...]}``, the second after `steps` SGD steps (momentum, no weight
    decay) cycling through `batches`. Images are [B, S, S, 3] floats, labels [B] ints."""
    profiles: dict[str, list[list[float]]] = {"init": [], "trained": []}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = build_model(name, num_classes, batches[0][0].shape[1:])
        profiles["init"] += [_ratios(model, images, labels) for images, labels in batches]
        model.compile(keras.optimizers.SGD(learning_rate, momentum=momentum),
                      keras.losses.SparseCategoricalCrossentropy())
        for step in range(steps):
            images, labels = batches[step % len(batches)]
            model.train_on_batch(images, labels)
        profiles["trained"] += [_ratios(model, images, labels) for images, labels in batches]
    return {key: np.mean(values, axis=0) for key, values in profiles.items()}


def _ratios(model: keras.Model, images, labels) -> list[float]:
    return [ratio for _, ratio in relative_gradient_norms(model, images, labels)]


def image_batches(folder: str, batch_size: int, batches: int, size: int, seed: int = 0
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """`batches` batches of real train images from an image folder (chosen at random with
    `seed`), decoded, resized to `size` x `size`, scaled to [0, 1] and normalised per channel
    with the sample's own mean and std; returns them and the number of classes."""
    from PIL import Image

    from resnet_ablation.data_source import TRAIN, list_imagefolder, logical_split

    listing = list_imagefolder(folder)
    train = [f for f in listing.files if logical_split(f.source_split) == TRAIN]
    needed = batch_size * batches
    if len(train) < needed:
        raise ValueError(f"{folder} has {len(train)} train images; {needed} are needed "
                         f"({batches} batches of {batch_size})")
    chosen = [train[i] for i in np.random.default_rng(seed).permutation(len(train))[:needed]]
    images = np.stack([np.asarray(Image.open(f.path).convert("RGB").resize(
        (size, size), Image.BILINEAR), np.float32) / 255.0 for f in chosen])
    images = (images - images.mean(axis=(0, 1, 2))) / images.std(axis=(0, 1, 2))
    labels = np.array([f.label for f in chosen])
    return ([(images[i:i + batch_size], labels[i:i + batch_size])
             for i in range(0, needed, batch_size)], len(listing.labels))


def response_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The BatchNorm layers right after the main-path 3×3 convolutions, input to output."""
    names = [conv.name.removesuffix("_conv") + "_bn" for conv in main_path_convolutions(model)
             if tuple(conv.kernel_size) == (3, 3)]
    return [model.get_layer(name) for name in names]


def response_stds(model: keras.Model, batches: Iterable) -> list[tuple[str, float]]:
    """(layer name, std) of every ``response_layers`` output over all elements (images,
    positions, channels) of the image `batches`, in inference mode; input to output."""
    layers = response_layers(model)
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    run = tf.function(lambda images: [tf.cast(r, tf.float64) for r in probe(images, training=False)])
    count = 0
    sums = np.zeros(len(layers))
    squares = np.zeros(len(layers))
    for images in batches:
        responses, size = run(images), int(tf.shape(images)[0])  # weigh batches by their size
        count += size
        sums += [size * float(tf.reduce_mean(r)) for r in responses]
        squares += [size * float(tf.reduce_mean(tf.square(r))) for r in responses]
    if not count:
        raise ValueError("response_stds needs at least one batch of images")
    means, mean_squares = sums / count, squares / count
    return [(layer.name, float(np.sqrt(max(sq - m * m, 0.0))))
            for layer, m, sq in zip(layers, means, mean_squares)]
