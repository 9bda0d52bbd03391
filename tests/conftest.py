"""Shared test setup: the project's Keras flavour is chosen before anything imports TensorFlow."""

import components.keras_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
