"""The Evaluator against a bare evaluation of the same SavedModels on the same examples.

For each Evaluator component of a finished pipeline root's newest executed run, takes its wall
time from ML Metadata (or, with `--rerun`, runs this checkout's Evaluator executor again on the
same artifacts with `--beam-args`, and times that) and measures, in this process, the bare loop a
notebook would write: the same SavedModel(s) (``serving_default``: raw tf.Example bytes in, the
Transform graph inside) over the same serialized eval examples in batches of `--batch`,
accuracy computed in NumPy; once counting only inference, once counting loading the models
too (``tf.saved_model.load`` and the first call), as the Evaluator's time does. An Evaluator
with a baseline scores two models, so the bare loop runs both. One JSON line per Evaluator,
then a summary: Evaluator seconds / bare seconds.

    .venv/bin/python benchmarks/evaluator_vs_evaluate.py runs/cifar_cpu/seed0 [--rerun]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from resnet_ablation.keras2 import keras  # noqa: F401, I001  (the Keras flavour before TensorFlow)
import numpy as np
import tensorflow as tf

from resnet_ablation.data_source import LABEL_KEY
from components.input_pipeline import read_records
from pipeline import run_metadata
from pipeline.pipeline import DEFAULT_BEAM_ARGS


def evaluator_runs(root: str) -> list[tuple[str, float, list[str]]]:
    """(component id, wall seconds, Model artifact URIs: its model, then its baseline) of every
    Evaluator, from its newest execution that ran (not cached), its inputs read from ML
    Metadata."""
    from ml_metadata.proto import metadata_store_pb2

    store = run_metadata.open_store(root)
    found = {}
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        if execution.last_known_state != metadata_store_pb2.Execution.COMPLETE:
            continue
        node = next((c.name.split(".", 1)[1] for c in store.get_contexts_by_execution(execution.id)
                     if c.type == "node"), "")
        if not node.startswith("Evaluator"):
            continue
        events = store.get_events_by_execution_ids([execution.id])
        inputs = {e.path.steps[0].key: e.artifact_id for e in events
                  if e.type == metadata_store_pb2.Event.INPUT and e.path.steps}
        models = [inputs[key] for key in ("model", "baseline_model") if key in inputs]
        uri_of = {a.id: a.uri for a in store.get_artifacts_by_id(models)}
        uris = [uri_of[model] for model in models]  # the model first, then its baseline
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        found[node] = (seconds, uris)
    return [(node, seconds, uris) for node, (seconds, uris) in sorted(found.items())]


def rerun_evaluator(examples_uri: str, model_uris: list[str], num_classes: int,
                    beam_args: list[str], workdir: str) -> float:
    """Seconds this checkout's Evaluator executor takes on these artifacts (outputs to
    `workdir`); each model is named after the Trainer that made it, as the pipeline names it."""
    from google.protobuf import json_format
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts

    from components import evaluation

    def artifact(kind, uri):
        made = kind()
        made.uri = uri
        return made

    # <root>/Trainer.<model>[.seed<N>]/model/<execution id>
    names = [pathlib.Path(uri).parents[1].name.split(".")[1] for uri in model_uris]
    examples = artifact(standard_artifacts.Examples, examples_uri)
    examples.split_names = json.dumps(["train", "eval"])
    inputs = {"examples": [examples], "model": [artifact(standard_artifacts.Model, model_uris[0])]}
    if len(model_uris) > 1:
        inputs["baseline_model"] = [artifact(standard_artifacts.Model, model_uris[1])]
    outputs = {"evaluation": [artifact(standard_artifacts.ModelEvaluation, f"{workdir}/evaluation")],
               "blessing": [artifact(standard_artifacts.ModelBlessing, f"{workdir}/blessing")]}
    config = evaluation.eval_config(names[0], num_classes, names[1] if len(names) > 1 else None)
    properties = {"eval_config": json_format.MessageToJson(config),
                  "example_splits": json.dumps(["eval"]), "fairness_indicator_thresholds": "null"}
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args,
                                                          tmp_dir=f"{workdir}/tmp")
    started = time.perf_counter()
    evaluation.Evaluator.EXECUTOR_SPEC.executor_class(context).Do(inputs, outputs, properties)
    return time.perf_counter() - started


def bare_evaluate(model_dir: str, batches: list[tf.Tensor],
                  labels: np.ndarray) -> tuple[float, float, float]:
    """(seconds to load and first call, seconds of inference, accuracy) of serving_default over
    `batches` of serialized examples."""
    started = time.perf_counter()
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    serve(examples=batches[0])
    loaded = time.perf_counter()
    predicted = np.concatenate([np.argmax(serve(examples=b)["probabilities"].numpy(), axis=-1)
                                for b in batches])
    return loaded - started, time.perf_counter() - loaded, float(np.mean(predicted == labels))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rerun", action="store_true",
                        help="time this checkout's Evaluator on the root's artifacts instead of "
                             "reading the recorded time")
    parser.add_argument("--beam-args", default=" ".join(DEFAULT_BEAM_ARGS),
                        help="Beam arguments of the re-run (default: the pipeline's)")
    parser.add_argument("--workdir", default="/tmp/evaluator-benchmark")
    args = parser.parse_args()
    root = str(pathlib.Path(args.root).resolve())
    examples = run_metadata.newest_output_uri(root, "ImageExampleGen", "examples")
    records = list(read_records(os.path.join(examples, "Split-eval", "*")).batch(args.batch))
    labels = np.concatenate([tf.io.parse_example(b, {LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)})
                             [LABEL_KEY].numpy() for b in records])
    num_classes = int(labels.max()) + 1
    ratios = []
    for evaluator, seconds, model_uris in evaluator_runs(root):
        if args.rerun:
            seconds = rerun_evaluator(examples, model_uris, num_classes, shlex.split(args.beam_args),
                                      os.path.join(args.workdir, evaluator))
        bare = [bare_evaluate(os.path.join(uri, "Format-Serving"), records, labels)
                for uri in model_uris]
        inference = sum(b[1] for b in bare)
        with_loading = inference + sum(b[0] for b in bare)
        ratios.append((seconds / inference, seconds / with_loading))
        print(json.dumps({"evaluator": evaluator, "rerun": args.rerun, "models": len(model_uris),
                          "examples": int(len(labels)), "evaluator_seconds": round(seconds, 1),
                          "bare_inference_seconds": round(inference, 1),
                          "bare_with_loading_seconds": round(with_loading, 1),
                          "bare_accuracy": [round(b[2], 4) for b in bare],  # model, baseline
                          "ratio": round(seconds / inference, 2),
                          "ratio_with_loading": round(seconds / with_loading, 2)}), flush=True)
    if ratios:
        print(f"Evaluator / bare evaluation over {len(ratios)} Evaluator(s) on {len(labels)} "
              f"examples: {min(r for r, _ in ratios):.2f}x .. {max(r for r, _ in ratios):.2f}x "
              f"of inference alone, {min(r for _, r in ratios):.2f}x .. "
              f"{max(r for _, r in ratios):.2f}x counting the models' loading")
    return 0


if __name__ == "__main__":
    sys.exit(main())
