"""Where the Trainer's training step spends its time, op by op (TensorFlow's profiler).

Builds a CIFAR net as the Trainer does (``optimisation.compiled_model``, its compiled train step),
trains `--warmup` untimed steps on random images, then profiles `--steps` steps with
``tf.profiler.experimental`` and sums the host's TensorFlow op events by op type from the
trace (the XPlane file the profiler writes). Prints the processor, whether oneDNN is on, the
precision, then a table of the op types with the largest share of op time, and one JSON line.

    .venv/bin/python benchmarks/op_profile.py --model cifar_resnet56 --batch 128 --steps 4
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from resnet_ablation.keras2 import keras  # noqa: I001  (the Keras flavour before TensorFlow loads)
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from components import hardware, optimisation
from resnet_ablation import processor
from pipeline.config import TrainingConfig

HOST_PLANE = "/host:CPU"
OP_LINES = "tf_Compute"  # the host plane's lines of the executor's threads, one op an event
NOT_OPS = ("ThreadpoolListener", "ExecutorState")  # the executor's own events on those lines


def op_seconds(xplane_path: str) -> dict[str, float]:
    """Seconds per op type ("Conv2DBackpropFilter", ...) summed over the host's op events
    (named "<op name>:<op type>" on the executor threads' lines; the intra-op pool's work runs
    inside them and is not counted again)."""
    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as file:
        space.ParseFromString(file.read())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        if plane.name != HOST_PLANE:
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith(OP_LINES):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                if not name.startswith(NOT_OPS):
                    totals[name.rsplit(":", 1)[-1].strip()] += event.duration_ps / 1e12
    return dict(totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet56")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    training = TrainingConfig(batch_size=args.batch, mixed_precision=args.precision)
    precision = hardware.set_precision(training.mixed_precision)
    keras.utils.set_random_seed(0)
    model = optimisation.compiled_model(args.model, 10, 32, training, 100)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(args.batch, 32, 32, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 10, args.batch))
    iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    step = model.make_train_function()
    for _ in range(args.warmup):
        step(iterator)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        for _ in range(args.steps):
            logs = step(iterator)
        float(logs["loss"])
        seconds = time.perf_counter() - started
        tf.profiler.experimental.stop()
        [path] = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        totals = op_seconds(path)
    op_total = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    print(f"{processor.describe()} [{' '.join(processor.speed_flags())}], TensorFlow "
          f"{tf.__version__}, oneDNN {'on' if hardware.onednn_enabled() else 'off'}, {precision}")
    print(f"{args.model} batch {args.batch}: {args.steps} steps in {seconds:.2f} s "
          f"({args.steps * args.batch / seconds:.0f} img/s under the profiler); op time "
          f"{op_total:.2f} s (summed over threads)")
    for name, value in ranked[:args.top]:
        print(f"  {name:<40} {value:8.3f} s  {100 * value / op_total:5.1f} %")
    print(json.dumps({"model": args.model, "batch": args.batch, "precision": precision,
                      "onednn": hardware.onednn_enabled(), "cpu": processor.describe(),
                      "cpu_flags": list(processor.speed_flags()), "steps": args.steps,
                      "seconds": round(seconds, 3), "op_seconds": {
                          name: round(value, 4) for name, value in ranked[:args.top]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
