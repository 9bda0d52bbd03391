"""Training throughput: the Trainer's input pipeline and model against a bare Keras loop.

Measures, in one process and alternating window by window so machine drift hits both alike:
  (a) pipeline: the Trainer's own ``training_dataset`` reading the Examples artifact (gzipped
      TFRecords of encoded PNGs) with the Transform graph applied on the fly, feeding the model
      through the Trainer's compiled train step (``compiled_model``, ``make_train_function``);
  (b) bare: the same compiled model fed from ``tf.data.Dataset.from_tensor_slices`` of the same
      images already decoded, resized and normalised in memory (the notebook's floor);
  (c) input only: images/second that (a)'s dataset yields with no model attached.
The Examples artifact and Transform graph are built by the project's own pipeline (ExampleGen +
Transform, cached between runs under --workdir). Prints one JSON object on a line of its own,
then one human summary line. Mixed precision and the distribution strategy follow the Trainer
(mixed_float16 and MirroredStrategy only when GPUs are visible).

    .venv/bin/python benchmarks/train_throughput.py --model resnet50 --image-size 32 --batch 32 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from resnet_ablation.keras2 import keras  # noqa: I001  (the Keras flavour before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import hardware, input_pipeline, optimisation
from resnet_ablation import processor
from pipeline import run_metadata, config as config_lib, local_runner
from pipeline.config import TrainingConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


def build_inputs(data: str, image_size: int, images: int, workdir: str) -> tuple[str, str]:
    """Runs the data half on `images` train images; returns (train file pattern, transform dir)."""
    config = config_lib.PipelineConfig(
        profile="benchmark", pipeline_name="throughput-benchmark", data=data,
        image_size=image_size, train_limit=images,
        pipeline_root=os.path.join(workdir, f"pipeline-{image_size}-{images}"),
        beam_args=("--direct_running_mode=in_memory",))
    local_runner.run(config, data_only=True)
    store = run_metadata.open_store(config.pipeline_root)
    output = lambda c, k: run_metadata.latest_outputs(store, config.pipeline_name, c, k)[0].uri  # noqa: E731
    return (os.path.join(output("ImageExampleGen", "examples"), "Split-train", "*"),
            output("Transform", "transform_graph"))


def in_memory_arrays(pattern: str, tf_transform_output) -> tuple[np.ndarray, np.ndarray]:
    """Every train image decoded, resized and normalised once, as NumPy arrays."""
    dataset = input_pipeline.make_dataset(pattern, tf_transform_output, 256)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def steps_per_second(step, iterator, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        logs = step(iterator)
    float(logs["loss"])  # wait for the device
    return steps / (time.perf_counter() - started)


def batches_per_second(iterator, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
    batch[0].numpy()
    return steps / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per path")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per path first")
    parser.add_argument("--images", type=int, default=1024, help="train images in the artifact")
    parser.add_argument("--data", default=f"imagefolder:{REPO.parent / 'shared/datasets/cifar10/png'}")
    parser.add_argument("--workdir", default="/tmp/throughput-benchmark")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--precision", choices=["auto", "on", "off"], default="auto",
                        help="TrainingConfig.mixed_precision for both paths (default auto)")
    parser.add_argument("--augment", action="store_true",
                        help="random crop + flip in both paths (the Trainer's augment_batch)")
    parser.add_argument("--onednn-bf16-rewrite", action="store_true",
                        help="Grappler's auto_mixed_precision_onednn_bfloat16 graph rewrite (use "
                             "with --precision off: float32 Keras, bfloat16 chosen per op by "
                             "oneDNN's lists) instead of Keras' mixed_bfloat16 policy")
    parser.add_argument("--deterministic", action="store_true",
                        help="op determinism and thread pools of every core, as "
                             "`ablation run --deterministic`")
    args = parser.parse_args()
    if args.deterministic:  # first: the thread pools are sized before TensorFlow's runtime starts
        hardware.configure_threads(TrainingConfig(intra_op_threads=os.cpu_count()))
        tf.config.experimental.enable_op_determinism()

    if args.onednn_bf16_rewrite:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})

    pattern, transform_dir = build_inputs(args.data, args.image_size, args.images, args.workdir)
    tf_transform_output = tft.TFTransformOutput(transform_dir)
    training = TrainingConfig(batch_size=args.batch, augment=args.augment, xla=args.xla,
                              mixed_precision=args.precision)
    precision = hardware.set_precision(training.mixed_precision)
    if args.onednn_bf16_rewrite:
        precision += " + oneDNN bfloat16 graph rewrite"
    strategy = hardware.distribution_strategy()
    images, labels = in_memory_arrays(pattern, tf_transform_output)
    num_classes = int(labels.max()) + 1

    pipeline_data = input_pipeline.training_dataset(
        pattern, tf_transform_output, args.batch, seed=0,
        steps_per_epoch=max(len(images) // args.batch, 1), epochs=range(100),
        shuffle_buffer=training.shuffle_buffer, augment=args.augment,
        in_memory=input_pipeline.fits_in_memory(training, len(images), 0, args.image_size))
    bare_data = (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(images), seed=0)
                 .repeat().batch(args.batch, drop_remainder=True))
    if args.augment:
        bare_data = bare_data.enumerate().map(
            lambda i, batch: (input_pipeline.augment_batch(batch[0], tf.stack([i, i])), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    bare_data = bare_data.prefetch(tf.data.AUTOTUNE)
    paths = {}
    for name, dataset in (("pipeline", pipeline_data), ("bare", bare_data)):
        keras.utils.set_random_seed(0)
        model = optimisation.compiled_model(args.model, num_classes, args.image_size, training, 100)
        step = model.make_train_function()
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        steps_per_second(step, iterator, args.warmup)  # trace, compile, fill buffers
        paths[name] = (step, iterator, [])
    for window in range(args.windows):  # alternate, each path first in turn, so drift and
        for name in sorted(paths, reverse=window % 2 == 1):  # order hit both alike
            step, iterator, rates = paths[name]
            rates.append(steps_per_second(step, iterator, args.steps) * args.batch)

    input_iterator = iter(pipeline_data)
    batches_per_second(input_iterator, args.warmup)
    input_rates = [batches_per_second(input_iterator, max(args.steps, 10)) * args.batch
                   for _ in range(args.windows)]

    pipeline_ips = statistics.median(paths["pipeline"][2])
    bare_ips = statistics.median(paths["bare"][2])
    input_ips = statistics.median(input_rates)
    result = {
        "cpu": hardware.describe_devices(), "cpu_flags": list(processor.speed_flags()),
        "onednn": hardware.onednn_enabled(), "tensorflow": tf.__version__,
        "deterministic": args.deterministic,
        "model": args.model, "image_size": args.image_size, "batch": args.batch,
        "steps_per_window": args.steps, "windows": args.windows, "precision": precision,
        "xla": args.xla, "augment": args.augment,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "pipeline_ips": round(pipeline_ips, 2), "bare_ips": round(bare_ips, 2),
        "input_only_ips": round(input_ips, 1),
        "ratio_pipeline_over_bare": round(pipeline_ips / bare_ips, 3),
        "ratio_input_over_pipeline": round(input_ips / pipeline_ips, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "windows_pipeline_ips": [round(r, 2) for r in paths["pipeline"][2]],
        "windows_bare_ips": [round(r, 2) for r in paths["bare"][2]],
    }
    print(json.dumps(result))
    print(f"{result['cpu']} [{' '.join(result['cpu_flags'])}], TensorFlow {tf.__version__}, "
          f"oneDNN {'on' if result['onednn'] else 'off'}")
    print(f"{args.model} {args.image_size}x{args.image_size} batch {args.batch} ({precision}): "
          f"pipeline {pipeline_ips:.1f} img/s, bare {bare_ips:.1f} img/s "
          f"(a/b {result['ratio_pipeline_over_bare']}), input only {input_ips:.0f} img/s "
          f"(c/a {result['ratio_input_over_pipeline']}), peak RSS {result['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
