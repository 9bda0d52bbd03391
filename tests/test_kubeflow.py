"""Kubeflow V2: the real pipeline compiled by kubeflow/runner.py, and tasks run as KFP would.

No cluster and no mocks: TFX's KubeflowV2DagRunner compiles the real ``create_pipeline``
offline; the spec must parse strictly into kfp's protos and match the local pipeline task for
task and edge for edge; the ImageExampleGen task's container command, with the arguments the
spec gives it and a real executor input in place of KFP's ``{{$}}`` placeholder, runs the
project's entrypoint in a subprocess from the repository root (the image's working directory),
and so does the StatisticsGen task with its input typed ``system.Artifact``, as open-source KFP
and kfp.local hand it. The same pipeline in real containers under kfp.local:
tests/test_kubeflow_containers.py (``make test-kubeflow``).
"""

import argparse
import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from google.protobuf import json_format

from pipeline import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
IMAGE = "registry.example.com/team/resnet-ablation:test"
ROOT = "gs://ablation-test-bucket/kfp-root"
GPUS, GPU_TYPE = 2, "nvidia.com/gpu"
TWO_MODELS = config_lib.PipelineConfig(
    profile="test", pipeline_name="test-kubeflow", data=f"imagefolder:{REPO}/data/cifar10_smoke",
    image_size=32, models=("cifar_resnet20", "cifar_plain20"), seeds=2, train_limit=40,
    pipeline_root="gs://ignored-bucket/root",  # replaced by the pipeline_root argument
    beam_args=("--direct_running_mode=in_memory", "--direct_num_workers=1"))
ENTRYPOINT = ["python", "-m", "kubeflow.entrypoint"]
TFX_ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


@dataclasses.dataclass(frozen=True)
class Compiled:
    config: config_lib.PipelineConfig  # as given to compile_pipeline
    gpus: int
    job: dict  # compile_pipeline's return value: the PipelineJob
    json_path: pathlib.Path
    yaml_path: pathlib.Path

    @property
    def spec(self) -> dict:
        return self.job["pipelineSpec"]


def _compile(tmp: pathlib.Path, config, gpus: int) -> Compiled:
    from kubeflow.runner import compile_pipeline

    json_path, yaml_path = tmp / "spec.json", tmp / "spec.yaml"
    job = compile_pipeline(config, str(json_path), IMAGE, ROOT, gpus=gpus, gpu_type=GPU_TYPE)
    again = compile_pipeline(config, str(yaml_path), IMAGE, ROOT, gpus=gpus, gpu_type=GPU_TYPE)
    assert again["pipelineSpec"] == job["pipelineSpec"]
    return Compiled(config, gpus, job, json_path, yaml_path)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Compiled:
    return _compile(tmp_path_factory.mktemp("smoke"), config_lib.load_profile("smoke"), GPUS)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> Compiled:
    return _compile(tmp_path_factory.mktemp("two"), TWO_MODELS, 0)


@pytest.fixture(params=["smoke", "two_models"])
def compiled(request) -> Compiled:
    return request.getfixturevalue(request.param)


def _local_dag(config, root: pathlib.Path) -> dict[str, set[str]]:
    """KFP task name -> upstream task names, from the local pipeline's components."""
    from kubeflow.runner import kfp_task_name
    from pipeline.pipeline import create_pipeline

    local = create_pipeline(dataclasses.replace(config, pipeline_root=str(root)))
    return {kfp_task_name(c.id): {kfp_task_name(u.id) for u in c.upstream_nodes}
            for c in local.components}


def _executor(spec: dict, task: str) -> dict:
    component = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    return spec["deploymentSpec"]["executors"][spec["components"][component]["executorLabel"]]


def _component(spec: dict, task: str) -> dict:
    return spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]


# --------------------------------------------------------------------------- the spec


def test_spec_files_parse_strictly(compiled):
    from kfp.client.client import _extract_pipeline_yaml
    from kfp.pipeline_spec import pipeline_spec_pb2

    job = json.loads(compiled.json_path.read_text())
    assert job == compiled.job
    assert set(job) == {"displayName", "labels", "pipelineSpec", "runtimeConfig"}
    json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec(),
                          ignore_unknown_fields=False)
    json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob(), ignore_unknown_fields=False)
    assert yaml.safe_load(compiled.yaml_path.read_text()) == job["pipelineSpec"]
    # What kfp.Client().create_run_from_pipeline_package() does with the package file:
    package = _extract_pipeline_yaml(str(compiled.yaml_path))
    assert package.pipeline_spec.pipeline_info.name == compiled.config.pipeline_name
    assert package.pipeline_spec.schema_version == "2.1.0"


def test_tasks_and_edges_match_the_local_pipeline(compiled, tmp_path):
    tasks = compiled.spec["root"]["dag"]["tasks"]
    compiled_dag = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert compiled_dag == _local_dag(compiled.config, tmp_path)
    expected_trainers = len(compiled.config.models) * compiled.config.seeds
    assert sum(name.startswith("Trainer-") for name in tasks) == expected_trainers


def test_task_names_are_valid_argo_dag_task_names(two_models):
    names = set(two_models.spec["root"]["dag"]["tasks"])
    assert {"Trainer-cifar-resnet20-seed1",
            "Evaluator-cifar-resnet20-vs-cifar-plain20-seed0", "AblationReport"} <= names
    assert all(re.fullmatch(r"[a-zA-Z0-9][-a-zA-Z0-9]*", name) for name in names)


def test_every_task_runs_the_project_entrypoint_in_the_image_with_the_beam_args(compiled):
    from tfx.dsl.components.base import base_executor
    from tfx.utils import import_utils

    from pipeline.pipeline import DEFAULT_BEAM_ARGS

    beam_args = list(compiled.config.beam_args or DEFAULT_BEAM_ARGS)
    for task in compiled.spec["root"]["dag"]["tasks"]:
        container = _executor(compiled.spec, task)["container"]
        assert container["image"] == IMAGE, task
        assert container["command"] == ENTRYPOINT, task
        args = container["args"]
        assert args[:2] == ["--executor_class_path", args[1]] and "{{$}}" in args, task
        assert "--json_serialized_inputs_spec_args" in args, task  # what the entrypoint reads
        assert args[-len(beam_args):] == beam_args, task
        executor_class = import_utils.import_class_by_path(args[1])  # as the entrypoint does
        assert issubclass(executor_class, base_executor.BaseExecutor), task


def test_declared_output_metadata_travels_in_the_arguments(two_models):
    """kfp.local starts outputs' metadata empty; the entrypoint restores it from this flag."""
    from kubeflow.entrypoint import OUTPUT_METADATA_FLAG

    for task in two_models.spec["root"]["dag"]["tasks"]:
        args = _executor(two_models.spec, task)["container"]["args"]
        declared = {key: output["metadata"] for key, output in _component(
            two_models.spec, task)["outputDefinitions"]["artifacts"].items()
            if output.get("metadata")}
        if declared:
            assert json.loads(args[args.index(OUTPUT_METADATA_FLAG) + 1]) == declared, task
        else:
            assert OUTPUT_METADATA_FLAG not in args, task
    trainer = _component(two_models.spec, "Trainer-cifar-plain20-seed1")
    assert trainer["outputDefinitions"]["artifacts"]["model_run"]["metadata"] == {
        "model_name": "cifar_plain20", "seed": 1.0}


def test_every_task_requests_cpu_and_memory_and_only_trainers_the_gpus(compiled):
    from kubeflow.runner import DEFAULT_RESOURCES, component_kind

    tasks = compiled.spec["root"]["dag"]["tasks"]
    trainers = {task for task in tasks if _executor(compiled.spec, task)["container"]["args"][1]
                == "tfx.components.trainer.executor.GenericExecutor"}
    assert len(trainers) == len(compiled.config.models) * compiled.config.seeds
    kinds = {re.sub(r"-.*", "", task) for task in tasks}
    assert kinds == set(DEFAULT_RESOURCES)
    for task in tasks:
        resources = _executor(compiled.spec, task)["container"]["resources"]
        wanted = DEFAULT_RESOURCES[component_kind(task.replace("-", ".", 1))]
        cpu_limit, memory_limit = wanted.limits()
        assert (resources["resourceCpuRequest"], resources["resourceCpuLimit"],
                resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == (
                    wanted.cpu, cpu_limit, wanted.memory, memory_limit), task
        assert resources["cpuLimit"] == float(cpu_limit), task  # deprecated fields, as the SDK
        assert resources["memoryLimit"] == float(memory_limit.rstrip("G")), task
        if task in trainers and compiled.gpus:
            assert resources["accelerator"] == {
                "type": GPU_TYPE, "count": str(compiled.gpus),
                "resourceType": GPU_TYPE, "resourceCount": str(compiled.gpus)}, task
        else:
            assert "accelerator" not in resources, task


def test_resources_are_configurable_per_kind(tmp_path):
    from kubeflow import runner

    flags = ["--output", str(tmp_path / "spec.yaml"), "--image", IMAGE, "--pipeline-root", ROOT,
             "--models", "cifar_resnet20", "--gpus", "4", "--gpu-type", "NVIDIA_TESLA_T4",
             "--cpu", "Trainer=8", "--memory", "Trainer=30G:40Gi", "--cpu", "Transform=500m:2"]
    assert runner.main(flags) == 0
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    trainer = _executor(spec, "Trainer-cifar-resnet20")["container"]["resources"]
    assert (trainer["resourceCpuRequest"], trainer["resourceCpuLimit"],
            trainer["resourceMemoryRequest"], trainer["resourceMemoryLimit"]) == (
                "8", "8", "30G", "40Gi")
    assert trainer["memoryLimit"] == pytest.approx(40 * 2**30 / 1e9)
    assert trainer["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert trainer["accelerator"]["resourceCount"] == "4"
    transform = _executor(spec, "Transform")["container"]["resources"]
    assert (transform["cpuRequest"], transform["cpuLimit"]) == (0.5, 2.0)

    assert runner.main(flags[:8] + ["--no-resources"]) == 0
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert "resources" not in _executor(spec, "Transform")["container"]
    assert set(_executor(spec, "Trainer-cifar-resnet20")["container"]["resources"]) == {
        "accelerator"}


def test_trainer_workers_are_recorded_in_every_trainer_task_and_validated(tmp_path, capsys):
    """--trainer-workers N puts ABLATION_TRAINER_WORKERS=N in each Trainer container's env (a
    field of KFP's container spec, parsed strictly), nowhere else; 1, the default, adds
    nothing; 0 is refused in one line before anything is written."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    from components.hardware import WORKERS_ENV
    from kubeflow import runner

    spec_path = tmp_path / "spec.yaml"
    base = ["--output", str(spec_path), "--image", IMAGE, "--pipeline-root", ROOT,
            "--models", "cifar_resnet20,cifar_plain20", "--gpus", "1"]
    assert runner.main(base + ["--trainer-workers", "3"]) == 0
    assert "(2 with 1 x nvidia.com/gpu; Trainers compiled for 3 workers each)" in \
        capsys.readouterr().out
    spec = yaml.safe_load(spec_path.read_text())
    envs = {task: _executor(spec, task)["container"].get("env")
            for task in spec["root"]["dag"]["tasks"]}
    assert {task for task, env in envs.items() if env} == {
        "Trainer-cifar-resnet20", "Trainer-cifar-plain20"}
    for task in ("Trainer-cifar-resnet20", "Trainer-cifar-plain20"):
        assert envs[task] == [{"name": WORKERS_ENV, "value": "3"}]
        json_format.ParseDict(_executor(spec, task)["container"],
                              pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec(),
                              ignore_unknown_fields=False)

    assert runner.main(base) == 0
    spec = yaml.safe_load(spec_path.read_text())
    assert not any("env" in _executor(spec, task)["container"]
                   for task in spec["root"]["dag"]["tasks"])
    assert "(2 with 1 x nvidia.com/gpu), image" in capsys.readouterr().out

    spec_path.unlink()
    assert runner.main(base + ["--trainer-workers", "0"]) == 2
    error = capsys.readouterr().err
    assert "trainer workers must be a positive integer, got 0" in error
    assert error.count("\n") == 1 and not spec_path.exists()


@pytest.mark.parametrize("flags, message", [
    (["--cpu", "Trainr=8"], "unknown component kind"),
    (["--memory", "Trainer=lots"], "not a positive quantity"),
    (["--cpu", "Trainer=4:2"], "limit is below its request"),
    (["--cpu", "Trainer"], "KIND=REQUEST"),
])
def test_invalid_resources_are_refused(tmp_path, capsys, flags, message):
    from kubeflow import runner

    base = ["--output", str(tmp_path / "spec.yaml"), "--image", IMAGE, "--pipeline-root", ROOT]
    try:
        status = runner.main(base + flags)
    except SystemExit as exit_:  # argparse rejects the form itself
        status = exit_.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "spec.yaml").exists()


def test_an_image_without_a_tag_per_build_is_refused(tmp_path, capsys):
    from kubeflow.runner import compile_pipeline

    for image in ("resnet-ablation", "registry.example.com:5000/resnet-ablation:latest", None):
        with pytest.raises(config_lib.ConfigError, match="image"):
            compile_pipeline(TWO_MODELS, str(tmp_path / "spec.yaml"), image, ROOT)
    assert not list(tmp_path.iterdir())
    job = compile_pipeline(TWO_MODELS, str(tmp_path / "spec.yaml"), "resnet-ablation:latest",
                           ROOT, allow_latest_tag=True)
    assert "has the tag latest" in capsys.readouterr().err
    assert job["pipelineSpec"]["deploymentSpec"]["executors"]  # compiled, with a warning
    digest = "resnet-ablation@sha256:" + "0" * 64
    compile_pipeline(TWO_MODELS, str(tmp_path / "spec.yaml"), digest, ROOT)


def test_the_pipeline_root_is_the_kubeflow_one_and_checkpoints_are_not_compiled_in(compiled):
    assert compiled.job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    assert compiled.spec["defaultPipelineRoot"] == ROOT
    assert yaml.safe_load(compiled.yaml_path.read_text())["defaultPipelineRoot"] == ROOT
    for name, task in compiled.spec["root"]["dag"]["tasks"].items():
        if name.startswith("Trainer-"):  # the Trainer derives them from its ModelRun URI
            custom = json.loads(task["inputs"]["parameters"]["custom_config"]["runtimeValue"]
                                ["constant"])
            assert custom["checkpoint_root"] is None, custom
            assert ROOT not in json.dumps(task), name


@pytest.mark.parametrize("model_run_dir, expected", [
    ("/runs/smoke/Trainer.cifar_resnet20/model_run/17",  # LocalDagRunner: execution id
     "/runs/smoke/checkpoints/Trainer.cifar_resnet20"),
    ("gs://b/root/resnet-ablation/2f6c0e1a-7a9b-4c55-9c1e-0d52a1f1b3e2/Trainer-resnet50/"
     "8a0e4d3c-1b2f-4e5a-9c6d-7e8f9a0b1c2d/model_run",  # KFP 2.x driver: per-attempt salt
     "gs://b/root/resnet-ablation/2f6c0e1a-7a9b-4c55-9c1e-0d52a1f1b3e2/checkpoints/"
     "Trainer-resnet50"),
    ("gs://b/root/resnet-ablation/run-1/Trainer-resnet50/model_run",  # older KFP backends
     "gs://b/root/resnet-ablation/run-1/checkpoints/Trainer-resnet50"),
    ("/tmp/root/resnet-ablation-smoke-2026-01-01-00-00-00-000000/er-cifar-plain20/model_run",
     "/tmp/root/resnet-ablation-smoke-2026-01-01-00-00-00-000000/checkpoints/er-cifar-plain20"),
    ("gs://b/root/123456/resnet-ablation-20260101/Trainer-resnet50_-4711/model_run",  # Vertex
     "gs://b/root/123456/resnet-ablation-20260101/checkpoints/Trainer-resnet50_-4711"),
])
def test_checkpoint_root_is_derived_from_the_model_run_uri(model_run_dir, expected):
    from components.trainer import default_checkpoint_root

    assert default_checkpoint_root(model_run_dir) == expected
    assert default_checkpoint_root(model_run_dir + "/") == expected


def test_no_path_of_this_machine_is_in_the_spec(compiled):
    """The image folder is relative to the repository root, the container's working directory."""
    assert str(REPO) not in compiled.yaml_path.read_text()
    assert str(REPO) not in compiled.json_path.read_text()
    task = compiled.spec["root"]["dag"]["tasks"]["ImageExampleGen"]
    custom = json.loads(task["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"])
    assert custom["custom_config"]["value"]["data"] == "imagefolder:data/cifar10_smoke"


def test_every_artifact_type_resolves_to_a_class_in_the_container(smoke):
    """What kubeflow_v2_entrypoint_utils does with each input and output artifact's type."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils
    from tfx.utils import import_utils

    unresolved = {}
    for name, component in smoke.spec["components"].items():
        for side in ("inputDefinitions", "outputDefinitions"):
            for key, artifact in component.get(side, {}).get("artifacts", {}).items():
                schema = json_format.ParseDict(artifact["artifactType"],
                                               pipeline_spec_pb2.ArtifactTypeSchema())
                path = utils._retrieve_class_path(schema)  # pylint: disable=protected-access
                try:
                    import_utils.import_class_by_path(path)
                except (ImportError, AttributeError) as error:
                    unresolved[f"{name}.{key}"] = f"{path}: {error}"
    assert not unresolved


def test_a_local_pipeline_root_is_refused(tmp_path):
    from kubeflow.runner import compile_pipeline

    with pytest.raises(config_lib.ConfigError, match="local path"):
        compile_pipeline(config_lib.load_profile("smoke"), str(tmp_path / "spec.yaml"), IMAGE)
    with pytest.raises(config_lib.ConfigError, match="gpus"):
        compile_pipeline(TWO_MODELS, str(tmp_path / "spec.yaml"), IMAGE, ROOT, gpus=-1)
    assert not list(tmp_path.iterdir())


def test_the_dockerfile_installs_the_stack_as_the_makefile_does():
    """The Dockerfile's dependency layer repeats the first commands of `make setup`."""
    makefile = (REPO / "Makefile").read_text()
    dockerfile = (REPO / "kubeflow" / "Dockerfile").read_text()
    bootstrap = re.search(r"^BOOTSTRAP := (.+)$", makefile, re.M).group(1).split()
    platform = re.search(r"^PLATFORM := (.+)$", makefile, re.M).group(1).strip()
    assert re.search(r"pip install -q " + re.escape(" ".join(bootstrap)) + r"\s", dockerfile)
    assert dockerfile.count(f"--python-platform {platform}") == 2
    assert "RUN make setup" in dockerfile
    instructions = [line for line in dockerfile.splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if "--mount" in line]  # the classic builder
    assert not dockerfile.startswith("# syntax")  # would fetch a frontend from Docker Hub
    assert "LD_LIBRARY_PATH=/usr/local/nvidia/lib64" in dockerfile
    assert "TF_USE_LEGACY_KERAS=1" in dockerfile
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm\nFROM \$\{BASE_IMAGE\}$",
                     dockerfile, re.M)


# --------------------------------------------------------------------------- the commands


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def test_ablation_compile_the_runner_script_and_its_environment_flags_agree(
        tmp_path, capsys, monkeypatch, smoke):
    from kubeflow import runner
    from pipeline import cli

    flags = ["--profile", "smoke", "--image", IMAGE, "--pipeline-root", ROOT,
             "--gpus", str(GPUS)]
    assert cli.main(["compile", "--output", str(tmp_path / "cli.yaml"), *flags]) == 0
    out = capsys.readouterr().out
    assert f"written to {tmp_path / 'cli.yaml'}" in out
    assert f"13 tasks (4 with {GPUS} x {GPU_TYPE}), image {IMAGE}, root {ROOT}" in out
    assert runner.main(["--output", str(tmp_path / "runner.yaml"), *flags]) == 0
    monkeypatch.setenv(runner.FLAGS_ENV, " ".join(
        ["--output", str(tmp_path / "env.yaml"), *flags]))
    assert runner.main([]) == 0  # as the tfx CLI runs it: no arguments
    assert (yaml.safe_load((tmp_path / "cli.yaml").read_text())
            == yaml.safe_load((tmp_path / "runner.yaml").read_text())
            == yaml.safe_load((tmp_path / "env.yaml").read_text()) == smoke.spec)
    # one set of flags: `ablation compile` has exactly the runner's
    [subcommands] = [action for action in cli.build_parser()._actions
                     if isinstance(action, argparse._SubParsersAction)]
    script = argparse.ArgumentParser()
    runner.add_arguments(script)
    assert _options(subcommands.choices["compile"]) == _options(script)
    capsys.readouterr()
    assert cli.main(["compile", "--output", str(tmp_path / "x.yaml"), "--profile", "smoke",
                     "--image", IMAGE]) == 2
    assert "local path" in capsys.readouterr().err
    assert cli.main(["compile", "--output", str(tmp_path / "x.yaml"), "--profile", "smoke",
                     "--pipeline-root", ROOT]) == 2
    assert "tag per build" in capsys.readouterr().err


@pytest.mark.slow
def test_the_tfx_cli_creates_and_compiles_the_vertex_pipeline(tmp_path, smoke):
    """`tfx pipeline create|compile --engine=vertex --pipeline_path=kubeflow/runner.py` write the
    PipelineJob `ablation compile --output X.json` writes, configured by ABLATION_COMPILE_FLAGS."""
    bin_dir = pathlib.Path(sys.executable).parent
    tfx = bin_dir / "tfx"
    # PATH as kubeflow/README.md says: the tfx CLI runs `pip freeze` to look for kfp
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "VERTEX_HOME": str(tmp_path / "home"),
           "ABLATION_COMPILE_FLAGS": f"--profile smoke --image {IMAGE} --pipeline-root {ROOT} "
                                     f"--gpus {GPUS}"}
    create = subprocess.run(
        [str(tfx), "pipeline", "create", "--engine=vertex",
         "--pipeline_path=kubeflow/runner.py"], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300)
    assert create.returncode == 0, create.stderr[-3000:]
    assert 'Pipeline "resnet-ablation-smoke" created successfully.' in create.stdout
    created = json.loads(
        (tmp_path / "home" / "resnet-ablation-smoke" / "pipeline.json").read_text())
    assert created == smoke.job

    compiled = subprocess.run(
        [str(tfx), "pipeline", "compile", "--engine=vertex",
         f"--pipeline_path={REPO / 'kubeflow' / 'runner.py'}"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert json.loads((tmp_path / "resnet-ablation-smoke_pipeline.json").read_text()) == smoke.job

    del env["ABLATION_COMPILE_FLAGS"]  # no image: refused, and the CLI fails
    refused = subprocess.run(
        [str(tfx), "pipeline", "compile", "--engine=vertex",
         f"--pipeline_path={REPO / 'kubeflow' / 'runner.py'}"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "ABLATION_COMPILE_FLAGS" in refused.stderr


# --------------------------------------------------------------------------- the entrypoint


TYPED = {"schemaTitle": "tfx.Examples", "schemaVersion": "0.0.1"}
INSTANCE_TYPED = {"instanceSchema": "title: tfx.Examples\ntype: object\n"}
GENERIC = {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}


def _invocation(input_type: dict, output_metadata: dict) -> dict:
    return {"inputs": {"artifacts": {"examples": {"artifacts": [
        {"name": "a1", "uri": "/r/examples", "type": input_type, "metadata": {"span": 0.0}}]}}},
        "outputs": {"artifacts": {"model_run": {"artifacts": [
            {"name": "model_run", "uri": "/r/model_run",
             "type": {"schemaTitle": "tfx.ModelRun"}, "metadata": output_metadata}]}},
            "outputFile": "/r/executor_output.json"}}


def _args(invocation: dict, metadata_flag: bool = True) -> list[str]:
    from kubeflow.entrypoint import OUTPUT_METADATA_FLAG

    spec = {"artifacts": {"examples": {"artifactType": INSTANCE_TYPED}}}
    extra = [OUTPUT_METADATA_FLAG, json.dumps({"model_run": {"model_name": "m", "seed": 1.0}})]
    return (["--executor_class_path", "x.Executor", "--json_serialized_invocation_args",
             json.dumps(invocation)] + (extra if metadata_flag else [])
            + ["--json_serialized_inputs_spec_args", json.dumps(spec),
               "--direct_running_mode=in_memory"])


def test_the_entrypoint_hands_vertex_typed_arguments_to_tfx_unchanged():
    from kubeflow.entrypoint import repaired_arguments

    for input_type in (TYPED, INSTANCE_TYPED):
        args = _args(_invocation(input_type, {"model_name": "m", "seed": 1.0}),
                     metadata_flag=False)
        assert repaired_arguments(args) == (args, [])
        with_flag = _args(_invocation(input_type, {"model_name": "m", "seed": 1.0}))
        assert repaired_arguments(with_flag) == (args, [])  # only our flag is removed


def test_the_entrypoint_restores_input_types_and_output_metadata():
    from kubeflow.entrypoint import repaired_arguments

    args, changed = repaired_arguments(_args(_invocation(GENERIC, {})))
    assert changed == ["input examples", "output model_run"]
    invocation = json.loads(args[args.index("--json_serialized_invocation_args") + 1])
    [examples] = invocation["inputs"]["artifacts"]["examples"]["artifacts"]
    assert examples["type"] == INSTANCE_TYPED
    assert (examples["uri"], examples["metadata"]) == ("/r/examples", {"span": 0.0})
    [model_run] = invocation["outputs"]["artifacts"]["model_run"]["artifacts"]
    assert model_run["metadata"] == {"model_name": "m", "seed": 1.0}
    assert "--output_metadata_json" not in args
    assert args[-1] == "--direct_running_mode=in_memory"  # Beam arguments stay last

    inline = _args(_invocation(GENERIC, {"model_name": "kept"}))
    i = inline.index("--json_serialized_invocation_args")
    inline[i:i + 2] = [f"--json_serialized_invocation_args={inline[i + 1]}"]
    args, changed = repaired_arguments(inline)
    assert changed == ["input examples", "output model_run"]
    value = next(a for a in args if a.startswith("--json_serialized_invocation_args="))
    restored = json.loads(value.split("=", 1)[1])
    assert restored["outputs"]["artifacts"]["model_run"]["artifacts"][0]["metadata"] == {
        "model_name": "kept", "seed": 1.0}  # a key the orchestrator gave is never replaced


# --------------------------------------------------------------------------- tasks, run


def _constants(task_spec: dict) -> dict:
    return {key: value["runtimeValue"]["constant"]
            for key, value in task_spec.get("inputs", {}).get("parameters", {}).items()}


def _outputs(spec: dict, task: str, root: pathlib.Path) -> dict:
    component = _component(spec, task)
    return {"artifacts": {key: {"artifacts": [{
        "name": f"projects/test/locations/local/metadataStores/default/artifacts/{task}-{key}",
        "uri": str(root / task / key), "type": definition["artifactType"],
        "metadata": definition.get("metadata", {})}]}
        for key, definition in component["outputDefinitions"]["artifacts"].items()},
        "outputFile": str(root / task / "executor_output.json")}


def _run_task(spec: dict, task: str, executor_input: dict, command: list[str] | None = None
              ) -> subprocess.CompletedProcess:
    """The task's container command and arguments, {{$}} replaced, from the repository root."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput(),
                          ignore_unknown_fields=False)
    container = _executor(spec, task)["container"]
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]
    command = [sys.executable if part == "python" else part
               for part in (command or container["command"])]
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def example_gen_run(two_models, tmp_path_factory) -> tuple[pathlib.Path, dict]:
    """ImageExampleGen's container command run once: (outputs root, its ExecutorOutput)."""
    root = tmp_path_factory.mktemp("tasks")
    task = two_models.spec["root"]["dag"]["tasks"]["ImageExampleGen"]
    assert "artifacts" not in task.get("inputs", {}), "pick a task without input artifacts"
    result = _run_task(two_models.spec, "ImageExampleGen", {
        "inputs": {"parameterValues": _constants(task)},
        "outputs": _outputs(two_models.spec, "ImageExampleGen", root)})
    assert result.returncode == 0, result.stderr[-6000:]
    return root, json.loads((root / "ImageExampleGen" / "executor_output.json").read_text())


@pytest.mark.slow
def test_the_image_example_gen_container_entrypoint_runs(example_gen_run):
    from kfp.pipeline_spec import pipeline_spec_pb2

    from resnet_ablation.data_source import LABELS_FILE
    from tests.helpers import read_examples

    root, executor_output = example_gen_run
    examples = root / "ImageExampleGen" / "examples"
    assert sorted(p.name for p in examples.glob("Split-*")) == ["Split-eval", "Split-train"]
    for split in ("train", "eval"):
        assert list((examples / f"Split-{split}").glob("*.gz")), split
    train, eval_ = read_examples(str(examples), "train"), read_examples(str(examples), "eval")
    eval_files = [p for p in (REPO / "data" / "cifar10_smoke" / "test").rglob("*") if p.is_file()]
    assert 0 < len(train) <= TWO_MODELS.train_limit and len(eval_) == len(eval_files)
    assert json.loads((examples / LABELS_FILE).read_text())["num_classes"] == 10

    output = json_format.ParseDict(executor_output, pipeline_spec_pb2.ExecutorOutput())
    [artifact] = output.artifacts["examples"].artifacts
    assert artifact.uri == str(examples)
    metadata = json_format.MessageToDict(artifact.metadata)
    assert json.loads(metadata["split_names"]) == ["train", "eval"]
    assert metadata["examples_train"] == len(train)


@pytest.mark.slow
def test_statistics_gen_runs_with_its_input_typed_as_kfp_local_hands_it(
        two_models, example_gen_run):
    """StatisticsGen's input as open-source KFP and kfp.local give it: ExampleGen's output
    artifact (URI and metadata) typed system.Artifact. TFX's own entrypoint fails on it
    (tensorflow/tfx#7768); the project's entrypoint restores tfx.Examples from the inputs spec."""
    root, executor_output = example_gen_run
    [examples] = executor_output["artifacts"]["examples"]["artifacts"]
    task = two_models.spec["root"]["dag"]["tasks"]["StatisticsGen"]
    executor_input = {
        "inputs": {"parameterValues": _constants(task), "artifacts": {"examples": {"artifacts": [
            {**examples, "type": GENERIC}]}}},
        "outputs": _outputs(two_models.spec, "StatisticsGen", root)}

    tfx_alone = _run_task(two_models.spec, "StatisticsGen", executor_input, TFX_ENTRYPOINT)
    assert tfx_alone.returncode != 0
    assert "Could not import system.Artifact" in tfx_alone.stderr

    result = _run_task(two_models.spec, "StatisticsGen", executor_input)
    assert result.returncode == 0, result.stderr[-6000:]
    assert "restored from the spec: input examples" in result.stderr
    statistics = root / "StatisticsGen" / "statistics"
    assert {p.name for p in statistics.iterdir()} >= {"Split-train", "Split-eval"}
    assert (statistics / "Split-train" / "FeatureStats.pb").stat().st_size > 0
