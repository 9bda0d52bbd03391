"""Ingestion benchmark: the data half of the pipeline on a whole image folder.

Runs ImageExampleGen -> StatisticsGen -> SchemaGen -> SchemaCurator -> ExampleValidator ->
Transform with LocalDagRunner and Beam's DirectRunner (multi-processing, one worker per core by
default), then measures the baseline a user could write by hand in the same process: a plain
Python loop that reads every file and writes its bytes to a gzipped TFRecord as a tf.Example
with the same four features ExampleGen writes (once at TensorFlow's default deflate level,
once at ExampleGen's, ``image_records.GZIP_LEVEL``). Every file is read once before either is timed,
so both read from the page cache. Prints one JSON object on a line of its own, then one summary
line.

    .venv/bin/python benchmarks/ingest_benchmark.py [--data imagefolder:../shared/datasets/cifar10/png]
        [--image-size 224] [--workdir /tmp/ingest-benchmark] [--beam-args "..."]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shlex
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from components import image_records
from pipeline import config as config_lib, local_runner, run_metadata
from resnet_ablation.data_source import SKIPPED_FILE

OUTPUTS = {  # component id -> output keys whose bytes on disk are reported
    "ImageExampleGen": ("examples",), "StatisticsGen": ("statistics",),
    "SchemaGen": ("schema",), "SchemaCurator": ("curated_schema",),
    "ExampleValidator": ("anomalies",), "Transform": ("transform_graph",),
}


def tree_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def peak_rss_mb() -> float:
    """Peak resident set of this process and of its largest finished child (Beam workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def warm_page_cache(folder: str) -> None:
    for path in pathlib.Path(folder).rglob("*"):
        if path.is_file():
            path.read_bytes()


def baseline_seconds(folder: str, output: str, level: int | None = None) -> tuple[float, int]:
    """Reads every image under `folder` and writes it as a tf.Example to one gzipped TFRecord,
    at deflate `level` (None: TensorFlow's default, what a notebook gets)."""
    import tensorflow as tf

    from resnet_ablation import data_source

    def feature(value: bytes | int) -> tf.train.Feature:
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    started = time.perf_counter()
    listing = data_source.list_imagefolder(folder)
    options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=level)
    with tf.io.TFRecordWriter(output, options=options) as writer:
        for file in listing.files:
            with open(file.path, "rb") as handle:
                image = handle.read()
            example = tf.train.Example(features=tf.train.Features(feature={
                data_source.IMAGE_KEY: feature(image), data_source.LABEL_KEY: feature(file.label),
                data_source.LABEL_NAME_KEY: feature(listing.labels[file.label].encode()),
                data_source.ID_KEY: feature(file.id.encode())}))
            writer.write(example.SerializeToString())
    return time.perf_counter() - started, len(listing.files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="imagefolder:../shared/datasets/cifar10/png")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workdir", default="/tmp/ingest-benchmark")
    parser.add_argument("--beam-args", default="--direct_running_mode=multi_processing "
                                               f"--direct_num_workers={os.cpu_count()}")
    args = parser.parse_args()
    source = args.data.split(":", 1)[1]
    data = f"imagefolder:{os.path.abspath(source)}"
    shutil.rmtree(args.workdir, ignore_errors=True)
    root = os.path.join(args.workdir, "pipeline")
    config = config_lib.PipelineConfig(
        profile="benchmark", pipeline_name="ingest-benchmark", data=data,
        image_size=args.image_size, pipeline_root=root,
        beam_args=tuple(shlex.split(args.beam_args)))

    warm_page_cache(source)  # both ExampleGen and the baseline then read from memory
    started = time.perf_counter()
    runs = local_runner.run(config, data_only=True)
    pipeline_seconds = time.perf_counter() - started

    store = run_metadata.open_store(root)
    counts = json.loads(pathlib.Path(run_metadata.latest_outputs(
        store, config.pipeline_name, "ImageExampleGen", "examples")[0].uri, SKIPPED_FILE).read_text())
    examples = sum(counts["examples"].values())
    sizes = {f"{component}.{key}": tree_bytes(a.uri) for component, keys in OUTPUTS.items()
             for key in keys
             for a in run_metadata.latest_outputs(store, config.pipeline_name, component, key)}
    raw_bytes = sum(os.path.getsize(f) for f in pathlib.Path(source).rglob("*") if f.is_file())

    base_seconds, base_count = baseline_seconds(source, os.path.join(args.workdir, "baseline.tfrecord.gz"))
    stored_seconds, _ = baseline_seconds(source, os.path.join(args.workdir, "stored.tfrecord.gz"),
                                         level=image_records.GZIP_LEVEL)
    seconds = {run.component: run.seconds for run in runs}
    result = {
        "data": args.data, "examples": examples, "image_size": args.image_size,
        "beam_args": args.beam_args, "cpus": os.cpu_count(),
        "wall_seconds": round(pipeline_seconds, 1),
        "component_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "examples_per_second": {k: round(examples / v, 1) for k, v in seconds.items() if v > 0},
        "baseline_seconds": round(base_seconds, 1), "baseline_examples": base_count,
        "ratio_examplegen_over_baseline": round(seconds["ImageExampleGen"] / base_seconds, 2),
        # the same loop writing gzip at ExampleGen's deflate level: the like-for-like comparison
        "baseline_same_level_seconds": round(stored_seconds, 1),
        "ratio_examplegen_over_baseline_same_level": round(
            seconds["ImageExampleGen"] / stored_seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "raw_image_bytes": raw_bytes, "artifact_bytes": sizes,
        "artifacts_over_raw": round(sum(sizes.values()) / raw_bytes, 3),
    }
    print(json.dumps(result))
    print(f"ingest: {examples} images in {pipeline_seconds:.0f} s; ExampleGen "
          f"{seconds['ImageExampleGen']:.0f} s vs plain loop {base_seconds:.0f} s "
          f"(ratio {result['ratio_examplegen_over_baseline']}; "
          f"{result['ratio_examplegen_over_baseline_same_level']} against the loop at deflate level "
          f"{image_records.GZIP_LEVEL}); StatisticsGen "
          f"{seconds['StatisticsGen']:.0f} s; Transform {seconds['Transform']:.0f} s; "
          f"artifacts {result['artifacts_over_raw']}x raw bytes; peak RSS {result['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
