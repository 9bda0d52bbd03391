"""Kubeflow V2: the real pipeline compiled by kubeflow/runner.py, and one task run as KFP would.

No cluster and no mocks: TFX's KubeflowV2DagRunner compiles the real ``create_pipeline``
offline; the spec must parse strictly into kfp's protos and match the local pipeline task for
task and edge for edge; and the ImageExampleGen task's container command, with the arguments the
spec gives it and a real executor input in place of KFP's ``{{$}}`` placeholder, runs the TFX V2
entrypoint in a subprocess from the repository root (the image's working directory).
"""

import dataclasses
import json
import pathlib
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
KFP_ENTRYPOINT = ["python", "-m",
                  "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


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
    import re

    names = set(two_models.spec["root"]["dag"]["tasks"])
    assert {"Trainer-cifar-resnet20-seed1",
            "Evaluator-cifar-resnet20-vs-cifar-plain20-seed0", "AblationReport"} <= names
    assert all(re.fullmatch(r"[a-zA-Z0-9][-a-zA-Z0-9]*", name) for name in names)


def test_every_task_runs_the_tfx_entrypoint_in_the_image_with_the_beam_args(compiled):
    from tfx.dsl.components.base import base_executor
    from tfx.utils import import_utils

    from pipeline.pipeline import DEFAULT_BEAM_ARGS

    beam_args = list(compiled.config.beam_args or DEFAULT_BEAM_ARGS)
    for task in compiled.spec["root"]["dag"]["tasks"]:
        container = _executor(compiled.spec, task)["container"]
        assert container["image"] == IMAGE, task
        assert container["command"] == KFP_ENTRYPOINT, task
        args = container["args"]
        assert args[:2] == ["--executor_class_path", args[1]] and "{{$}}" in args, task
        assert args[-len(beam_args):] == beam_args, task
        executor_class = import_utils.import_class_by_path(args[1])  # as the entrypoint does
        assert issubclass(executor_class, base_executor.BaseExecutor), task


def test_trainers_and_only_trainers_request_the_gpus(compiled):
    tasks = compiled.spec["root"]["dag"]["tasks"]
    trainers = {task for task in tasks if _executor(compiled.spec, task)["container"]["args"][1]
                == "tfx.components.trainer.executor.GenericExecutor"}
    assert len(trainers) == len(compiled.config.models) * compiled.config.seeds
    for task in tasks:
        resources = _executor(compiled.spec, task)["container"].get("resources")
        if task in trainers and compiled.gpus:
            assert resources == {"accelerator": {
                "type": GPU_TYPE, "count": str(compiled.gpus),
                "resourceType": GPU_TYPE, "resourceCount": str(compiled.gpus)}}, task
        else:
            assert resources is None, task


def test_the_pipeline_root_is_the_kubeflow_one(compiled):
    assert compiled.job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    assert compiled.spec["defaultPipelineRoot"] == ROOT
    assert yaml.safe_load(compiled.yaml_path.read_text())["defaultPipelineRoot"] == ROOT
    for name, task in compiled.spec["root"]["dag"]["tasks"].items():
        if name.startswith("Trainer-"):  # checkpoints go under the pipeline root too
            custom = json.loads(task["inputs"]["parameters"]["custom_config"]["runtimeValue"]
                                ["constant"])
            assert custom["checkpoint_root"].startswith(f"{ROOT}/checkpoints/Trainer."), custom


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


# --------------------------------------------------------------------------- the commands


def test_ablation_compile_and_the_runner_script_agree(tmp_path, capsys, smoke):
    from components import cli
    from kubeflow import runner

    flags = ["--profile", "smoke", "--image", IMAGE, "--pipeline-root", ROOT,
             "--gpus", str(GPUS)]
    assert cli.main(["compile", "--engine", "kubeflow", "--output",
                     str(tmp_path / "cli.yaml"), *flags]) == 0
    out = capsys.readouterr().out
    assert f"written to {tmp_path / 'cli.yaml'}" in out
    assert f"13 tasks (4 with {GPUS} x {GPU_TYPE}), image {IMAGE}, root {ROOT}" in out
    assert runner.main(["--output", str(tmp_path / "runner.yaml"), *flags]) == 0
    assert (yaml.safe_load((tmp_path / "cli.yaml").read_text())
            == yaml.safe_load((tmp_path / "runner.yaml").read_text()) == smoke.spec)
    with pytest.raises(SystemExit):
        cli.main(["compile", "--engine", "airflow", "--output", str(tmp_path / "x.yaml")])
    assert cli.main(["compile", "--output", str(tmp_path / "x.yaml"), "--profile", "smoke"]) == 2
    assert "local path" in capsys.readouterr().err


# --------------------------------------------------------------------------- one task, run


def _executor_input(spec: dict, task: str, outputs: pathlib.Path) -> dict:
    """The ExecutorInput KFP's launcher substitutes for {{$}}: constants in, fresh URIs out."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    task_spec = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][task_spec["componentRef"]["name"]]
    assert "artifacts" not in task_spec.get("inputs", {}), "pick a task without input artifacts"
    executor_input = {
        "inputs": {"parameterValues": {
            key: value["runtimeValue"]["constant"]
            for key, value in task_spec["inputs"]["parameters"].items()}},
        "outputs": {
            "artifacts": {key: {"artifacts": [{
                "name": f"projects/test/locations/local/metadataStores/default/artifacts/{key}",
                "uri": str(outputs / task / key),
                "type": definition["artifactType"],
                "metadata": definition.get("metadata", {})}]}
                for key, definition in component["outputDefinitions"]["artifacts"].items()},
            "outputFile": str(outputs / task / "executor_output.json")}}
    json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput(),
                          ignore_unknown_fields=False)
    return executor_input


def test_the_image_example_gen_container_entrypoint_runs(two_models, tmp_path):
    from kfp.pipeline_spec import pipeline_spec_pb2

    from components.example_gen import LABELS_FILE, read_examples

    container = _executor(two_models.spec, "ImageExampleGen")["container"]
    executor_input = _executor_input(two_models.spec, "ImageExampleGen", tmp_path)
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]
    command = [sys.executable if part == "python" else part for part in container["command"]]
    result = subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]

    examples = tmp_path / "ImageExampleGen" / "examples"
    assert sorted(p.name for p in examples.glob("Split-*")) == ["Split-eval", "Split-train"]
    for split in ("train", "eval"):
        assert list((examples / f"Split-{split}").glob("*.gz")), split
    train, eval_ = read_examples(str(examples), "train"), read_examples(str(examples), "eval")
    eval_files = [p for p in (REPO / "data" / "cifar10_smoke" / "test").rglob("*") if p.is_file()]
    assert 0 < len(train) <= TWO_MODELS.train_limit and len(eval_) == len(eval_files)
    assert json.loads((examples / LABELS_FILE).read_text())["num_classes"] == 10

    output = pipeline_spec_pb2.ExecutorOutput()
    json_format.Parse((tmp_path / "ImageExampleGen" / "executor_output.json").read_text(),
                      output)
    [artifact] = output.artifacts["examples"].artifacts
    assert artifact.uri == str(examples)
    metadata = json_format.MessageToDict(artifact.metadata)
    assert json.loads(metadata["split_names"]) == ["train", "eval"]
    assert metadata["examples_train"] == len(train)
