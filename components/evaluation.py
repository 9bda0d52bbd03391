"""TFMA evaluation settings for the Evaluator: what the ablation compares, in one place.

Every model is evaluated through its ``serving_default`` signature on raw eval-split examples.
A residual model and its plain twin are evaluated together, the plain net as TFMA baseline, so
the ModelEvaluation holds both models' metrics and TFMA's diffs (candidate minus baseline).
"""

from __future__ import annotations

import json

from tensorflow_model_analysis.proto import config_pb2

from components.preprocessing import LABEL_KEY

PREDICTION_KEY = "probabilities"
TOP_K = 5


def _metric(class_name: str, **config) -> config_pb2.MetricConfig:
    return config_pb2.MetricConfig(class_name=class_name, config=json.dumps(config) if config else "")


def _model_spec(name: str, is_baseline: bool = False) -> config_pb2.ModelSpec:
    return config_pb2.ModelSpec(name=name, label_key=LABEL_KEY, prediction_key=PREDICTION_KEY,
                          signature_name="serving_default", is_baseline=is_baseline)


def eval_config(model: str, num_classes: int, baseline: str | None = None) -> config_pb2.EvalConfig:
    """Accuracy, loss, top-5 (over 5 classes), per-class precision/recall, confusion matrix."""
    overall = [
        _metric("ExampleCount"),
        _metric("SparseCategoricalAccuracy", name="accuracy"),
        _metric("SparseCategoricalCrossentropy", name="loss"),
        _metric("MultiClassConfusionMatrixPlot"),
    ]
    if num_classes > TOP_K:
        overall.append(_metric("SparseTopKCategoricalAccuracy", k=TOP_K, name="top5_accuracy"))
    per_class = config_pb2.MetricsSpec(
        metrics=[_metric("Precision"), _metric("Recall")],
        binarize=config_pb2.BinarizationOptions(class_ids={"values": list(range(num_classes))}))
    specs = [_model_spec(model)] + ([_model_spec(baseline, is_baseline=True)] if baseline else [])
    return config_pb2.EvalConfig(model_specs=specs, slicing_specs=[config_pb2.SlicingSpec()],
                           metrics_specs=[config_pb2.MetricsSpec(metrics=overall), per_class])
