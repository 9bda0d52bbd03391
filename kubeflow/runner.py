"""Compiles the pipeline for Kubeflow Pipelines (KFP v2) with TFX's ``KubeflowV2DagRunner``.

``compile_pipeline(config, output, image, ...)`` builds ``pipeline.pipeline.create_pipeline``
for a cluster and writes it offline, without contacting the cluster or the pipeline root:

- ``.yaml`` / ``.yml``: the ``PipelineSpec`` alone, what the KFP SDK, ``kfp.Client()`` and the
  KFP UI take as a pipeline package;
- ``.json``: TFX's ``PipelineJob`` (``displayName``, ``labels``, ``pipelineSpec``,
  ``runtimeConfig``), what Vertex AI's ``aiplatform.PipelineJob(template_path=...)`` takes.

What changes from a local run:

- the pipeline root is the cluster's (``gs://...``), set both as the spec's
  ``defaultPipelineRoot`` and, in the JSON, as ``runtimeConfig.gcsOutputDirectory``; there is no
  local ML Metadata store (the KFP backend keeps its own);
- every task runs ``python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor``
  in ``image`` (``kubeflow/Dockerfile``), with the config's Beam arguments;
- Trainer tasks request ``gpus`` accelerators of ``gpu_type`` through TFX's
  ``with_platform_config`` (a KFP ``ResourceSpec``);
- component ids become KFP task names made of letters, digits and ``-`` only
  (``Trainer.resnet50`` -> ``Trainer-resnet50``): the open-source backend uses task names as
  Argo DAG task names, which Argo rejects with a dot or an underscore;
- an image folder inside this repository is passed relative to the repository root, which is
  the image's working directory (``/app``), so the same string works here and in the cluster.

Run as ``python kubeflow/runner.py --output spec.yaml [--profile NAME] [--image IMAGE]
[--pipeline-root URI] [--gpus N] [--gpu-type TYPE] [--beam-args "ARGS"]`` or
``ablation compile --engine kubeflow ...`` with the same flags.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shlex
import sys

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pipeline import config as config_lib  # noqa: E402

DEFAULT_IMAGE = "resnet-ablation:latest"
DEFAULT_GPU_TYPE = "nvidia.com/gpu"  # the Kubernetes resource name; Vertex AI: e.g. NVIDIA_TESLA_T4
TRAINER_PREFIX = "Trainer."
REMOTE_ROOT_SCHEMES = ("gs",)  # what tf.io.gfile (TensorFlow 2.21) reads and writes natively
_NOT_IN_TASK_NAME = re.compile(r"[^A-Za-z0-9-]")


def kfp_task_name(component_id: str) -> str:
    """The KFP task name of a TFX component id: every character but [A-Za-z0-9-] becomes '-'."""
    return _NOT_IN_TASK_NAME.sub("-", component_id)


def kubeflow_config(config: config_lib.PipelineConfig, pipeline_root: str | None = None
                    ) -> tuple[config_lib.PipelineConfig, list[str]]:
    """`config` as the cluster runs it, and warnings about what may not work there.

    The pipeline root is `pipeline_root`, or the config's own when that is already a URI; a
    local path is refused (ConfigError). An image folder under the repository root becomes
    relative to it (the container's working directory).
    """
    root = pipeline_root or config.pipeline_root
    if "://" not in root:
        raise config_lib.ConfigError(
            f"pipeline root {root!r} is a local path; a Kubeflow pipeline root is a URI the "
            f"cluster can write, e.g. --pipeline-root gs://BUCKET/resnet-ablation")
    root = root.rstrip("/")
    warnings = []
    scheme = root.split("://", 1)[0]
    if scheme not in REMOTE_ROOT_SCHEMES:
        warnings.append(
            f"pipeline root scheme {scheme}:// : the TFX executors read and write artifacts with "
            f"tf.io.gfile, which in TensorFlow 2.21 implements only gs:// (and local paths) "
            f"without a filesystem plugin; see kubeflow/README.md")
    data = config.data
    if data.startswith("imagefolder:"):
        from components.data_source import parse_data

        path = pathlib.Path(parse_data(data).path)
        if path.is_relative_to(config_lib.REPO_ROOT):
            data = f"imagefolder:{path.relative_to(config_lib.REPO_ROOT).as_posix()}"
        else:
            warnings.append(f"image folder {path} is outside the repository: it must exist at "
                            f"that path inside the container (e.g. a mounted volume)")
    for key in ("tfds_data_dir", "tfds_download_dir", "tfds_manual_dir"):
        value = getattr(config, key)
        if value and "://" not in value:
            warnings.append(f"{key} {value} is a local path: it must exist inside the container")
    return dataclasses.replace(config, pipeline_root=root, data=data), warnings


def build_pipeline(config: config_lib.PipelineConfig):
    """``create_pipeline(config)`` without a local metadata store (KFP manages its own)."""
    from pipeline.pipeline import create_pipeline

    return create_pipeline(config, local_metadata=False)


def accelerator_spec(gpus: int, gpu_type: str):
    """A KFP container ResourceSpec asking for `gpus` accelerators of `gpu_type`.

    Sets both the current fields (``resource_type``/``resource_count``, strings) and the
    deprecated ones (``type``/``count``) that older KFP backends read, as the KFP SDK does.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    return resources(accelerator=resources.AcceleratorConfig(
        type=gpu_type, count=gpus, resource_type=gpu_type, resource_count=str(gpus)))


def compile_pipeline(config: config_lib.PipelineConfig, output: str, image: str,
                     pipeline_root: str | None = None, gpus: int = 1,
                     gpu_type: str = DEFAULT_GPU_TYPE) -> dict:
    """Compiles `config`'s pipeline for KFP v2 into `output` and returns the PipelineJob dict.

    `output` ending in .yaml/.yml gets the PipelineSpec (KFP), .json the PipelineJob (Vertex
    AI); the returned dict is the PipelineJob in both cases. Raises ConfigError for an invalid
    config, a local pipeline root, a negative GPU count or another file extension.
    """
    if not isinstance(gpus, int) or gpus < 0:
        raise config_lib.ConfigError(f"gpus must be a non-negative integer, got {gpus!r}")
    if gpus and not gpu_type:
        raise config_lib.ConfigError("gpu_type must name the accelerator, e.g. nvidia.com/gpu")
    if not image:
        raise config_lib.ConfigError("image must name the container image the tasks run in")
    suffix = pathlib.Path(output).suffix
    if suffix not in (".json", ".yaml", ".yml"):
        raise config_lib.ConfigError(
            f"output {output}: write .yaml (KFP pipeline package) or .json (Vertex AI PipelineJob)")
    cluster_config, warnings = kubeflow_config(config, pipeline_root)
    import components.keras_lib  # noqa: F401  (the project's Keras flavour, before TensorFlow)
    from tfx import v1 as tfx

    with contextlib.chdir(config_lib.REPO_ROOT):  # relative data paths, as in the container
        config_lib.validate(cluster_config)
        pipeline = build_pipeline(cluster_config)
    trainers = [c for c in pipeline.components if c.id.startswith(TRAINER_PREFIX)]
    if gpus:
        for trainer in trainers:
            trainer.with_platform_config(accelerator_spec(gpus, gpu_type))
    names = {c.id: kfp_task_name(c.id) for c in pipeline.components}
    if len(set(names.values())) != len(names):
        raise config_lib.ConfigError(f"component ids collide as KFP task names: {names}")
    for component in pipeline.components:
        component.with_id(names[component.id])

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True))
    job = runner.run(pipeline, write_out=False)
    job["pipelineSpec"]["defaultPipelineRoot"] = cluster_config.pipeline_root
    _write(job, output)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return job


def _write(job: dict, output: str) -> None:
    path = pathlib.Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
        return
    import yaml

    spec = job["pipelineSpec"]
    header = (f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
              f"# Compiled by kubeflow/runner.py with TFX's KubeflowV2DagRunner "
              f"({spec['sdkVersion']}); pipeline root {spec['defaultPipelineRoot']}\n")
    path.write_text(header + yaml.safe_dump(spec, sort_keys=True))


def summary(job: dict) -> str:
    """One line: tasks, GPU tasks, image(s), pipeline root."""
    spec = job["pipelineSpec"]
    containers = [e["container"] for e in spec["deploymentSpec"]["executors"].values()
                  if "container" in e]
    images = sorted({c["image"] for c in containers})
    gpu = [c["resources"]["accelerator"] for c in containers
           if c.get("resources", {}).get("accelerator")]
    gpu_text = (f"{len(gpu)} with {gpu[0]['resourceCount']} x {gpu[0]['resourceType']}"
                if gpu else "no GPU requests")
    return (f"{len(spec['root']['dag']['tasks'])} tasks ({gpu_text}), "
            f"image {', '.join(images)}, root {spec['defaultPipelineRoot']}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by ``python kubeflow/runner.py`` and ``ablation compile``."""
    parser.add_argument("--output", required=True,
                        help="spec file: .yaml (KFP pipeline package) or .json (Vertex AI)")
    parser.add_argument("--profile", default="smoke",
                        help="a file in pipeline/profiles (default smoke)")
    parser.add_argument("--image", default=DEFAULT_IMAGE,
                        help=f"container image of every task (default {DEFAULT_IMAGE})")
    parser.add_argument("--pipeline-root", help="gs://BUCKET/PATH (default: the profile's, "
                        "if it is a URI)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per Trainer task (default 1)")
    parser.add_argument("--gpu-type", default=DEFAULT_GPU_TYPE,
                        help=f"accelerator type (default {DEFAULT_GPU_TYPE})")
    parser.add_argument("--beam-args", metavar='"ARGS"',
                        help="Beam pipeline arguments as one string, replacing the profile's, "
                             'e.g. --beam-args="--runner=DataflowRunner --project=P ..."')


def run(args: argparse.Namespace) -> dict:
    """Loads the profile, compiles, prints where the spec went and the one-line summary."""
    config = config_lib.load_profile(args.profile)
    if args.beam_args:
        config = config_lib.with_overrides(config, beam_args=tuple(shlex.split(args.beam_args)))
    job = compile_pipeline(config, args.output, args.image, args.pipeline_root, args.gpus,
                           args.gpu_type)
    print(f"Kubeflow pipeline spec written to {os.path.abspath(args.output)}")
    print(summary(job))
    return job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubeflow/runner.py", description="Compile the ablation pipeline for Kubeflow "
        "Pipelines v2 (KFP or Vertex AI) with TFX's KubeflowV2DagRunner.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(args)
    except config_lib.ConfigError as error:
        print(f"kubeflow/runner.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
