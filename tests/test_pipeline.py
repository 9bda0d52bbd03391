"""The pipeline as users run it: the ingest command, data validation, a whole tiny study, caching,
lineage, and configuration errors."""

import csv
import dataclasses
import json
import os
import pathlib
import re
import shutil

import pytest
import tensorflow_model_analysis as tfma

from pipeline import cli, config as config_lib, local_runner, run_metadata, study_merge
from pipeline.config import ConfigError, PipelineConfig, TrainingConfig
from resnet_ablation.contracts import PREDICTIONS_FILE, Predictions
from tests.conftest import IN_MEMORY, REPO, SMOKE_DATA, ingest

CATS_VS_DOGS = REPO.parent / "shared" / "datasets" / "cats_vs_dogs"


def _tree_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def _image_count(folder: pathlib.Path) -> int:
    return sum(1 for f in folder.rglob("*.jpg") if f.is_file())


@pytest.mark.slow
def test_ingest_command_on_cats_vs_dogs(tmp_path, capsys):
    root = tmp_path / "root"
    assert cli.main(["ingest", "--data", f"imagefolder:{CATS_VS_DOGS}", "--pipeline-root", str(root),
                     "--image-size", "48", "--beam-args=--direct_running_mode=in_memory"]) == 0
    out = capsys.readouterr().out
    # the shared set grows from time to time: count what the folder holds now
    train_images = _image_count(CATS_VS_DOGS / "train")
    eval_images = _image_count(CATS_VS_DOGS / "validation")
    assert train_images > 0 and eval_images > 0
    assert f"split train: {train_images} examples, skipped 0" in out
    assert f"split eval: {eval_images} examples, skipped 0" in out
    printed = {line.split()[0]: line.split()[1] for line in out.splitlines()
               if line.split() and line.split()[0] in
               ("examples", "statistics", "curated_schema", "anomalies", "transform_graph")}
    assert len(printed) == 5 and all(os.path.isdir(uri) for uri in printed.values())
    # all artifacts of ingestion + validation + Transform stay under 1.5x the raw images
    raw = _tree_bytes(str(CATS_VS_DOGS)) - (CATS_VS_DOGS / "SHA256SUMS").stat().st_size
    made = sum(_tree_bytes(d) for d in root.iterdir() if d.is_dir() and d.name != "configs")
    assert made < 1.5 * raw, (made, raw)


def test_eval_label_never_seen_in_train_stops_the_pipeline_before_training(tmp_path):
    """A test class without train images (frog) fails ImageExampleGen, naming the class, so no
    component after it runs (it used to pass as an ExampleValidator anomaly, train every model
    and crash in TFMA)."""
    folder = tmp_path / "images"
    pngs = sorted((SMOKE_DATA / "train").rglob("*.png"))
    layout = {"train": ("cat", "dog"), "test": ("cat", "dog", "frog")}
    for split, classes in layout.items():
        for index, name in enumerate(classes):
            (folder / split / name).mkdir(parents=True)
            for png in pngs[index * 6:(index + 1) * 6]:
                shutil.copy(png, folder / split / name / png.name)
    with pytest.raises(Exception, match=r"eval split has images of class\(es\) with no valid "
                                        r"train image \(frog\)"):
        ingest(tmp_path / "root", data=f"imagefolder:{folder}", train_limit=None)
    assert not (tmp_path / "root" / "Transform").exists()


@pytest.mark.slow
def test_a_small_ingest_has_no_anomaly_for_new_eval_ids_and_still_flags_a_bad_label(tmp_path):
    """SchemaGen gives a string feature with at most 100 distinct train values a domain of
    those values: with 60 train images, the 60 train ids. The curated schema drops it (and
    label_name's), so the 500 eval ids, all new, raise no anomaly; the label's domain is kept."""
    import pandas as pd
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.utils import anomalies_util

    ingested = ingest(tmp_path / "root", train_limit=60)
    found = {split: dict(anomalies_util.load_anomalies_binary(
        os.path.join(ingested.anomalies, f"Split-{split}", "SchemaDiff.pb")).anomaly_info)
        for split in ("train", "eval")}
    assert found == {"train": {}, "eval": {}}
    schema = tfdv.load_schema_text(os.path.join(ingested.schema, "schema.pbtxt"))
    assert not schema.string_domain
    unseen = pd.DataFrame({"id": ["test/cat/new.png", "test/dog/new.png"], "label": [3, 10],
                           "label_name": ["a class never seen", "dog"], "image": [b"x", b"y"]})
    anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(unseen), schema)
    assert set(anomalies.anomaly_info) == {"label"}  # 10 is out of [0, 9]


TINY = PipelineConfig(
    profile="test", pipeline_name="test-study", data=f"imagefolder:{SMOKE_DATA}", image_size=32,
    models=("cifar_resnet20", "cifar_plain20"), train_limit=64, beam_args=IN_MEMORY,
    training=TrainingConfig(epochs=1, batch_size=16, steps_per_epoch=2, warmup_epochs=0))


def _states(config):
    store = run_metadata.open_store(config.pipeline_root)
    return {run.component: run.state for run in run_metadata.last_run(store, config.pipeline_name)}


def _lineage_inputs(store, artifact_id: int, key: str) -> list:
    """Artifacts that the execution producing `artifact_id` read as input `key`."""
    producer = [e for e in store.get_events_by_artifact_ids([artifact_id])
                if e.type == e.OUTPUT][0].execution_id
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([producer])
           if e.type == e.INPUT and e.path.steps[0].key == key]
    return store.get_artifacts_by_id(ids)


@pytest.mark.slow
def test_tiny_study_end_to_end_with_caching_and_lineage(tmp_path, capsys):
    config = dataclasses.replace(TINY, pipeline_root=str(tmp_path / "root"))
    local_runner.run(config)
    out = capsys.readouterr().out
    assert re.search(r"^cifar_resnet20 +1 +[\d.]+ +[\d.]+$", out, re.MULTILINE)  # per model
    assert "Report: " in out and "|" not in out.split("Verdicts:")[0].split("AblationReport")[-1]
    # the study's progress, a line an epoch when not on a terminal, with the time left; the
    # Trainers numbered in the order they ran, each announced by its component line
    first = re.search(r"^Trainer 1/2 (cifar_\w+) seed 0 · epoch 1/1 · [\d,]+ img/s · val error "
                      r"[\d.]+ % · train error [\d.]+ % · Trainer ~0 s left, training "
                      r"~\d+ (s|min) left$", out, re.MULTILINE)
    second = re.search(r"^Trainer 2/2 (cifar_\w+) seed 0 · epoch 1/1 · .* training ~0 s left$",
                       out, re.MULTILINE)
    assert first and second and {first[1], second[1]} == {"cifar_resnet20", "cifar_plain20"}
    assert re.search(rf"^\[[\d:]+\] Trainer\.{first[1]} \.\.\.$", out, re.MULTILINE)
    assert re.search(r"^\[[\d:]+\] AblationReport \.\.\.$", out, re.MULTILINE)
    assert not re.search(r"^Epoch 1/1", out, re.MULTILINE)  # Keras' own lines left out
    assert "Verdicts:" in out and "On test (500 images), cifar_resnet20 − cifar_plain20" in out
    assert set(_states(config).values()) == {"ran"}
    assert len(_states(config)) == 10  # 6 data components, 2 Trainers, 1 Evaluator, report

    store = run_metadata.open_store(config.pipeline_root)
    [report] = run_metadata.latest_outputs(store, config.pipeline_name, "AblationReport", "report")
    [evaluation] = run_metadata.latest_outputs(store, config.pipeline_name,
                                            "Evaluator.cifar_resnet20_vs_cifar_plain20", "evaluation")
    with open(os.path.join(report.uri, "ablation.csv")) as file:
        rows = {row["model"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"cifar_resnet20", "cifar_plain20"}
    for model in rows:
        result = tfma.load_eval_result(evaluation.uri, model_name=model)
        metrics = result.get_metrics_for_slice()
        assert float(rows[model]["val_accuracy"]) == pytest.approx(
            metrics["accuracy"]["doubleValue"], abs=1e-6)
        # TFMA, through the serving signature on raw examples, agrees with the Trainer's own
        # predictions on the same 500 test images (within 5 images: a barely trained net has
        # near-ties that other batch sizes may break differently in bfloat16), and its confusion
        # matrix holds all of them.
        [run] = run_metadata.latest_outputs(store, config.pipeline_name, f"Trainer.{model}", "model_run")
        predictions = Predictions.from_json(
            pathlib.Path(run.uri, PREDICTIONS_FILE).read_text()).eval
        hits = sum(p == label for p, label in zip(predictions.predicted, predictions.labels))
        assert metrics["example_count"]["doubleValue"] == len(predictions.ids) == 500
        assert metrics["accuracy"]["doubleValue"] == pytest.approx(hits / 500, abs=0.01)
        [(_, plots)] = result.plots
        [matrix] = plots[""][""]["multiClassConfusionMatrixAtThresholds"]["matrices"]
        counts = {(e.get("actualClassId", 0), e.get("predictedClassId", 0)): e["numWeightedExamples"]
                  for e in matrix["entries"]}
        assert sum(counts.values()) == 500
        assert sum(n for (actual, predicted), n in counts.items() if actual == predicted) == (
            pytest.approx(metrics["accuracy"]["doubleValue"] * 500))
    assert float(rows["cifar_resnet20"]["delta_vs_plain"]) == pytest.approx(
        float(rows["cifar_resnet20"]["val_accuracy"]) - float(rows["cifar_plain20"]["val_accuracy"]),
        abs=1e-6)
    assert rows["cifar_plain20"]["delta_vs_plain"] == ""

    # lineage: report <- every ModelRun <- its Trainer <- the Examples
    [examples] = run_metadata.latest_outputs(store, config.pipeline_name, "ImageExampleGen", "examples")
    runs = [a for key in ("model_runs_0", "model_runs_1")
            for a in _lineage_inputs(store, report.id, key)]
    assert sorted(a.custom_properties["model_name"].string_value for a in runs) == sorted(rows)
    for run in runs:
        assert [a.id for a in _lineage_inputs(store, run.id, "examples")] == [examples.id]

    # unchanged: nothing executes
    local_runner.run(config)
    assert set(_states(config).values()) == {"cached"}

    # only the epoch count changed: only training, evaluation and the report run again
    local_runner.run(config_lib.with_overrides(config, epochs=2))
    states = _states(config)
    assert {c for c, s in states.items() if s == "ran"} == {
        "Trainer.cifar_resnet20", "Trainer.cifar_plain20",
        "Evaluator.cifar_resnet20_vs_cifar_plain20", "AblationReport"}
    assert {c for c, s in states.items() if s == "cached"} == {
        "ImageExampleGen", "StatisticsGen", "SchemaGen", "SchemaCurator", "ExampleValidator",
        "Transform"}


@pytest.mark.slow
def test_two_seeds_at_chance_give_intervals_and_no_winner(tmp_path, capsys):
    """Two training steps cannot learn CIFAR-10: every verdict must say so, never a winner."""
    config = dataclasses.replace(TINY, pipeline_root=str(tmp_path / "root"), seeds=2)
    local_runner.run(config)
    out = capsys.readouterr().out
    store = run_metadata.open_store(config.pipeline_root)
    [report] = run_metadata.latest_outputs(store, config.pipeline_name, "AblationReport", "report")
    data = json.loads(open(os.path.join(report.uri, "ablation.json")).read())
    assert [(r["model"], r["seed"]) for r in data["rows"]] == [
        ("cifar_plain20", 0), ("cifar_plain20", 1), ("cifar_resnet20", 0), ("cifar_resnet20", 1)]
    for row in data["rows"]:
        assert row["status"] == "ok" and row["eval_split"] == "test"
        assert 0 <= row["train_error"] <= 1 and 0 <= row["eval_error"] <= 1
        assert row["best_val_accuracy"] is None  # no validation split: no selection on test
    for row in data["rows"][2:]:
        assert row["delta_ci_low"] <= row["delta_vs_plain"] <= row["delta_ci_high"]
    assert [(v["kind"], v["split"], v["seeds"]) for v in data["verdicts"]] == [
        ("residual_vs_plain", "test", 2), ("residual_vs_plain", "train", 2)]
    for verdict in data["verdicts"]:
        assert verdict["conclusion"] in ("at_chance", "not_distinguishable"), verdict
        assert verdict["sentence"] in " ".join(out.split())  # wrapped for the terminal
        assert "2 seeds" in verdict["sentence"]
    examples = data["data"]["examples"]
    assert examples == {"train": 64, "eval": 500}
    assert sum(data["data"]["classes"]["eval"].values()) == 500
    assert data["provenance"]["configuration fingerprint"] == config.fingerprint()


@pytest.mark.slow
def test_diverged_models_still_yield_a_report(tmp_path, capsys):
    """A learning rate no net survives: both Trainers record divergence, the Evaluator skips
    the pair, and the report marks both rows and says why there is no comparison."""
    training = dataclasses.replace(TINY.training, base_learning_rate=1e30, weight_decay=0.0)
    config = dataclasses.replace(TINY, pipeline_root=str(tmp_path / "root"), training=training)
    local_runner.run(config)
    out = capsys.readouterr().out
    assert set(_states(config).values()) == {"ran"}
    store = run_metadata.open_store(config.pipeline_root)
    [report] = run_metadata.latest_outputs(store, config.pipeline_name, "AblationReport", "report")
    with open(os.path.join(report.uri, "ablation.csv")) as file:
        rows = {row["model"]: row for row in csv.DictReader(file)}
    assert {r["status"] for r in rows.values()} == {"diverged"}
    assert {r["diverged_epoch"] for r in rows.values()} == {"1"}
    assert "cifar_plain20 seed 0 diverged (non-finite loss in epoch 1)" in " ".join(out.split())
    [evaluation] = run_metadata.latest_outputs(store, config.pipeline_name,
                                            "Evaluator.cifar_resnet20_vs_cifar_plain20", "evaluation")
    assert "diverged in epoch 1" in open(os.path.join(evaluation.uri, "SKIPPED")).read()


@pytest.mark.slow
def test_shards_of_a_study_merge_into_one_report(tmp_path, capsys):
    """Seed 0 in one root and seed 1 in another, merged: the same table and verdicts as one
    two-seed run, with both roots in the provenance; a shard of another study is refused."""
    roots = [tmp_path / "shard0", tmp_path / "shard1"]
    for first_seed, root in enumerate(roots):
        local_runner.run(dataclasses.replace(TINY, pipeline_root=str(root), first_seed=first_seed))
    ids = {c for c in _states(dataclasses.replace(TINY, pipeline_root=str(roots[1])))}
    assert "Trainer.cifar_resnet20.seed1" in ids  # a shard names its seed
    capsys.readouterr()
    output = tmp_path / "merged"
    assert cli.main(["report", *map(str, roots), "--output", str(output), "--with-runs"]) == 0
    merged = json.loads((output / "ablation.json").read_text())
    published = sorted(str(p.relative_to(output)) for p in (output / "runs").rglob("*")
                       if study_merge.TENSORBOARD not in p.relative_to(output).parts)
    boards = {p.relative_to(output).parts[1:4] for p in (output / "runs").rglob("events.out*")}
    assert boards == {(f"shard{s}", study_merge.TENSORBOARD, f"{m}_seed{s}")
                      for s in (0, 1) for m in ("cifar_plain20", "cifar_resnet20")}
    assert published == sorted([f"runs/shard{s}" for s in (0, 1)] + [
        f"runs/shard{s}/{name}" for s in (0, 1) for name in [
            f"{m}_seed{s}.{kind}" for m in ("cifar_plain20", "cifar_resnet20")
            for kind in study_merge.RUN_FILES] + ["shard.json"]])
    history = json.loads((output / "runs/shard1/cifar_resnet20_seed1.history.json").read_text())
    assert history["seed"] == 1 and len(history["epochs"]) == TINY.training.epochs
    # the published shards merge without their roots into the same report
    again = tmp_path / "again"
    assert cli.main(["report", *(str(output / "runs" / r.name) for r in roots),
                     "--output", str(again)]) == 0
    remerged = json.loads((again / "ablation.json").read_text())
    assert remerged["rows"] == merged["rows"] and remerged["verdicts"] == merged["verdicts"]
    assert remerged["data"] == merged["data"]
    assert sorted((r["model"], r["seed"]) for r in merged["rows"]) == [
        ("cifar_plain20", 0), ("cifar_plain20", 1), ("cifar_resnet20", 0), ("cifar_resnet20", 1)]
    assert {v["seeds"] for v in merged["verdicts"]} == {2}
    assert merged["provenance"]["merged pipeline roots"] == list(map(str, roots))
    assert "shard1: Trainer.cifar_resnet20.seed1" in merged["provenance"]["component_seconds"]
    assert "Verdicts" in capsys.readouterr().out

    assert cli.main(["report", *map(str, roots)]) == 2  # several roots need --output
    assert "needs --output" in capsys.readouterr().err
    assert cli.main(["report", str(roots[0]), str(roots[0]), "--output", str(output)]) == 1
    assert "was run in both" in capsys.readouterr().err


@pytest.mark.slow
def test_one_net_per_shard_merges_into_the_paired_verdict(tmp_path, capsys):
    """A twin pair too long for one session runs one net per root: each root evaluates its net
    alone, and the merge pairs the twins of a seed on the same test images."""
    roots = {model: tmp_path / model for model in TINY.models}
    for model, root in roots.items():
        local_runner.run(dataclasses.replace(TINY, pipeline_root=str(root), models=(model,)))
    states = _states(dataclasses.replace(TINY, pipeline_root=str(roots["cifar_resnet20"])))
    assert {c for c in states if c.startswith("Evaluator")} == {"Evaluator.cifar_resnet20"}
    capsys.readouterr()
    output = tmp_path / "merged"
    assert cli.main(["report", *map(str, roots.values()), "--output", str(output)]) == 0
    merged = json.loads((output / "ablation.json").read_text())
    assert [(v["kind"], v["split"], v["seeds"]) for v in merged["verdicts"]] == [
        ("residual_vs_plain", "test", 1), ("residual_vs_plain", "train", 1)]
    [resnet] = [r for r in merged["rows"] if r["model"] == "cifar_resnet20"]
    [plain] = [r for r in merged["rows"] if r["model"] == "cifar_plain20"]
    assert 0 <= resnet["mcnemar_p"] <= 1
    assert resnet["delta_vs_plain"] == pytest.approx(plain["eval_error"] - resnet["eval_error"])


def test_roots_of_different_studies_are_not_merged():
    from pipeline.study_merge import RootReport, _check_one_study

    def part(root, **config):
        base = {"data": "imagefolder:x", "seeds": 1, "first_seed": 0, "pipeline_root": root,
                "training": {"epochs": 1, "batch_size": 16}}
        for key, value in config.items():
            (base["training"] if key in ("epochs", "batch_size") else base)[key] = value
        return RootReport(root, [], {"examples": {"train": 64, "eval": 500}}, json.dumps(base),
                           "abc", None, {})

    _check_one_study([part("a"), part("b", first_seed=1, seeds=2)])  # shards: fine
    with pytest.raises(ValueError, match=r"b is not a shard of the study in a: "
                                         r"training.epochs is 1 vs 2"):
        _check_one_study([part("a"), part("b", epochs=2)])
    with pytest.raises(ValueError, match="data is \"imagefolder:x\" vs \"imagefolder:y\""):
        _check_one_study([part("a"), part("b", data="imagefolder:y")])


@pytest.mark.parametrize("overrides, message", [
    ({"models": ("resnet51",)}, "unknown model(s) resnet51; valid: resnet18"),
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"image_size": -3}, "image_size must be a positive integer, got -3"),
    ({"data": "s3:bucket"}, "invalid data 's3:bucket'"),
    ({"pipeline_root": "{tmp}/a-file/root"}, "pipeline root {tmp}/a-file/root is not writable"),
])
def test_invalid_configuration_fails_before_anything_runs(tmp_path, overrides, message):
    (tmp_path / "a-file").write_text("not a directory")
    overrides = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v
                 for k, v in overrides.items()}
    message = message.replace("{tmp}", str(tmp_path))
    config = config_lib.with_overrides(
        dataclasses.replace(TINY, pipeline_root=str(tmp_path / "root")), **overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        local_runner.run(config)
    assert not (tmp_path / "root").exists()


def test_cli_reports_bad_profile_in_one_line(capsys):
    assert cli.main(["run", "--profile", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("ablation run: unknown profile 'nope'; available: cats_vs_dogs, "
                   "cats_vs_dogs_cpu, cifar10, cifar10_224_cpu, cifar_cpu, cifar_cpu_long, "
                   "cifar_paper, smoke (or a path to a .toml file)")
