"""The one Keras the project uses: ``tf_keras`` (Keras 2).

TFX 1.21's Transform hands the Trainer a ``tf_keras`` layer
(``TFTransformOutput.transform_features_layer()``), and TFMA 0.52 loads ``tf_keras``
SavedModels; mixing in Keras 3 objects breaks both. ``TF_USE_LEGACY_KERAS=1`` makes
``tf.keras`` resolve to the same package for any library that still says ``tf.keras``.
Import ``keras`` from here, never ``tf.keras`` or ``keras`` directly.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import tf_keras as keras  # after the environment settings above

__all__ = ["keras"]
