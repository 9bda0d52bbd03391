"""Compiles the pipeline for Kubeflow Pipelines (KFP v2) with TFX's ``KubeflowV2DagRunner``.

``compile_pipeline(config, output, image, ...)`` builds ``pipeline.pipeline.create_pipeline``
for a cluster and writes it offline, without contacting the cluster or the pipeline root:

- ``.yaml`` / ``.yml``: the ``PipelineSpec`` alone, what the KFP SDK, ``kfp.Client()``,
  ``kfp.local`` and the KFP UI take as a pipeline package;
- ``.json``: TFX's ``PipelineJob`` (``displayName``, ``labels``, ``pipelineSpec``,
  ``runtimeConfig``), what Vertex AI's ``aiplatform.PipelineJob(template_path=...)`` takes.

What changes from a local run:

- the pipeline root is the cluster's (``gs://...``), set both as the spec's
  ``defaultPipelineRoot`` and, in the JSON, as ``runtimeConfig.gcsOutputDirectory``; there is no
  local ML Metadata store (the KFP backend keeps its own);
- every task runs ``python -m kubeflow.entrypoint`` (``kubeflow/entrypoint.py``: TFX's
  ``kubeflow_v2_run_executor`` after restoring input artifact types that open-source KFP and
  kfp.local hand as ``system.Artifact``) in ``image`` (``kubeflow/Dockerfile``), with the
  config's Beam arguments;
- every task requests CPU and memory by component kind (``DEFAULT_RESOURCES``, overridable),
  and Trainer tasks request ``gpus`` accelerators of ``gpu_type``, all through TFX's
  ``with_platform_config`` (a KFP ``ResourceSpec``);
- ``trainer_workers`` N > 1 is recorded in every Trainer task's container as the environment
  variable ``ABLATION_TRAINER_WORKERS=N`` (``request_trainer_workers``): neither KFP nor Vertex
  AI starts several workers for one task, so the Trainer then refuses to train unless it is
  started as N workers with a TF_CONFIG naming them (kubeflow/README.md says how);
- component ids become KFP task names made of letters, digits and ``-`` only
  (``Trainer.resnet50`` -> ``Trainer-resnet50``): the open-source backend uses task names as
  Argo DAG task names, which Argo rejects with a dot or an underscore;
- an image folder inside this repository is passed relative to the repository root, which is
  the image's working directory (``/app``), so the same string works here and in the cluster;
- the image must carry a tag other than ``latest`` (``--allow-latest-tag`` to override): KFP's
  cache keys on the image string, so a moving tag serves stale results.

Run as ``python kubeflow/runner.py --output spec.yaml --image IMAGE [FLAGS]`` or
``ablation compile ...`` with the same flags (``add_arguments``). The ``tfx``
CLI runs this file without arguments (``tfx pipeline create|compile --engine=vertex
--pipeline_path=kubeflow/runner.py``): the flags then come from the environment variable
``ABLATION_COMPILE_FLAGS`` and the spec goes where the CLI expects it.
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

if __package__ in (None, ""):  # run as a file (or by the tfx CLI): make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from kubeflow import image_reference
from pipeline import config as config_lib, study_flags

ENTRYPOINT = ("python", "-m", "kubeflow.entrypoint")  # the container command of every task
DEFAULT_GPU_TYPE = "nvidia.com/gpu"  # the Kubernetes resource name; Vertex AI: e.g. NVIDIA_TESLA_T4
TRAINER_PREFIX = "Trainer."
REMOTE_ROOT_SCHEMES = ("gs",)  # what tf.io.gfile (TensorFlow 2.21) reads and writes natively
FLAGS_ENV = "ABLATION_COMPILE_FLAGS"  # the flags when the tfx CLI runs this file
_NOT_IN_TASK_NAME = re.compile(r"[^A-Za-z0-9-]")
_CPU = re.compile(r"\d+(\.\d+)?m?")
_MEMORY = re.compile(r"(\d+(\.\d+)?)(E|P|T|G|M|K|Ei|Pi|Ti|Gi|Mi|Ki)?")
_MEMORY_GB = {"": 1e-9, "K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3, "P": 1e6, "E": 1e9,
              "Ki": 2**10 / 1e9, "Mi": 2**20 / 1e9, "Gi": 2**30 / 1e9, "Ti": 2**40 / 1e9,
              "Pi": 2**50 / 1e9, "Ei": 2**60 / 1e9}


@dataclasses.dataclass(frozen=True)
class Resources:
    """CPU and memory of one task: Kubernetes quantities ("2", "500m"; "8G", "512Mi")."""

    cpu: str
    memory: str
    cpu_limit: str | None = None  # None: the request
    memory_limit: str | None = None

    def limits(self) -> tuple[str, str]:
        return self.cpu_limit or self.cpu, self.memory_limit or self.memory


# Requests (and limits) per component kind, the part of the component id before the first dot.
# Sized for the GPU profiles (224x224 images, CIFAR-10 / cats_vs_dogs): Beam's DirectRunner uses
# one worker per CPU the pod gets; a Trainer fits an n1-standard-8 GPU node (about 7.9 CPUs and
# 27 GB allocatable) with room for the node's daemons.
DEFAULT_RESOURCES: dict[str, Resources] = {
    "ImageExampleGen": Resources("2", "4G", memory_limit="8G"),
    "StatisticsGen": Resources("2", "4G", memory_limit="8G"),
    "SchemaGen": Resources("1", "2G"),
    "SchemaCurator": Resources("1", "2G"),
    "ExampleValidator": Resources("1", "2G"),
    "Transform": Resources("4", "8G", memory_limit="16G"),
    "Trainer": Resources("6", "24G"),
    "Evaluator": Resources("4", "8G", memory_limit="16G"),
    "AblationReport": Resources("1", "2G", memory_limit="4G"),
}


def kfp_task_name(component_id: str) -> str:
    """The KFP task name of a TFX component id: every character but [A-Za-z0-9-] becomes '-'."""
    return _NOT_IN_TASK_NAME.sub("-", component_id)


def component_kind(component_id: str) -> str:
    """``Trainer.resnet50.seed1`` -> ``Trainer``: the key of DEFAULT_RESOURCES."""
    return component_id.split(".", 1)[0]


def kubeflow_config(config: config_lib.PipelineConfig, pipeline_root: str | None = None
                    ) -> tuple[config_lib.PipelineConfig, list[str]]:
    """`config` as the cluster runs it, and warnings about what may not work there.

    The pipeline root is `pipeline_root`, or the config's own when that is already a URI; a
    local path is refused (ConfigError). An image folder under the repository root becomes
    relative to it (the container's working directory).
    """
    root = pipeline_root or config.pipeline_root
    if not config_lib.is_uri(root):
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
    data = config.source.relative_to(config_lib.REPO_ROOT)
    if data is None:
        data = config.data
        warnings.append(f"image folder {config.source.path} is outside the repository: it must "
                        f"exist at that path inside the container (e.g. a mounted volume)")
    for key in ("tfds_data_dir", "tfds_download_dir", "tfds_manual_dir"):
        value = getattr(config, key)
        if value and not config_lib.is_uri(value):
            warnings.append(f"{key} {value} is a local path: it must exist inside the container")
    return dataclasses.replace(config, pipeline_root=root, data=data), warnings


def _cpu_float(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _memory_gb(quantity: str) -> float:
    match = _MEMORY.fullmatch(quantity)
    return float(match.group(1)) * _MEMORY_GB[match.group(3) or ""]


def _check_resources(resources: dict[str, Resources]) -> None:
    unknown = sorted(set(resources) - set(DEFAULT_RESOURCES))
    if unknown:
        raise config_lib.ConfigError(f"unknown component kind(s) {', '.join(unknown)}; kinds: "
                                     f"{', '.join(DEFAULT_RESOURCES)}")
    for kind, spec in resources.items():
        cpu_limit, memory_limit = spec.limits()
        for quantity in (spec.cpu, cpu_limit):
            if not _CPU.fullmatch(quantity) or _cpu_float(quantity) <= 0:
                raise config_lib.ConfigError(
                    f"{kind}: CPU {quantity!r} is not a positive quantity like 2, 0.5 or 500m")
        for quantity in (spec.memory, memory_limit):
            if not _MEMORY.fullmatch(quantity) or _memory_gb(quantity) <= 0:
                raise config_lib.ConfigError(
                    f"{kind}: memory {quantity!r} is not a positive quantity like 8G or 512Mi")
        if _cpu_float(cpu_limit) < _cpu_float(spec.cpu) or \
                _memory_gb(memory_limit) < _memory_gb(spec.memory):
            raise config_lib.ConfigError(f"{kind}: a limit is below its request ({spec})")


def resource_spec(resources: Resources | None, gpus: int = 0, gpu_type: str = DEFAULT_GPU_TYPE):
    """A KFP container ResourceSpec: CPU and memory requests and limits, and `gpus`
    accelerators of `gpu_type`, or None when there is nothing to ask for.

    Sets both the current string fields (``resource_cpu_limit``, ``resource_type``, ...) and
    the deprecated numeric ones (``cpu_limit`` in CPUs, ``memory_limit`` in GB, ``type``,
    ``count``) that older KFP backends and Vertex AI read, as the KFP SDK does.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if resources is not None:
        cpu_limit, memory_limit = resources.limits()
        spec.resource_cpu_request, spec.cpu_request = resources.cpu, _cpu_float(resources.cpu)
        spec.resource_cpu_limit, spec.cpu_limit = cpu_limit, _cpu_float(cpu_limit)
        spec.resource_memory_request = resources.memory
        spec.memory_request = _memory_gb(resources.memory)
        spec.resource_memory_limit, spec.memory_limit = memory_limit, _memory_gb(memory_limit)
    if gpus:
        spec.accelerator.type, spec.accelerator.count = gpu_type, gpus
        spec.accelerator.resource_type, spec.accelerator.resource_count = gpu_type, str(gpus)
    return spec if spec.ByteSize() else None


def accelerator_spec(gpus: int, gpu_type: str):
    """A KFP container ResourceSpec asking for `gpus` accelerators of `gpu_type` only."""
    return resource_spec(None, gpus, gpu_type)


def build_pipeline(config: config_lib.PipelineConfig):
    """``create_pipeline(config)`` without a local metadata store (KFP manages its own)."""
    from pipeline.pipeline import create_pipeline

    return create_pipeline(config, local_metadata=False)


def compile_pipeline(config: config_lib.PipelineConfig, output: str | None, image: str,
                     pipeline_root: str | None = None, gpus: int = 1,
                     gpu_type: str = DEFAULT_GPU_TYPE,
                     resources: dict[str, Resources] | None = None,
                     allow_latest_tag: bool = False, trainer_workers: int = 1) -> dict:
    """Compiles `config`'s pipeline for KFP v2 into `output` and returns the PipelineJob dict.

    `output` ending in .yaml/.yml gets the PipelineSpec (KFP), .json the PipelineJob (Vertex
    AI); the returned dict is the PipelineJob in both cases. `output` None writes
    ``<pipeline name>_pipeline.json`` in the working directory, unless the ``tfx`` CLI, which
    patches KubeflowV2DagRunner, chose the place. `resources` replaces DEFAULT_RESOURCES for
    the kinds it names ({kind: None} drops a kind's requests). `trainer_workers` > 1 is
    recorded in the Trainer tasks (``request_trainer_workers``). Raises ConfigError for an
    invalid config, a local pipeline root, a negative GPU count, a worker count below 1, an
    image without a tag per build or another file extension.
    """
    return _compile(config, output, image, pipeline_root, gpus, gpu_type, resources,
                    allow_latest_tag, trainer_workers)[0]


def _compile(config, output, image, pipeline_root, gpus, gpu_type, resources,
             allow_latest_tag, trainer_workers=1) -> tuple[dict, pathlib.Path]:
    if not isinstance(gpus, int) or gpus < 0:
        raise config_lib.ConfigError(f"gpus must be a non-negative integer, got {gpus!r}")
    if type(trainer_workers) is not int or trainer_workers < 1:
        raise config_lib.ConfigError(
            f"trainer workers must be a positive integer, got {trainer_workers!r}")
    if gpus and not gpu_type:
        raise config_lib.ConfigError("gpu_type must name the accelerator, e.g. nvidia.com/gpu")
    if output is not None and pathlib.Path(output).suffix not in (".json", ".yaml", ".yml"):
        raise config_lib.ConfigError(
            f"output {output}: write .yaml (KFP pipeline package) or .json (Vertex AI PipelineJob)")
    per_kind = {**DEFAULT_RESOURCES, **(resources or {})}
    _check_resources({kind: spec for kind, spec in per_kind.items() if spec is not None})
    cluster_config, warnings = kubeflow_config(config, pipeline_root)
    warnings += image_reference.check_image(image, allow_latest_tag)
    import resnet_ablation.keras2  # noqa: F401, I001  (the project's Keras flavour, before TensorFlow)
    from tfx import v1 as tfx

    with contextlib.chdir(config_lib.REPO_ROOT):  # relative data paths, as in the container
        config_lib.validate(cluster_config)
        pipeline = build_pipeline(cluster_config)
    names = {c.id: kfp_task_name(c.id) for c in pipeline.components}
    if len(set(names.values())) != len(names):
        raise config_lib.ConfigError(f"component ids collide as KFP task names: {names}")
    trainer_tasks = [names[c.id] for c in pipeline.components if c.id.startswith(TRAINER_PREFIX)]
    for component in pipeline.components:
        kind = component_kind(component.id)
        spec = resource_spec(per_kind.get(kind),
                             gpus if component.id.startswith(TRAINER_PREFIX) else 0, gpu_type)
        if spec is not None:
            component.with_platform_config(spec)
        component.with_id(names[component.id])

    if output is None:
        output_dir, output_filename = os.getcwd(), f"{config.pipeline_name}_pipeline.json"
    else:
        output_dir, output_filename = os.path.dirname(os.path.abspath(output)), \
            os.path.basename(output)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, default_commands=list(ENTRYPOINT), use_pipeline_spec_2_1=True),
        output_dir=output_dir, output_filename=output_filename)
    job = runner.run(pipeline, write_out=False)
    job["pipelineSpec"]["defaultPipelineRoot"] = cluster_config.pipeline_root
    pass_output_metadata(job["pipelineSpec"])
    request_trainer_workers(job["pipelineSpec"], trainer_tasks, trainer_workers)
    # Where the spec goes: ours, or what the tfx CLI's KubeflowV2DagRunnerPatcher set on the
    # runner inside run() (the two attributes it sets; TFX has no public accessor).
    path = pathlib.Path(runner._output_dir, runner._output_filename)  # noqa: SLF001
    _write(job, path)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return job, path


def pass_output_metadata(spec: dict) -> None:
    """Adds ``--output_metadata_json {output key: metadata}`` after ``{{$}}`` to the container
    arguments of every task whose outputs declare metadata (``additional_custom_properties``).

    Vertex AI and the KFP backend put the declared metadata into the ExecutorInput themselves;
    kfp.local does not, so ``kubeflow.entrypoint`` fills it in from this flag (and removes it
    before TFX's entrypoint parses the arguments)."""
    from kubeflow.entrypoint import OUTPUT_METADATA_FLAG

    for component in spec["components"].values():
        outputs = component.get("outputDefinitions", {}).get("artifacts", {})
        metadata = {key: output["metadata"] for key, output in outputs.items()
                    if output.get("metadata")}
        executor = spec["deploymentSpec"]["executors"].get(component.get("executorLabel"), {})
        args = executor.get("container", {}).get("args")
        if metadata and args and "{{$}}" in args:
            at = args.index("{{$}}") + 1
            args[at:at] = [OUTPUT_METADATA_FLAG, json.dumps(metadata, sort_keys=True)]


def request_trainer_workers(spec: dict, trainer_tasks: list[str], workers: int) -> None:
    """Adds ``ABLATION_TRAINER_WORKERS=<workers>`` to the environment of the container of
    each of `trainer_tasks` when `workers` > 1 (nothing for 1: the spec stays as before).

    The request as the spec can carry it: a KFP task is one pod, and neither open-source KFP
    nor Vertex AI Pipelines starts several workers for it. What starts them is a Vertex AI
    CustomJob (TFX's ``tfx.extensions.google_cloud_ai_platform`` Trainer, ``worker_pool_specs``
    with ``replica_count`` N - 1 in pool 1) or a Kubeflow TFJob; both set TF_CONFIG for each
    worker. A Trainer started with this variable and a TF_CONFIG naming another number of
    workers refuses to train (``components.hardware.check_workers``)."""
    from components.hardware import WORKERS_ENV

    if workers == 1:
        return
    for task in trainer_tasks:
        component = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
        executor = spec["deploymentSpec"]["executors"][spec["components"][component]["executorLabel"]]
        executor["container"].setdefault("env", []).append(
            {"name": WORKERS_ENV, "value": str(workers)})


def _write(job: dict, path: pathlib.Path) -> None:
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
    """One line: tasks, GPU tasks (and the Trainers' workers, if more than one), image(s),
    pipeline root."""
    from components.hardware import WORKERS_ENV

    spec = job["pipelineSpec"]
    containers = [e["container"] for e in spec["deploymentSpec"]["executors"].values()
                  if "container" in e]
    images = sorted({c["image"] for c in containers})
    gpu = [c["resources"]["accelerator"] for c in containers
           if c.get("resources", {}).get("accelerator")]
    gpu_text = (f"{len(gpu)} with {gpu[0]['resourceCount']} x {gpu[0]['resourceType']}"
                if gpu else "no GPU requests")
    workers = sorted({variable["value"] for c in containers for variable in c.get("env", [])
                      if variable["name"] == WORKERS_ENV})
    if workers:
        gpu_text += f"; Trainers compiled for {', '.join(workers)} workers each"
    return (f"{len(spec['root']['dag']['tasks'])} tasks ({gpu_text}), "
            f"image {', '.join(images)}, root {spec['defaultPipelineRoot']}")


def _quantities(value: str) -> tuple[str, str]:
    """``KIND=REQUEST[:LIMIT]`` -> (KIND, "REQUEST[:LIMIT]"), for --cpu and --memory."""
    kind, sep, amount = value.partition("=")
    if not sep or not kind or not amount:
        raise argparse.ArgumentTypeError(f"expected KIND=REQUEST[:LIMIT], got {value!r}")
    return kind, amount


def add_arguments(parser: argparse.ArgumentParser, output_required: bool = True) -> None:
    """The flags shared by ``python kubeflow/runner.py``, ``ablation compile`` and the tfx CLI
    (``ABLATION_COMPILE_FLAGS``)."""
    parser.add_argument("--output", required=output_required,
                        help="spec file: .yaml (KFP pipeline package) or .json (Vertex AI)")
    parser.add_argument("--image", help="container image of every task, tagged per build: "
                        "REGISTRY/resnet-ablation:TAG (kubeflow/build_image.py prints one)")
    parser.add_argument("--allow-latest-tag", action="store_true",
                        help="accept an image tagged latest or untagged (warns)")
    parser.add_argument("--pipeline-root", help="gs://BUCKET/PATH (default: the profile's, "
                        "if it is a URI)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per Trainer task (default 1)")
    parser.add_argument("--trainer-workers", type=int, default=1, metavar="N",
                        help="workers per Trainer task (default 1); N > 1 is recorded in the "
                             "Trainer tasks, which then train only when started as N workers "
                             "(a Vertex AI CustomJob, a Kubeflow TFJob: kubeflow/README.md)")
    parser.add_argument("--gpu-type", default=DEFAULT_GPU_TYPE,
                        help=f"accelerator type (default {DEFAULT_GPU_TYPE}; Vertex AI: e.g. "
                             f"NVIDIA_TESLA_T4)")
    parser.add_argument("--cpu", type=_quantities, action="append", default=[],
                        metavar="KIND=REQUEST[:LIMIT]",
                        help="CPU of a component kind, e.g. --cpu Trainer=8 or "
                             "--cpu Transform=2:4 (repeatable; kinds: "
                             f"{', '.join(DEFAULT_RESOURCES)})")
    parser.add_argument("--memory", type=_quantities, action="append", default=[],
                        metavar="KIND=REQUEST[:LIMIT]",
                        help="memory of a component kind, e.g. --memory Trainer=48G "
                             "(repeatable)")
    parser.add_argument("--no-resources", action="store_true",
                        help="no CPU or memory requests at all (GPU requests stay)")
    study_flags.add_study_flags(parser, pipeline_root=False)  # as `ablation run`'s


def resources_from(args: argparse.Namespace) -> dict[str, Resources | None]:
    """DEFAULT_RESOURCES with --cpu/--memory applied; every kind None with --no-resources."""
    if args.no_resources:
        return {kind: None for kind in DEFAULT_RESOURCES}
    result = dict(DEFAULT_RESOURCES)
    for flag, field in (("cpu", "cpu"), ("memory", "memory")):
        for kind, amount in getattr(args, flag):
            if kind not in result:
                raise config_lib.ConfigError(
                    f"--{flag} {kind}=...: unknown component kind; kinds: "
                    f"{', '.join(DEFAULT_RESOURCES)}")
            request, _, limit = amount.partition(":")
            result[kind] = dataclasses.replace(
                result[kind], **{field: request, f"{field}_limit": limit or request})
    return result


def config_from(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The profile with --set and the study flags applied, as ``ablation run`` reads them; the
    pipeline root is --pipeline-root's business (``kubeflow_config``)."""
    return study_flags.config_from(argparse.Namespace(**{**vars(args), "pipeline_root": None}))


def run(args: argparse.Namespace) -> dict:
    """Loads the profile, compiles, prints where the spec went and the one-line summary.

    `args` is what ``add_arguments`` parses; flags it lacks take their defaults."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults, output_required=False)
    args = argparse.Namespace(**{**vars(defaults.parse_args([])), **vars(args)})
    job, path = _compile(config_from(args), args.output, args.image, args.pipeline_root,
                         args.gpus, args.gpu_type, resources_from(args), args.allow_latest_tag,
                         args.trainer_workers)
    print(f"Kubeflow pipeline spec written to {path}")
    print(summary(job))
    return job


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The tfx CLI runs this file with no arguments: the flags are in ABLATION_COMPILE_FLAGS.
    from_environment = not argv
    if from_environment:
        argv = shlex.split(os.environ.get(FLAGS_ENV, ""))
    parser = argparse.ArgumentParser(
        prog="kubeflow/runner.py", description="Compile the ablation pipeline for Kubeflow "
        "Pipelines v2 (KFP or Vertex AI) with TFX's KubeflowV2DagRunner. Run without "
        f"arguments (as the tfx CLI does), it reads them from ${FLAGS_ENV}.")
    add_arguments(parser, output_required=not from_environment)
    args = parser.parse_args(argv)
    try:
        run(args)
    except config_lib.ConfigError as error:
        source = f" (flags from ${FLAGS_ENV})" if from_environment else ""
        print(f"kubeflow/runner.py{source}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
