"""The project's Beam executors build the TFX package TFX's build only for runners that use it."""

from __future__ import annotations

import tempfile

import pytest
from tfx.components.statistics_gen import executor as tfx_statistics_gen
from tfx.dsl.components.base import base_beam_executor

from components import beam_executors, evaluation, example_gen
from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline

DIRECT = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
DATAFLOW = ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t"]
PACKAGE = "*/build/tfx/dist/tfx_ephemeral-*.tar.gz"  # where TFX builds it, under the temp dir


@pytest.mark.parametrize("args, direct", [
    ([], True), (DIRECT, True), (["--runner=DirectRunner"], True), (["--runner", "direct"], True),
    (["--runner=SwitchingDirectRunner"], True),
    (["--runner=apache_beam.runners.direct.direct_runner.BundleBasedDirectRunner"], True),
    (DATAFLOW, False), (["--runner=FlinkRunner"], False), (["--runner=PortableRunner"], False),
])
def test_runs_on_direct_runner(args, direct):
    assert beam_executors.runs_on_direct_runner(args) is direct


def _executor(executor_class, args, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return executor_class(base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(args)))


@pytest.mark.parametrize("executor_class", [
    beam_executors.StatisticsGenExecutor, beam_executors.TransformExecutor,
    evaluation.Evaluator.EXECUTOR_SPEC.executor_class, example_gen.Executor])
def test_on_the_direct_runner_no_tfx_package_is_built_and_the_args_are_kept(
        executor_class, tmp_path, monkeypatch):
    executor = _executor(executor_class, DIRECT, tmp_path, monkeypatch)
    assert executor._beam_pipeline_args == DIRECT
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_tfx_own_executor_builds_the_package_so_the_check_above_can_fail(tmp_path, monkeypatch):
    executor = _executor(tfx_statistics_gen.Executor, DIRECT, tmp_path, monkeypatch)
    assert len(list(tmp_path.glob(PACKAGE))) == 1
    assert any(arg.startswith("--extra_package=") for arg in executor._beam_pipeline_args)


@pytest.mark.slow
def test_a_remote_runner_still_gets_the_tfx_package_except_from_image_example_gen(
        tmp_path, monkeypatch):
    executor = _executor(beam_executors.StatisticsGenExecutor, DATAFLOW, tmp_path, monkeypatch)
    [package] = tmp_path.glob(PACKAGE)
    assert f"--extra_package={package}" in executor._beam_pipeline_args
    image_gen = _executor(example_gen.Executor, DATAFLOW, tmp_path, monkeypatch)
    assert image_gen._beam_pipeline_args == DATAFLOW  # its workers never import TFX


def test_the_pipeline_runs_every_beam_component_with_these_executors():
    pipeline = create_pipeline(config_lib.load_profile("smoke"))
    beam_components = {component.id: component.executor_spec.executor_class
                       for component in pipeline.components
                       if hasattr(component.executor_spec, "beam_pipeline_args")}
    assert set(beam_components) >= {"ImageExampleGen", "StatisticsGen", "Transform"}
    assert any(name.startswith("Evaluator") for name in beam_components)
    assert all(issubclass(executor, beam_executors.LocalBeamExecutorMixin)
               for executor in beam_components.values()), beam_components
