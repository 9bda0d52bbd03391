"""The pipeline definition: ``create_pipeline(config)`` for every runner (local, Kubeflow).

ImageExampleGen -> StatisticsGen -> SchemaGen -> SchemaCurator -> ExampleValidator ->
Transform -> one Trainer per (variant, seed) -> one Evaluator per residual/plain pair (or per
unpaired variant) -> AblationReport. All Trainers share the same examples, Transform graph,
schema and TrainingConfig; they differ only in the model name and seed.
"""

from __future__ import annotations

import subprocess

from tfx import v1 as tfx

from components.beam_executors import StatisticsGen, Transform
from components.evaluation import Evaluator, eval_config
from components.example_gen import ImageExampleGen
from components.schema import SchemaCurator
from components.trainer import trainer_custom_config
from pipeline.config import REPO_ROOT, PipelineConfig
from resnet_ablation.data_source import class_names

PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"
DEFAULT_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")


def _suffix(config: PipelineConfig, seed: int) -> str:
    return f".seed{seed}" if config.seeds > 1 or config.first_seed else ""


def data_components(config: PipelineConfig) -> dict[str, object]:
    """The data half, keyed by role: examples, statistics, schema, validation, transform."""
    example_gen = ImageExampleGen(
        data=config.data, eval_fraction=config.eval_fraction, train_limit=config.train_limit,
        tfds_data_dir=config.tfds_data_dir, tfds_download_dir=config.tfds_download_dir,
        tfds_manual_dir=config.tfds_manual_dir, validation_fraction=config.validation_fraction,
        train_per_class=config.train_per_class, eval_per_class=config.eval_per_class)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True,
        exclude_splits=["eval", "validation"])  # the schema describes train only
    curator = SchemaCurator(schema=schema_gen.outputs["schema"],
                            examples=example_gen.outputs["examples"])
    validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=curator.outputs["curated_schema"])
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=curator.outputs["curated_schema"],
        preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"]),
        custom_config={"image_size": config.image_size, "normalization": config.normalization})
    return {"example_gen": example_gen, "statistics_gen": statistics_gen,
            "schema_gen": schema_gen, "schema_curator": curator,
            "example_validator": validator, "transform": transform}


def trainer_id(config: PipelineConfig, model: str, seed: int) -> str:
    """The component id of the Trainer of (`model`, `seed`)."""
    return f"Trainer.{model}{_suffix(config, seed)}"


def trainer_ids(config: PipelineConfig) -> list[tuple[str, str, int]]:
    """(component id, model, seed) of every Trainer of the study, in pipeline order."""
    return [(trainer_id(config, model, seed), model, seed)
            for seed in config.seed_list for model in config.models]


def _trainer(config: PipelineConfig, data: dict[str, object], model: str, seed: int):
    """The Trainer of one (variant, seed); its ModelRun carries model_name and seed."""
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN, examples=data["example_gen"].outputs["examples"],
        schema=data["schema_curator"].outputs["curated_schema"],
        transform_graph=data["transform"].outputs["transform_graph"],
        # per-epoch validation on the held-out validation split when there is one, else eval
        eval_args=tfx.proto.EvalArgs(
            splits=["validation" if config.validation_fraction > 0 else "eval"]),
        # checkpoint_root None: the Trainer derives it from its ModelRun URI at run time, under
        # whatever root the run has (components.trainer.default_checkpoint_root)
        custom_config=trainer_custom_config(model, seed, config.training, None, config.shortcut),
    ).with_id(trainer_id(config, model, seed))
    trainer.outputs["model_run"].additional_custom_properties = {"model_name": model, "seed": seed}
    return trainer


def _evaluator(config: PipelineConfig, data: dict[str, object], trainers: dict, model: str,
               baseline: str | None, seed: int, num_classes: int):
    """TFMA on the eval split for `model`, with its plain twin `baseline` as TFMA baseline."""
    evaluator_id = (f"Evaluator.{model}" + (f"_vs_{baseline}" if baseline else "")
                    + _suffix(config, seed))
    evaluator = Evaluator(
        examples=data["example_gen"].outputs["examples"],
        model=trainers[model, seed].outputs["model"],
        baseline_model=trainers[baseline, seed].outputs["model"] if baseline else None,
        eval_config=eval_config(model, num_classes, baseline),
        example_splits=["eval"],
    ).with_id(evaluator_id)
    evaluator.outputs["evaluation"].additional_custom_properties = {
        "model_name": model, "baseline_model_name": baseline or "", "seed": seed}
    return evaluator


def training_components(config: PipelineConfig, data: dict[str, object],
                        num_classes: int) -> dict[str, object]:
    """Trainers, Evaluators and the report, keyed by component id.

    Every model is evaluated once: with its twin when both are in the study (one TFMA run
    holds both models' metrics and the diffs), alone otherwise."""
    from components.report import AblationReport  # TFMA and TFDV: not for data_only pipelines

    seeds = config.seed_list
    trainers = {(model, seed): _trainer(config, data, model, seed)
                for _, model, seed in trainer_ids(config)}
    paired = {name for pair in config.pairs for name in pair}
    groups = config.pairs + [(model, None) for model in config.models if model not in paired]
    evaluators = [_evaluator(config, data, trainers, model, baseline, seed, num_classes)
                  for seed in seeds for model, baseline in groups]
    report = AblationReport(
        model_runs=[t.outputs["model_run"] for t in trainers.values()],
        evaluations=[e.outputs["evaluation"] for e in evaluators],
        examples=data["example_gen"].outputs["examples"],
        statistics=data["statistics_gen"].outputs["statistics"],
        anomalies=data["example_validator"].outputs["anomalies"],
        config_json=config.to_json(), code_version=code_version(),
    ).with_id("AblationReport")
    return {c.id: c for c in [*trainers.values(), *evaluators, report]}


def code_version() -> str:
    """The repository's git commit ("-dirty" with uncommitted changes), or "unknown"."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()

        return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain",
                                                             "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def create_pipeline(config: PipelineConfig, *, data_only: bool = False,
                    local_metadata: bool = True) -> tfx.dsl.Pipeline:
    """The TFX pipeline for `config`; `data_only` stops after Transform (``ablation ingest``).

    `local_metadata` puts MLMD in SQLite under the pipeline root (local runs); Kubeflow
    provides its own store, so the Kubeflow runner passes False."""
    data = data_components(config)
    components = list(data.values())
    if not data_only:
        num_classes = len(class_names(config.source, config.tfds_data_dir))
        components += list(training_components(config, data, num_classes).values())
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
            if local_metadata else None),
        beam_pipeline_args=list(config.beam_args or DEFAULT_BEAM_ARGS),
    )
