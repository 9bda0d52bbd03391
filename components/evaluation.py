"""TFMA evaluation settings for the Evaluator: what the ablation compares, in one place.

Every model is evaluated through its ``serving_default`` signature on raw eval-split examples.
A residual model and its plain twin are evaluated together, the plain net as TFMA baseline, so
the ModelEvaluation holds both models' metrics and TFMA's diffs (candidate minus baseline).
``Evaluator`` is TFX's, made to skip (and say so) rather than fail on a diverged model.
"""

from __future__ import annotations

import json
import os

from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.utils import path_utils

from components.beam_executors import LocalBeamExecutorMixin
from components.preprocessing import LABEL_KEY
from resnet_ablation.contracts import DIVERGED_FILE

PREDICTION_KEY = "probabilities"
TOP_K = 5


def _metric(class_name: str, **config) -> config_pb2.MetricConfig:
    return config_pb2.MetricConfig(class_name=class_name, config=json.dumps(config) if config else "")


def _model_spec(name: str, is_baseline: bool = False) -> config_pb2.ModelSpec:
    # model_type: TFMA would otherwise load each SavedModel as a Keras model first, in every
    # Beam worker, only to learn its type (about 3 s per model); it is evaluated through its
    # serving signature either way.
    return config_pb2.ModelSpec(name=name, label_key=LABEL_KEY, prediction_key=PREDICTION_KEY,
                                signature_name="serving_default", model_type="tf_generic",
                                is_baseline=is_baseline)


def eval_config(model: str, num_classes: int, baseline: str | None = None) -> config_pb2.EvalConfig:
    """Example count, accuracy, loss, top-5 (above 5 classes) and the confusion matrix.

    Per-class precision and recall are the confusion matrix's columns and rows; as TFMA
    metrics (binarized per class) they cost one Python pass per class per example, about half
    of the Evaluator's time on CIFAR-10 (see README, Performance)."""
    metrics = [
        _metric("ExampleCount"),
        _metric("SparseCategoricalAccuracy", name="accuracy"),
        _metric("SparseCategoricalCrossentropy", name="loss"),
        _metric("MultiClassConfusionMatrixPlot"),
    ]
    if num_classes > TOP_K:
        metrics.append(_metric("SparseTopKCategoricalAccuracy", k=TOP_K, name="top5_accuracy"))
    specs = [_model_spec(model)] + ([_model_spec(baseline, is_baseline=True)] if baseline else [])
    return config_pb2.EvalConfig(model_specs=specs, slicing_specs=[config_pb2.SlicingSpec()],
                                 metrics_specs=[config_pb2.MetricsSpec(metrics=metrics)])


# --------------------------------------------------------------------------- diverged models

SKIPPED_FILE = "SKIPPED"  # in a ModelEvaluation whose model (or baseline) diverged


class _Executor(LocalBeamExecutorMixin, evaluator_executor.Executor):
    """TFX's Evaluator executor (``beam_executors.LocalBeamExecutorMixin``), except that a model
    that diverged (its Trainer exported only ``contracts.DIVERGED_FILE``) is not evaluated: the
    ModelEvaluation then holds ``SKIPPED_FILE`` saying why, and the blessing is NOT_BLESSED."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802
        diverged = [_diverged_reason(model) for key in ("model", "baseline_model")
                    for model in input_dict.get(key) or []]
        reasons = [reason for reason in diverged if reason]
        if not reasons:
            return super().Do(input_dict, output_dict, exec_properties)
        [evaluation] = output_dict["evaluation"]
        fileio.makedirs(evaluation.uri)
        with fileio.open(os.path.join(evaluation.uri, SKIPPED_FILE), "w") as file:
            file.write("".join(reasons))
        for blessing in output_dict.get("blessing", []):
            fileio.makedirs(blessing.uri)
            with fileio.open(os.path.join(blessing.uri, "NOT_BLESSED"), "w") as file:
                file.write("")
            blessing.set_int_custom_property("blessed", 0)


def _diverged_reason(model) -> str | None:
    marker = os.path.join(path_utils.serving_model_dir(model.uri), DIVERGED_FILE)
    if not fileio.exists(marker):
        return None
    with fileio.open(marker) as file:
        text = file.read()
    return text.decode() if isinstance(text, bytes) else text


class Evaluator(tfx.components.Evaluator):
    """``tfx.components.Evaluator`` that records, instead of failing on, a diverged model."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(_Executor)
