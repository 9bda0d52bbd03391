"""The Evaluator against a bare evaluation of the same SavedModels on the same examples.

For each Evaluator component of a finished pipeline root's newest executed run, takes its wall
time from ML Metadata and measures, in this process, the bare loop a notebook would write: the
same SavedModel(s) (``serving_default``: raw tf.Example bytes in, the Transform graph inside)
over the same serialized eval examples in batches of `--batch`, accuracy computed in NumPy. An
Evaluator with a baseline scores two models, so the bare loop runs both. One JSON line per
Evaluator, then a summary: Evaluator seconds / bare seconds.

    .venv/bin/python benchmarks/evaluator_vs_evaluate.py runs/cifar_cpu/seed0
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from components.keras_lib import keras  # noqa: F401, I001  (the Keras flavour before TensorFlow)
import numpy as np
import tensorflow as tf

from components.data_source import LABEL_KEY
from components.trainer import read_records
from pipeline import artifacts


def evaluator_runs(root: str) -> list[tuple[str, float, list[str]]]:
    """(component id, wall seconds, serving dirs of its model and baseline) of every Evaluator,
    from its newest execution that ran (not cached), its inputs read from ML Metadata."""
    from ml_metadata.proto import metadata_store_pb2

    store = artifacts.open_store(root)
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
        found[node] = (seconds, [os.path.join(uri, "Format-Serving") for uri in uris])
    return [(node, seconds, dirs) for node, (seconds, dirs) in sorted(found.items())]


def bare_evaluate(model_dir: str, batches: list[tf.Tensor], labels: np.ndarray) -> tuple[float, float]:
    """(seconds, accuracy) of serving_default over `batches` of serialized examples."""
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    serve(examples=batches[0])  # load and trace outside the timing, as TFMA does at set-up
    started = time.perf_counter()
    predicted = np.concatenate([np.argmax(serve(examples=b)["probabilities"].numpy(), axis=-1)
                                for b in batches])
    return time.perf_counter() - started, float(np.mean(predicted == labels))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    root = str(pathlib.Path(args.root).resolve())
    examples = artifacts.newest_output_uri(root, "ImageExampleGen", "examples")
    records = list(read_records(os.path.join(examples, "Split-eval", "*")).batch(args.batch))
    labels = np.concatenate([tf.io.parse_example(b, {LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)})
                             [LABEL_KEY].numpy() for b in records])
    ratios = []
    for evaluator, seconds, model_dirs in evaluator_runs(root):
        bare = [bare_evaluate(model_dir, records, labels) for model_dir in model_dirs]
        bare_seconds = sum(s for s, _ in bare)
        ratios.append(seconds / bare_seconds)
        print(json.dumps({"evaluator": evaluator, "models": len(model_dirs),
                          "examples": int(len(labels)), "evaluator_seconds": round(seconds, 1),
                          "bare_seconds": round(bare_seconds, 1),
                          "bare_accuracy": [round(a, 4) for _, a in bare],  # model, baseline
                          "ratio": round(seconds / bare_seconds, 2)}), flush=True)
    if ratios:
        print(f"Evaluator / bare evaluation: {min(ratios):.2f}x .. {max(ratios):.2f}x "
              f"over {len(ratios)} Evaluator(s) on {len(labels)} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
