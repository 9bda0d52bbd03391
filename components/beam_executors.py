"""TFX's Beam components with executors that package TFX only for runners that install it.

TFX's ``BaseBeamExecutor`` builds a source package of the installed TFX every time it is
constructed (``dependency_utils.build_ephemeral_package``: a copy of the install and an sdist,
1.3–3.4 s and 52 MB left in the temp dir, measured here) unless the Beam args already name the
workers' packages, so that a remote runner can install TFX on its workers. The DirectRunner's
workers run in this Python environment and install nothing, so for it the package is pure cost,
paid by every Beam component of every run. ``LocalBeamExecutorMixin`` skips it there and keeps
TFX's behaviour for every other runner.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from tfx import v1 as tfx
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.transform import executor as transform_executor
from tfx.dsl.components.base import base_beam_executor, executor_spec

# Beam's names of its local runners, lower-cased, without the "Runner" suffix (Beam accepts
# "DirectRunner", "direct", ...); no runner named means the DirectRunner.
_DIRECT_RUNNERS = frozenset({"direct", "switchingdirect", "bundlebaseddirect"})


def runs_on_direct_runner(beam_args: Sequence[str]) -> bool:
    """Whether Beam args `beam_args` select one of Beam's DirectRunners."""
    runner = PipelineOptions(flags=list(beam_args)).view_as(StandardOptions).runner
    name = (runner or "DirectRunner").rsplit(".", 1)[-1].lower()
    return name.removesuffix("runner") in _DIRECT_RUNNERS


class LocalBeamExecutorMixin:
    """Goes first among the bases of a TFX Beam executor: its constructor builds no TFX package
    when the Beam args select the DirectRunner, or ever if ``WORKERS_IMPORT_TFX`` is False
    (workers that run only this project's code). The Beam args are kept as given; what the base
    class then skips with them is that package, its GCP telemetry labels, and parsing the args
    as absl flags."""

    WORKERS_IMPORT_TFX = True

    def __init__(self, context: base_beam_executor.BaseBeamExecutor.Context | None = None):
        beam_args = list(context.beam_pipeline_args or []) if context else []
        if not beam_args or (self.WORKERS_IMPORT_TFX and not runs_on_direct_runner(beam_args)):
            super().__init__(context)
            return
        context = copy.copy(context)
        context.beam_pipeline_args = []  # nothing for the base class to add packages to
        super().__init__(context)
        self._beam_pipeline_args = beam_args


class StatisticsGenExecutor(LocalBeamExecutorMixin, statistics_gen_executor.Executor):
    """TFX's StatisticsGen executor (``LocalBeamExecutorMixin``)."""


class TransformExecutor(LocalBeamExecutorMixin, transform_executor.Executor):
    """TFX's Transform executor (``LocalBeamExecutorMixin``)."""


class StatisticsGen(tfx.components.StatisticsGen):
    """``tfx.components.StatisticsGen`` with ``StatisticsGenExecutor``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(StatisticsGenExecutor)


class Transform(tfx.components.Transform):
    """``tfx.components.Transform`` with ``TransformExecutor``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(TransformExecutor)
