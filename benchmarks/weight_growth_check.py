"""Early weight growth of a CIFAR net in float32 and mixed_bfloat16, trained as the Trainer does.

Builds the net as the Trainer does (``compiled_model``, the profile's TrainingConfig), trains
`--steps` steps on a finished pipeline root's Examples and Transform graph with the Trainer's own
``training_dataset`` (seed 0, augmentation), once per precision, and prints the weight-decay
term (1e-4 * ||w||^2 / 2 over every parameter) after them, with the loss and accuracy. Plain
nets with BatchNorm can grow their weights fast at lr 0.1; this shows whether precision matters.

    .venv/bin/python benchmarks/weight_growth_check.py ROOT --model cifar_plain56 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from resnet_ablation.keras2 import keras  # noqa: I001  (the Keras flavour before TensorFlow loads)
import tensorflow as tf
import tensorflow_transform as tft

from components import hardware, input_pipeline, optimisation
from pipeline import run_metadata, config as config_lib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a finished pipeline root (its data half is used)")
    parser.add_argument("--profile", default="cifar_cpu")
    parser.add_argument("--model", default="cifar_plain56")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    root = str(pathlib.Path(args.root).resolve())
    examples = run_metadata.newest_output_uri(root, "ImageExampleGen", "examples")
    transform = run_metadata.newest_output_uri(root, "Transform", "transform_graph")
    pattern = os.path.join(examples, "Split-train", "*")
    output = tft.TFTransformOutput(transform)
    training = config_lib.load_profile(args.profile).training
    size = output.transformed_feature_spec()["image"].shape[0]
    steps_per_epoch = input_pipeline.count_examples(pattern) // training.batch_size
    for precision in ("off", "auto"):
        policy = hardware.set_precision(precision)
        keras.utils.set_random_seed(0)
        model = optimisation.compiled_model(args.model, 10, size, training, steps_per_epoch)
        data = input_pipeline.training_dataset(pattern, output, training.batch_size, seed=0,
                                               steps_per_epoch=args.steps, epochs=range(1),
                                               augment=training.augment, in_memory=True)
        before = float(tf.add_n(model.losses))
        started = time.perf_counter()
        logs = model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0).history
        print(json.dumps({"model": args.model, "policy": policy, "steps": args.steps,
                          "weight_decay_term_before": round(before, 3),
                          "weight_decay_term_after": round(float(tf.add_n(model.losses)), 3),
                          "cross_entropy": round(logs["cross_entropy"][-1], 4),
                          "accuracy": round(logs["accuracy"][-1], 4),
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
