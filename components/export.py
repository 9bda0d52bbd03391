"""The Trainer's SavedModel and its signatures, on serialized raw tf.Examples.

``serving_default`` takes examples with the raw ``image`` bytes and returns ``probabilities``;
``transform_features`` takes labelled examples and returns their transformed features. The
Transform graph runs inside both, so the model serves raw images as they were ingested.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from components.hardware import write_path
from resnet_ablation.data_source import IMAGE_KEY, LABEL_KEY
from resnet_ablation.keras2 import keras


def export_serving_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                         directory: str) -> None:
    """Saves `model` with signatures on serialized raw tf.Examples (Transform graph inside)
    into ``write_path(directory)``: every worker of a multi-worker run saves (TensorFlow
    requires it), only the chief into `directory`."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    image_spec = {IMAGE_KEY: raw_spec[IMAGE_KEY]}
    labelled_spec = {key: raw_spec[key] for key in (IMAGE_KEY, LABEL_KEY)}
    examples = tf.TensorSpec([None], tf.string, name="examples")

    @tf.function(input_signature=[examples])
    def serve(serialized):
        features = model.tft_layer(tf.io.parse_example(serialized, image_spec))
        return {"probabilities": model(features[IMAGE_KEY], training=False)}

    @tf.function(input_signature=[examples])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, labelled_spec))

    model.save(write_path(directory), save_format="tf",
               signatures={"serving_default": serve, "transform_features": transform_features})

