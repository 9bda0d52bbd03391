"""The ablation report component on real artifacts: files, verdicts, diverged runs, data and
provenance sections, in a pipeline, re-rendered from ML Metadata, compiled for Kubeflow V2.

The evaluations are real: two tiny tf_keras classifiers (standing in for cifar_resnet20 and
cifar_plain20) are trained on a synthetic 3-class problem, saved with a ``serving_default``
signature over serialized tf.Examples, and evaluated by the TFX Evaluator executor (TFMA 0.52),
the plain one alone and the residual one against the plain one as baseline, as the pipeline does.
The statistics and verdicts themselves are pinned in test_ablation.py.
"""

import base64
import csv
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from PIL import Image
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import evaluation, report
from pipeline import study_merge
from resnet_ablation import comparison, report_files, report_html, report_tables
from resnet_ablation.contracts import (
    EpochRecord,
    LayerResponses,
    Predictions,
    RunHistory,
    SplitPredictions,
)
from resnet_ablation.keras2 import keras
from resnet_ablation.model_specs import get_spec

EXPECTED_COLUMNS = ["model", "family", "depth", "residual", "params", "epochs", "seed",
                    "train_loss", "val_loss", "val_accuracy", "best_val_accuracy",
                    "delta_vs_plain", "images_per_second",
                    "status", "train_error", "eval_error", "eval_split", "delta_ci_low",
                    "delta_ci_high"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"
RESNET, PLAIN = "cifar_resnet20", "cifar_plain20"
EVAL_IDS = 200
REPO = pathlib.Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def history(model, seed, val_accuracy, images_per_second=(100.0, 120.0, 400.0), params=1234,
            status="ok", val_split="test"):
    """A RunHistory: one epoch per value of `val_accuracy`."""
    spec = get_spec(model)
    epochs = tuple(EpochRecord(
        epoch=i + 1, train_loss=2.0 - 0.25 * i, train_accuracy=acc, val_loss=1.9 - 0.2 * i,
        val_accuracy=acc, clean_train_loss=1.5, clean_train_accuracy=min(acc + 0.1, 1.0),
        learning_rate=0.1, seconds=3.0, images_per_second=ips)
        for i, (acc, ips) in enumerate(zip(val_accuracy, images_per_second)))
    return RunHistory(
        model=model, family=spec.family, depth=spec.depth, residual=spec.residual,
        params=params, seed=seed, batch_size=8, image_size=32, num_classes=3,
        steps_per_epoch=4, precision="float32", xla=False, training={"epochs": len(epochs)},
        val_split=val_split, eval_split="test", train_subset=EVAL_IDS,
        shortcut="A" if spec.residual else "none", device="CPU: test (2 cores)",
        status=status, diverged_epoch=len(epochs) + 1 if status == "diverged" else None,
        epochs=epochs)


def predictions(correct):
    """Predictions on EVAL_IDS ids (both splits): the first `correct` right."""
    labels = tuple(i % 3 for i in range(EVAL_IDS))
    predicted = tuple(y if i < correct else (y + 1) % 3 for i, y in enumerate(labels))
    split = SplitPredictions(tuple(f"img{i}" for i in range(EVAL_IDS)), labels, predicted)
    return Predictions(eval=split, train=split)


def model_run(directory, hist, preds=None, with_properties=True):
    """A ModelRun artifact whose URI holds `hist` (and `preds`, and layer responses with them)
    as the Trainer writes them."""
    artifact = standard_artifacts.ModelRun()
    artifact.uri = str(directory)
    pathlib.Path(directory).mkdir(parents=True)
    (pathlib.Path(directory) / "history.json").write_text(hist.to_json())
    if preds is not None:
        (pathlib.Path(directory) / "predictions.json").write_text(preds.to_json())
        stds = tuple(1.0 / (i + 1) if hist.residual else 2.0 for i in range(19))
        (pathlib.Path(directory) / "responses.json").write_text(LayerResponses(
            tuple(f"layer{i}_bn" for i in range(19)), stds, EVAL_IDS).to_json())
    if with_properties:
        artifact.set_string_custom_property("model_name", hist.model)
        artifact.set_int_custom_property("seed", hist.seed)
    return artifact


def _csv_rows(output):
    """CSV rows keyed by (model, seed); `output` is an artifact (TFX or MLMD) or a directory."""
    directory = pathlib.Path(getattr(output, "uri", output))
    with open(directory / "ablation.csv", newline="") as handle:
        return {(r["model"], int(r["seed"])): r for r in csv.DictReader(handle)}


def tfma_accuracy(evaluation):
    """The accuracy TFMA itself reports for the candidate model of `evaluation` (TFMA drops
    the model name when an evaluation has a single model)."""
    compared = evaluation.get_string_custom_property("baseline_model_name")
    name = evaluation.get_string_custom_property("model_name") if compared else None
    result = tfma.load_eval_result(evaluation.uri, model_name=name)
    return result.get_metrics_for_slice()["accuracy"]["doubleValue"]


# --------------------------------------------------------------------------- real evaluations


def _example(features, label):
    return tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=features)),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def _examples_artifact(root, features, labels):
    split = root / "examples" / "Split-eval"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord.gz"), options="GZIP") as writer:
        for x, y in zip(features, labels):
            writer.write(_example(x, int(y)))
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root / "examples")
    artifact.split_names = '["eval"]'
    return artifact


def _trained_model(directory, features, labels, epochs):
    """A tiny tf_keras classifier saved as the Trainer does: Format-Serving, serving_default
    over serialized tf.Examples, compiled loss and accuracy (which TFMA reports)."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy",
                  [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    model.fit(features, labels, epochs=epochs, batch_size=20, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([4], tf.float32)})
        return {"probabilities": model(parsed["x"])}

    artifact = standard_artifacts.Model()
    artifact.uri = str(directory)
    model.save(str(directory / "Format-Serving"), save_format="tf",
               signatures={"serving_default": serve})
    return artifact


def _evaluate(directory, examples, name, model, baseline=None):
    """Runs the TFX Evaluator executor on `model` named `name` (against `baseline`, a
    (name, model) pair); returns its ModelEvaluation with the pipeline's custom properties."""
    config = evaluation.eval_config(name, 3, baseline and baseline[0])  # the pipeline's
    result = standard_artifacts.ModelEvaluation()
    result.uri = str(directory)
    result.set_string_custom_property("model_name", name)
    result.set_string_custom_property("baseline_model_name", baseline[0] if baseline else "")
    result.set_int_custom_property("seed", 0)
    inputs = {"examples": [examples], "model": [model]}
    if baseline:
        inputs["baseline_model"] = [baseline[1]]
    evaluator_executor.Executor().Do(
        inputs, {"evaluation": [result], "blessing": [standard_artifacts.ModelBlessing()]},
        {"eval_config": proto_utils.proto_to_json(config)})
    return result


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """Evaluator outputs for (cifar_plain20, 0) alone and (cifar_resnet20, 0) vs it, with the
    custom properties the pipeline sets."""
    root = tmp_path_factory.mktemp("evaluations")
    rng = np.random.default_rng(0)
    features = rng.standard_normal((160, 4)).astype(np.float32)
    labels = np.argmax(features @ rng.standard_normal((4, 3)), axis=1)
    examples = _examples_artifact(root, features[100:], labels[100:])
    plain = _trained_model(root / "plain", features[:100], labels[:100], epochs=1)
    resnet = _trained_model(root / "resnet", features[:100], labels[:100], epochs=10)
    return {PLAIN: _evaluate(root / "eval_plain", examples, PLAIN, plain),
            RESNET: _evaluate(root / "eval_resnet", examples, RESNET, resnet, (PLAIN, plain))}


# --------------------------------------------------------------------------- the component


RUNS = [
    (history(RESNET, 0, [0.3, 0.6, 0.5]), predictions(150)),
    (history(PLAIN, 0, [0.2, 0.4, 0.45]), predictions(100)),
    (history(RESNET, 1, [0.35, 0.65, 0.7], images_per_second=(10.0, 30.0, 20.0)), predictions(140)),
    (history(PLAIN, 1, [0.25, 0.5, 0.55]), predictions(110)),
]
CONFIG_JSON = json.dumps({"profile": "test", "data": "imagefolder:<b>cats & dogs</b>"})


@pytest.fixture(scope="module")
def component_output(evaluations, tmp_path_factory):
    """Runs the AblationReport executor on four ModelRuns (two seeds) and the evaluations."""
    root = tmp_path_factory.mktemp("report")
    runs = [model_run(root / f"run{i}", h, p) for i, (h, p) in enumerate(RUNS)]
    output = report.AblationReportArtifact()
    output.uri = str(root / "report")
    report.AblationReportExecutor().Do(
        {"model_runs_0": runs[:2], "model_runs_1": runs[2:],  # one key per upstream channel
         "evaluations_0": [evaluations[PLAIN]], "evaluations_1": [evaluations[RESNET]]},
        {"report": [output]}, {"config_json": CONFIG_JSON, "code_version": "abc123"})
    return output


@pytest.mark.slow
def test_csv_header_order_is_exact(component_output):
    with open(pathlib.Path(component_output.uri) / "ablation.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[:len(EXPECTED_COLUMNS)] == EXPECTED_COLUMNS
    assert len(_csv_rows(component_output)) == 4


def test_accuracies_are_the_evaluators_own_values(component_output, evaluations):
    rows = _csv_rows(component_output)
    for name in (RESNET, PLAIN):
        expected = tfma_accuracy(evaluations[name])
        assert float(rows[(name, 0)]["val_accuracy"]) == expected
        assert float(rows[(name, 0)]["eval_error"]) == pytest.approx(1 - expected)
        assert rows[(name, 0)]["val_source"] == "evaluator"
        assert rows[(name, 0)]["status"] == "ok" and rows[(name, 0)]["eval_split"] == "test"
    # The two evaluated models must differ, or the delta checks below prove nothing.
    assert tfma_accuracy(evaluations[RESNET]) - tfma_accuracy(evaluations[PLAIN]) > 0.1


def test_without_an_evaluation_the_predictions_are_used(component_output):
    rows = _csv_rows(component_output)
    assert float(rows[(RESNET, 1)]["val_accuracy"]) == 140 / EVAL_IDS
    assert rows[(RESNET, 1)]["val_source"] == "history"
    assert float(rows[(RESNET, 1)]["train_error"]) == pytest.approx(1 - 140 / EVAL_IDS)


def test_delta_and_its_paired_interval(component_output, evaluations):
    rows = _csv_rows(component_output)
    delta = float(rows[(RESNET, 0)]["delta_vs_plain"])
    assert delta == pytest.approx(
        tfma_accuracy(evaluations[RESNET]) - tfma_accuracy(evaluations[PLAIN]), abs=1e-12)
    # TFMA's own candidate-minus-baseline diff agrees (it is computed in float32).
    assert delta == pytest.approx(float(rows[(RESNET, 0)]["eval_accuracy_diff"]), abs=1e-6)
    seed1 = rows[(RESNET, 1)]
    assert float(seed1["delta_vs_plain"]) == pytest.approx(0.15)
    # nested predictions: 30 discordant pairs, all the residual net's way
    assert float(seed1["delta_ci_low"]) > 0 and float(seed1["delta_ci_high"]) > 0.15
    assert float(seed1["mcnemar_p"]) == pytest.approx(2 * 0.5 ** 30)
    assert rows[(PLAIN, 0)]["delta_vs_plain"] == rows[(PLAIN, 0)]["delta_ci_low"] == ""


def test_no_best_epoch_selected_on_test(component_output):
    rows = _csv_rows(component_output)
    assert rows[(RESNET, 0)]["best_val_accuracy"] == ""  # the curve is on test
    assert float(rows[(RESNET, 0)]["images_per_second"]) == 120.0  # median, not mean 206.7
    assert rows[(RESNET, 0)]["residual"] == "true" and rows[(PLAIN, 0)]["residual"] == "false"
    assert rows[(RESNET, 0)]["epochs"] == "3" and rows[(RESNET, 0)]["depth"] == "20"


def test_figures_are_real_images(component_output):
    """Every figure is a PNG with an SVG beside it."""
    for key in report_files.FIGURES:
        png = pathlib.Path(component_output.uri) / report_files.REPORT_FILES[key]
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 200
        svg = ElementTree.parse(png.with_suffix(".svg")).getroot()
        assert svg.tag == f"{SVG}svg" and png.with_suffix(".svg").name == (
            report_files.REPORT_FILES[f"{key}_svg"])


def test_html_is_self_contained_and_escaped(component_output):
    directory = pathlib.Path(component_output.uri)
    page = (directory / "report.html").read_text()
    assert ("<h1>Residual vs plain on imagefolder:&lt;b&gt;cats &amp; dogs&lt;/b&gt; — profile "
            "test, seeds 0–1</h1>") in page
    assert page.index("<h2>Error per model</h2>") < page.index("<h2>Verdicts</h2>") < page.index(
        "<h2>Runs</h2>")
    assert f"<td>{RESNET}</td>" in page and "residual_better" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(i) for i in images] == [
        (directory / name).read_bytes()
        for name in ("gaps.png", "errors.png", "curves.png", "responses.png")]
    assert "Layer responses (paper Fig. 7)" in page
    assert not re.search(r'(src|href)="(?!data:)', page), "the page links an external file"
    assert "<b>cats" not in page and "&lt;b&gt;cats &amp; dogs&lt;/b&gt;" in page
    assert "abc123" in page and "<h2>Provenance</h2>" in page


def test_json_verdicts_follow_the_contract(component_output, evaluations):
    data = json.loads((pathlib.Path(component_output.uri) / "ablation.json").read_text())
    assert data["columns"][:len(EXPECTED_COLUMNS)] == EXPECTED_COLUMNS
    assert len(data["rows"]) == 4 and len(data["summary"]) == 2
    fields = {"kind", "family", "models", "metric", "split", "gap", "ci_low", "ci_high", "seeds",
              "conclusion", "sentence"}
    assert all(fields <= set(v) for v in data["verdicts"])
    [on_test] = [v for v in data["verdicts"] if v["split"] == "test"]
    assert on_test["kind"] == "residual_vs_plain" and on_test["seeds"] == 2
    assert on_test["models"] == [RESNET, PLAIN]
    # two seeds: t-interval over the per-seed gaps (df = 1), wide
    gaps = [tfma_accuracy(evaluations[RESNET]) - tfma_accuracy(evaluations[PLAIN]), 0.15]
    expected = comparison.t_interval(gaps)
    assert (on_test["gap"], on_test["ci_low"], on_test["ci_high"]) == pytest.approx(
        (expected.estimate, expected.low, expected.high))
    assert data["provenance"]["code version"] == "abc123"
    assert data["provenance"]["training devices"] == ["CPU: test (2 cores)"]
    assert component_output.get_int_custom_property("rows") == 4
    verdicts = component_output.get_string_custom_property("verdicts").splitlines()
    assert verdicts == [v["sentence"] for v in data["verdicts"]]
    markdown = (pathlib.Path(component_output.uri) / "ablation.md").read_text()
    assert markdown.index("## Verdicts") < markdown.index("## Runs")


def test_a_diverged_model_is_reported_not_evaluated(evaluations, tmp_path):
    """A diverged plain net: the Evaluator skips it (and says so), the report marks the row."""
    model_dir = tmp_path / "model" / "Format-Serving"
    model_dir.mkdir(parents=True)
    (model_dir / "DIVERGED").write_text("cifar_plain20 seed 0 diverged in epoch 3\n")
    diverged_model = standard_artifacts.Model()
    diverged_model.uri = str(tmp_path / "model")
    skipped = standard_artifacts.ModelEvaluation()
    skipped.uri = str(tmp_path / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    evaluation._Executor().Do({"model": [standard_artifacts.Model()],
                               "baseline_model": [diverged_model]},
                              {"evaluation": [skipped], "blessing": [blessing]}, {})
    assert "diverged in epoch 3" in (tmp_path / "evaluation" / "SKIPPED").read_text()
    assert (tmp_path / "blessing" / "NOT_BLESSED").exists()
    skipped.set_string_custom_property("model_name", RESNET)
    skipped.set_int_custom_property("seed", 0)

    runs = [model_run(tmp_path / "resnet", history(RESNET, 0, [0.3, 0.5]), predictions(100)),
            model_run(tmp_path / "plain", history(PLAIN, 0, [0.3], status="diverged"))]
    output = report.AblationReportArtifact()
    output.uri = str(tmp_path / "report")
    report.AblationReportExecutor().Do({"model_runs": runs, "evaluations": [skipped]},
                                       {"report": [output]}, {})
    rows = _csv_rows(output)
    assert rows[(PLAIN, 0)]["status"] == "diverged" and rows[(PLAIN, 0)]["diverged_epoch"] == "2"
    assert rows[(PLAIN, 0)]["val_accuracy"] == "" and rows[(RESNET, 0)]["status"] == "ok"
    data = json.loads((tmp_path / "report" / "ablation.json").read_text())
    assert {v["conclusion"] for v in data["verdicts"]} == {"diverged"}
    assert "status diverged" not in (tmp_path / "report" / "report.html").read_text()
    assert "diverged (epoch 2)" in (tmp_path / "report" / "report.html").read_text()


def test_data_warnings_name_every_problem():
    data = {"labels": ["cat", "dog", "fox"],
            "classes": {"train": {"cat": 5, "dog": 4}, "eval": {"cat": 2, "dog": 2, "owl": 1}},
            "skipped": {"train": {"truncated": 2}},
            "duplicates_of_train": {"eval": 3, "validation": 0},
            "exif_rotated": {"train": 2, "eval": 0},
            "large": {"train": 0, "eval": 1},
            "anomalies": ["eval: label_name: Unexpected string values"]}
    assert report.data_warnings(data) == [
        "train: 2 file(s) skipped as truncated",
        "eval: 3 image(s) byte-identical to train images (found by content hash): the model "
        "was scored on images it trained on",
        "train: 2 JPEG(s) with an EXIF orientation: used as stored (as TensorFlow decodes them, "
        "in training and serving alike), not as a viewer shows them",
        "eval: 1 image(s) above 16.8 megapixels: each is decoded whole before it is resized, "
        "which can dominate training time; resize the folder once",
        "class(es) with no valid train image: fox",
        "eval has class(es) never seen in train: owl",
        "anomaly: eval: label_name: Unexpected string values"]
    assert report.data_warnings({}) == []


def test_markdown_shows_the_datas_text_as_text_never_as_markup():
    """Class folder names and anomaly descriptions reach ablation.md as written, as they reach
    report.html: no HTML, no table cell split, no block of their own."""
    hostile = "<img src=x onerror=alert(1)>"
    data = {"labels": ["cat", hostile], "classes": {"train": {"cat": 3},
                                                   "eval": {"cat": 1, "a|b & <c>": 1}},
            "anomalies": ["eval: id: Unexpected string values: '<script>x</script>'"]}
    warnings = [*report.data_warnings(data), "train: 1 file(s) named\n# a heading"]
    verdicts = [{"sentence": f"{hostile} beats | plain", "conclusion": "residual_better"}]
    content = report_files.Report(rows=[], verdicts=verdicts, histories=[], warnings=warnings)
    text = report_files.markdown(content)
    assert "<img" not in text and "<script>" not in text and "<c>" not in text
    assert "- class(es) with no valid train image: &lt;img src=x onerror=alert(1)&gt;" in text
    assert "- eval has class(es) never seen in train: a&#124;b &amp; &lt;c&gt;" in text
    assert "'&lt;script&gt;x&lt;/script&gt;'" in text
    assert "- &lt;img src=x onerror=alert(1)&gt; beats &#124; plain" in text
    assert "\n# a heading" not in text and "- train: 1 file(s) named # a heading" in text
    page = report_html.page(content, {"errors": b"", "curves": b""})
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


# --------------------------------------------------------------------------- the headline


def _provenance(data="imagefolder:/home/me/datasets/cifar10/png", profile="cifar_cpu",
                run_ids="2026-11-26T13:07:55.04, 2026-11-27T03:21:10.63"):
    return {"config": {"data": data, "profile": profile}, "pipeline run id": run_ids}


def test_the_title_names_data_profile_seeds_and_newest_run_date():
    rows = [{"seed": seed} for seed in (2, 0, 1, 1)]
    assert report_tables.title(rows, _provenance()) == (
        "Residual vs plain on imagefolder:cifar10/png — profile cifar_cpu, seeds 0–2, 2026-11-27")
    assert report_tables.title([{"seed": 0}, {"seed": 2}, {"seed": 5}],
                              _provenance("tfds:cifar10", None, "unknown")) == (
        "Residual vs plain on tfds:cifar10 — seeds 0, 2, 5")
    assert report_tables.title([{"seed": 3}], {}) == "Residual vs plain — seed 3"
    assert report_tables.title([], {}) == "Residual vs plain"
    assert report_tables.data_name("imagefolder:gs://bucket/sets/cats/png") == "imagefolder:cats/png"
    assert report_tables.data_name("imagefolder:../shared/cifar10/png") == "imagefolder:cifar10/png"


def _residual_pair(correct_resnet, correct_plain, ids=EVAL_IDS, seed=0):
    """RunResults of cifar_resnet20 and cifar_plain20 on `ids` eval (and train) images, the
    first `correct_*` right: nested, so every discordant pair is the residual net's."""
    labels = tuple(i % 3 for i in range(ids))

    def preds(correct):
        split = SplitPredictions(tuple(f"img{i}" for i in range(ids)), labels, tuple(
            y if i < correct else (y + 1) % 3 for i, y in enumerate(labels)))
        return Predictions(eval=split, train=split)

    return [comparison.RunResult(history(RESNET, seed, [0.5, correct_resnet / ids]),
                               preds(correct_resnet)),
            comparison.RunResult(history(PLAIN, seed, [0.4, correct_plain / ids]),
                               preds(correct_plain))]


def test_a_p_value_that_underflows_reads_below_1e_300_never_0():
    """3,000 discordant pairs all one way: McNemar's p is 2 * 0.5**3000, 0.0 in floating point."""
    results = _residual_pair(3000, 0, ids=3000)
    [row] = [r for r in comparison.rows(results) if r["model"] == RESNET]
    [verdict] = [v for v in comparison.verdicts(results) if v["split"] == "test"]
    assert row["mcnemar_p"] == verdict["p_value"] == 0.0  # the statistic itself is unchanged
    assert verdict["sentence"].endswith(", McNemar p < 1e-300: residual better.")
    [cells] = [c for c in report_tables.display_rows(comparison.rows(results)) if c["model"] == RESNET]
    assert cells["McNemar p"] == "< 1e-300"
    assert [comparison.format_p(p) for p in (0.0, 1e-301, 2.68e-13, 0.5, None)] == [
        "< 1e-300", "< 1e-300", "2.68e-13", "0.5", ""]


def test_a_verdict_sentence_is_in_error_terms_with_the_statistic_unchanged():
    results = _residual_pair(150, 100)
    [verdict] = [v for v in comparison.verdicts(results) if v["split"] == "test"]
    interval, p_value = comparison.paired_difference(*[[i < c for i in range(EVAL_IDS)]
                                                     for c in (150, 100)])
    assert (verdict["gap"], verdict["ci_low"], verdict["ci_high"]) == pytest.approx(
        (interval.estimate, interval.low, interval.high))  # accuracy, as before
    assert verdict["sentence"] == (
        f"On test ({EVAL_IDS} images), {RESNET} − {PLAIN} = -25.00 points of error (25.00 % vs "
        f"50.00 %; 95 % CI {-100 * interval.high:+.2f} to {-100 * interval.low:+.2f}, paired, on "
        f"these images; after 2 epochs, 1 seed), McNemar p = {p_value:.3g}: residual better.")


def test_the_runs_table_explains_every_missing_gap_and_drops_empty_columns():
    """Seed 0 without predictions (no interval), seed 1 paired, seed 2 without its plain twin."""
    unpaired = [dataclasses.replace(r, predictions=None) for r in _residual_pair(150, 100)]
    results = unpaired + _residual_pair(140, 110, seed=1) + _residual_pair(120, 0, seed=2)[:1]
    cells, columns, notes = report_tables.runs_table(comparison.rows(results))
    gaps = {(c["model"], c["seed"]): c[report_tables.GAP_COLUMN] for c in cells}
    assert gaps[(RESNET, "0")] == "-25.00 ¹" and gaps[(PLAIN, "0")] == ""
    assert re.fullmatch(r"-15\.00 \(-\d+\.\d\d to -\d+\.\d\d\)", gaps[(RESNET, "1")])
    assert gaps[(RESNET, "2")] == "— ²"
    assert "best val acc" not in columns and "McNemar p" in columns
    assert notes[0].startswith("¹ No interval and no McNemar p for this seed")
    assert notes[1].startswith("² No gap: this residual net's plain twin with the same seed "
                               "is not among the merged runs")
    assert notes[-1].endswith("Left out, empty in every row: best val acc.")


def test_the_per_model_table_is_mean_and_sd_over_seeds():
    results = _residual_pair(150, 100) + _residual_pair(140, 110, seed=1)
    rows = comparison.rows(results)
    cells, columns = report_tables.model_table(comparison.summarize(rows), rows)
    assert columns == ["model", "seeds", "test error, %", "training error, %"]
    resnet = next(c for c in cells if c["model"] == RESNET)
    errors = [100 * (1 - 150 / EVAL_IDS), 100 * (1 - 140 / EVAL_IDS)]
    assert resnet == {"model": RESNET, "epochs": "2", "seeds": "2",
                      "test error, %": f"{statistics.fmean(errors):.2f} ± "
                                       f"{statistics.stdev(errors):.2f}",
                      "training error, %": "27.50 ± 3.54"}


def test_provenance_paths_are_shown_from_their_root():
    provenance = {"merged pipeline roots": ["/runs/a/seed0", "/srv/b/seed1"],
                  "config": {"pipeline_root": "/runs/a/seed0",
                             "data": "imagefolder:/home/me/sets/cifar10/png"},
                  "notes": "see /runs/a/seed0/Trainer/1 and gs://bucket/x/y, docs/a/b.json"}
    roots = report_html.pipeline_roots(provenance)
    assert report_html.relative_paths(provenance, roots) == {
        "merged pipeline roots": ["seed0", "seed1"],
        "config": {"pipeline_root": "seed0", "data": "imagefolder:…/cifar10/png"},
        "notes": "see seed0/Trainer/1 and gs://bucket/x/y, docs/a/b.json"}


def test_learning_rate_drops_come_from_the_histories_or_the_step_schedule():
    from resnet_ablation import plots

    steps = history(RESNET, 0, [0.3, 0.4, 0.5, 0.6, 0.7], images_per_second=[100.0] * 5)
    rates = (0.1, 0.1, 0.01, 0.01, 0.001)
    stepped = dataclasses.replace(steps, training={"schedule": "step"}, epochs=tuple(
        dataclasses.replace(e, learning_rate=r) for e, r in zip(steps.epochs, rates)))
    # a short cosine decay (warm-up, then 4 epochs) halves near its end: still no drop
    cosine_rates = (0.0125, 0.0107, 0.0063, 0.0018, 0.0)
    cosine = dataclasses.replace(steps, training={"schedule": "cosine"}, epochs=tuple(
        dataclasses.replace(e, learning_rate=r) for e, r in zip(steps.epochs, cosine_rates)))
    assert plots.learning_rate_drops([stepped, cosine]) == [2, 4]
    assert plots.learning_rate_drops([cosine]) == []
    configured = dataclasses.replace(steps, training={"schedule": "step",
                                                      "step_decay_epochs": [3, 9]})
    assert plots.learning_rate_drops([configured]) == [3]  # within the 5 epochs run


@pytest.mark.parametrize("eval_losses, log_axis", [
    ((48.0, 2.0, 0.7, 0.6), True),   # a first-epoch spike: values over a decade apart
    ((1.9, 1.2, 0.9, 0.8), False),   # an ordinary run: its axis would start below 0 with margins
])
def test_the_eval_loss_axis_is_logarithmic_when_the_losses_span_a_decade(tmp_path, eval_losses,
                                                                           log_axis):
    from resnet_ablation import plots

    run = history(RESNET, 0, [0.5, 0.6, 0.7, 0.75])
    run = dataclasses.replace(run, epochs=tuple(
        dataclasses.replace(e, val_loss=loss) for e, loss in zip(run.epochs, eval_losses)))
    svg = plots.plot_loss_curves([run], tmp_path / "curves.png").with_suffix(".svg").read_text()
    assert ("eval loss (cross-entropy, log)" in svg) is log_axis
    assert ("eval loss (cross-entropy)" in svg) is not log_axis
    assert plots.spans_decades(np.array([np.nan, 0.5, 6.0])) and not plots.spans_decades(
        np.array([-0.1, 5.0, np.nan]))


@pytest.mark.slow
def test_every_figure_speaks_one_line_style(tmp_path):
    """In each figure's SVG, a model's line is solid if residual, dashed if plain, and has its
    twin's colour; depths differ in colour."""
    runs = [comparison.RunResult(history(name, seed, [0.3 + 0.1 * seed, 0.5]), predictions(120),
                               responses=LayerResponses(("a_bn", "b_bn"), (1.0, 0.5), EVAL_IDS))
            for name in (RESNET, PLAIN, "cifar_resnet56", "cifar_plain56") for seed in (0, 1)]
    _, paths = report.render(runs, tmp_path)
    colours = {}
    for key in ("errors", "curves", "responses"):
        root = ElementTree.parse(paths[f"{key}_svg"]).getroot()
        lines = {g.get("id").split("-", 1)[1]: next(g.iter(f"{SVG}path")).get("style")
                 for g in root.iter(f"{SVG}g") if re.search(r"-cifar_\w+$", g.get("id", ""))}
        assert set(lines) == {RESNET, PLAIN, "cifar_resnet56", "cifar_plain56"}, key
        for name, style in lines.items():
            assert ("stroke-dasharray" in style) == ("plain" in name), (key, name, style)
            assert "stroke-width: 2" in style
            colour = re.search(r"stroke: (#[0-9a-f]{6})", style).group(1)
            assert colours.setdefault(name.replace("plain", "resnet"), colour) == colour
    assert colours[RESNET] != colours["cifar_resnet56"]


def test_the_terminal_summary_wraps_and_shows_no_markup():
    results = _residual_pair(150, 100) + _residual_pair(140, 110, seed=1)
    rows = comparison.rows(results)
    content = {"rows": rows, "summary": comparison.summarize(rows),
               "verdicts": comparison.verdicts(results), "provenance": _provenance(),
               "warnings": ["train: 2 file(s) skipped as truncated"]}
    text = report_files.terminal_summary(content, width=60)
    lines = text.splitlines()
    assert lines[:3] == ["Residual vs plain on imagefolder:cifar10/png — profile",
                         "cifar_cpu, seeds 0–1, 2026-11-27", ""]
    assert lines[3].split() == ["model", "seeds", "test", "error,", "%", "training", "error,",
                                "%"]
    content["data"] = {"examples": {"train": 2000, "eval": 500}, "eval_split": "test"}
    content["provenance"] = {**_provenance(), "precision": ["float32"],
                             "training devices": ["CPU: AMD EPYC (2 cores)"]}
    lines = report_files.terminal_summary(content, width=60).splitlines()
    assert lines[2:5] == ["2,000 train and 500 test images · precision float32 · CPU:",
                          "AMD EPYC (2 cores)", ""]
    assert all(len(line) <= 60 for line in lines)
    assert "Verdicts:" in lines and "Data warnings:" in lines and "![" not in text
    for verdict in content["verdicts"]:
        assert f"- {verdict['sentence']}" in " ".join(text.split())


# --------------------------------------------------------------------------- in a pipeline


def _importer(name, uri, artifact_type, **properties):
    from tfx.dsl.components.common.importer import Importer

    return Importer(source_uri=str(uri), artifact_type=artifact_type,
                    custom_properties=properties).with_id(name)


def _put_model_run(store, uri, model, seed, state):
    """Registers a ModelRun straight in MLMD, newer than everything before it."""
    from ml_metadata.proto import metadata_store_pb2

    artifact = metadata_store_pb2.Artifact(
        type_id=store.get_artifact_type("ModelRun").id, uri=str(uri), state=state)
    artifact.custom_properties["model_name"].string_value = model
    artifact.custom_properties["seed"].int_value = seed
    store.put_artifacts([artifact])


def _report_pipeline(evaluations, tmp_path, root):
    """Importers stand in for two Trainers and two Evaluators; the report takes a list of the
    run channels (as the pipeline passes them) and a union of the evaluation channels."""
    from tfx.orchestration import metadata, pipeline
    from tfx.types import channel_utils

    runs = [_importer(f"run_{h.model}", model_run(tmp_path / h.model, h, p, False).uri,
                      standard_artifacts.ModelRun, model_name=h.model, seed=0)
            for h, p in RUNS[:2]]
    evals = [_importer(f"eval_{PLAIN}", evaluations[PLAIN].uri,
                       standard_artifacts.ModelEvaluation, model_name=PLAIN, seed=0),
             _importer(f"eval_{RESNET}", evaluations[RESNET].uri,
                       standard_artifacts.ModelEvaluation, model_name=RESNET, seed=0,
                       baseline_model_name=PLAIN)]
    node = report.AblationReport(
        model_runs=[r.outputs["result"] for r in runs],
        evaluations=channel_utils.union([e.outputs["result"] for e in evals]))
    assert sorted(node.inputs) == ["evaluations_0", "evaluations_1", "model_runs_0", "model_runs_1"]
    return pipeline.Pipeline(
        pipeline_name="report-test", pipeline_root=str(root), components=[*runs, *evals, node],
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")))


@pytest.mark.slow
def test_pipeline_runs_report_and_rerenders_from_mlmd(evaluations, tmp_path):
    """LocalDagRunner runs the report on its list inputs; study_merge.render_report then
    re-reads MLMD and keeps the newest LIVE ModelRun per (model, seed)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    root = tmp_path / "pipeline"
    LocalDagRunner().run(_report_pipeline(evaluations, tmp_path, root))

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite")))
    [published] = store.get_artifacts_by_type(report.AblationReportArtifact.TYPE_NAME)
    assert published.custom_properties["rows"].int_value == 2
    assert "residual better" in published.custom_properties["verdicts"].string_value
    in_pipeline = _csv_rows(published)
    assert float(in_pipeline[(RESNET, 0)]["val_accuracy"]) == tfma_accuracy(evaluations[RESNET])
    page = pathlib.Path(published.uri, "report.html").read_text()
    run_id = json.loads(pathlib.Path(published.uri, "ablation.json").read_text())[
        "provenance"]["pipeline run id"]
    assert run_id != "unknown" and run_id in page

    newer = dataclasses.replace(RUNS[1][0], params=999)
    _put_model_run(store, model_run(tmp_path / "newer", newer, RUNS[1][1], False).uri, PLAIN, 0,
                   metadata_store_pb2.Artifact.LIVE)
    _put_model_run(store, tmp_path / "missing", RESNET, 0, metadata_store_pb2.Artifact.PENDING)
    paths = study_merge.render_report(str(root))
    assert paths["csv"] == root / "report" / "ablation.csv"
    rerendered = _csv_rows(paths["csv"].parent)
    assert sorted(rerendered) == [(PLAIN, 0), (RESNET, 0)]
    assert rerendered[(PLAIN, 0)]["params"] == "999"  # the newest LIVE run; PENDING ignored
    for name in (RESNET, PLAIN):
        assert float(rerendered[(name, 0)]["val_accuracy"]) == tfma_accuracy(evaluations[name])
    seconds = json.loads(paths["json"].read_text())["provenance"]["component_seconds"]
    assert "AblationReport" in seconds and all(s >= 0 for s in seconds.values())


@pytest.mark.slow
def test_ablation_report_of_a_root_with_evaluations_prints_no_deprecation_notice(evaluations,
                                                                                tmp_path):
    """TFMA reads its results with TensorFlow's deprecated tf_record_iterator, whose four-line
    notice every `ablation report` of a root with evaluations printed on success: dropped."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    root = tmp_path / "pipeline"
    LocalDagRunner().run(_report_pipeline(evaluations, tmp_path, root))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", str(root), "--output",
         str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "ablation.csv").exists()
    assert not [line for line in done.stderr.splitlines() if "deprecat" in line.lower()], (
        done.stderr)


def test_report_compiles_for_kubeflow_v2(evaluations, tmp_path):
    """Kubeflow V2 accepts only single-channel inputs and namespaced custom type names."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kubeflow_v2

    runner = kubeflow_v2.KubeflowV2DagRunner(
        config=kubeflow_v2.KubeflowV2DagRunnerConfig(default_image="resnet-ablation:test"),
        output_dir=str(tmp_path), output_filename="pipeline.json")
    runner.run(_report_pipeline(evaluations, tmp_path, tmp_path / "root"), write_out=True)
    spec = json.loads((tmp_path / "pipeline.json").read_text())["pipelineSpec"]
    inputs = spec["root"]["dag"]["tasks"]["AblationReport"]["inputs"]["artifacts"]
    assert sorted(inputs) == ["evaluations_0", "evaluations_1", "model_runs_0", "model_runs_1"]


def test_render_report_without_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.sqlite"):
        study_merge.render_report(str(tmp_path))


def _root_report(root, seed, correct, **fields):
    """What a shard root with one residual/plain pair of `seed` gives the report."""
    runs = [comparison.RunResult(
        history(name, seed, (0.4, acc)), predictions(int(acc * EVAL_IDS)),
        metrics={"accuracy": acc, "example_count": float(EVAL_IDS)},
        responses=LayerResponses(("a_bn", "b_bn"), (1.0, 0.5), EVAL_IDS))
        for name, acc in ((RESNET, correct[0]), (PLAIN, correct[1]))]
    config = {"data": "imagefolder:x", "first_seed": seed, "pipeline_root": str(root),
              "training": {"epochs": 2}}
    return study_merge.RootReport(str(root), runs, {"examples": {"train": 64, "eval": EVAL_IDS}},
                                json.dumps(config, indent=2, sort_keys=True), "abc123",
                                f"run-{seed}", {"Trainer": 12.5}, **fields)


def test_a_published_shard_gives_back_its_report_inputs(tmp_path):
    """publish_runs writes small files from which read_published rebuilds the same inputs;
    published shards merge like roots, and re-publishing them rewrites the same bytes."""
    parts = [_root_report(tmp_path / f"seed{s}", s, acc, notes=note) for s, acc, note in (
        (0, (0.9, 0.6), "reconstructed"), (1, (0.8, 0.65), ""))]
    folders = [tmp_path / "published" / "runs" / f"seed{s}" for s in (0, 1)]
    for part, folder in zip(parts, folders):
        written = study_merge.publish_runs(part, folder)
        seed = part.results[0].history.seed
        assert sorted(p.name for p in written if p.parent == folder) == sorted(
            [study_merge.SHARD_FILE] + [f"{m}_seed{seed}.{kind}"
                                      for m in (RESNET, PLAIN) for kind in study_merge.RUN_FILES])
        # and each run's TensorBoard events, written from its history
        board = folder / study_merge.TENSORBOARD
        assert sorted(p.relative_to(board).parts[0] for p in written if board in p.parents) == \
            sorted([f"{m}_seed{seed}" for m in (RESNET, PLAIN)] * 2)  # events + digest each
        back = study_merge.read_published(str(folder))
        assert back.results == sorted(part.results, key=lambda r: r.history.model)
        assert (back.data, back.config_json, back.code_version, back.run_name,
                back.component_seconds, back.notes) == (
            part.data, part.config_json, part.code_version, part.run_name,
            part.component_seconds, part.notes)
    before = {p: p.read_bytes() for p in (tmp_path / "published").rglob("*") if p.is_file()}

    paths = study_merge.render_report([str(f) for f in folders], str(tmp_path / "published"),
                                    publish=True)
    after = {p: p.read_bytes() for p in (tmp_path / "published" / "runs").rglob("*")
             if p.is_file()}
    assert after == before
    merged = json.loads(paths["json"].read_text())
    [test] = [v for v in merged["verdicts"] if v["split"] == "test"]
    assert test["seeds"] == 2 and test["gap"] == pytest.approx((0.3 + 0.15) / 2)
    assert merged["provenance"]["shard notes"] == {"seed0": "reconstructed"}
    assert merged["provenance"]["configuration fingerprint"] == hashlib.sha256(
        parts[0].config_json.encode()).hexdigest()[:12]


def test_a_shard_published_with_histories_only_still_merges(tmp_path):
    """A shard folder holding only histories (its predictions were not kept) merges: its
    accuracies come from the histories, the other shard's from its Evaluator metrics."""
    full = _root_report(tmp_path / "seed1", 1, (0.8, 0.65))
    folder = tmp_path / "runs" / "seed0"
    study_merge.publish_runs(_root_report(tmp_path / "seed0", 0, (0.9, 0.6)), folder)
    for path in folder.glob("*"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != study_merge.SHARD_FILE and not path.name.endswith(".history.json"):
            path.unlink()
    study_merge.publish_runs(full, tmp_path / "runs" / "seed1")
    paths = study_merge.render_report([str(folder), str(tmp_path / "runs" / "seed1")],
                                    str(tmp_path / "merged"))
    rows = _csv_rows(paths["csv"].parent)
    assert float(rows[(RESNET, 0)]["val_accuracy"]) == pytest.approx(0.9)  # the history's
    assert rows[(RESNET, 0)]["mcnemar_p"] == ""  # no predictions, no paired test
    assert float(rows[(RESNET, 1)]["mcnemar_p"]) < 0.05


def test_twins_trained_in_separate_shards_are_compared_paired(tmp_path):
    """A pair too long for one session runs as one net per shard: merged, the residual net of
    one shard and its plain twin of the other give the same rows and paired verdict as one
    shard holding both."""
    both = _root_report(tmp_path / "pair-seed0", 0, (0.9, 0.6))
    folders = [tmp_path / "runs" / f"{model}-seed0" for model in (RESNET, PLAIN)]
    for model, folder in zip((RESNET, PLAIN), folders):
        study_merge.publish_runs(dataclasses.replace(both, root=str(tmp_path / folder.name), results=[
            r for r in both.results if r.history.model == model]), folder)
    split = json.loads(study_merge.render_report(list(map(str, folders)), str(tmp_path / "split"))
                       ["json"].read_text())
    study_merge.publish_runs(both, tmp_path / "runs" / "pair-seed0")
    whole = json.loads(study_merge.render_report(
        [str(tmp_path / "runs" / "pair-seed0")], str(tmp_path / "whole"))["json"].read_text())
    [test] = [v for v in split["verdicts"] if v["split"] == "test"]
    assert test["gap"] == pytest.approx(0.3) and test["seeds"] == 1
    assert split["rows"] == whole["rows"] and split["verdicts"] == whole["verdicts"]
    assert all(row["mcnemar_p"] is not None for row in split["rows"]
               if row["model"] == RESNET)


def test_a_folder_that_is_neither_root_nor_shard(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.sqlite"):
        study_merge.read_part(str(tmp_path))
    (tmp_path / study_merge.SHARD_FILE).write_text("{}")
    with pytest.raises(ValueError, match="holds no <model>_seed<k>.history.json"):
        study_merge.read_part(str(tmp_path))


def _with(part: study_merge.RootReport, data: str | None = None, content: str | None = None,
          precision: str | None = None) -> study_merge.RootReport:
    """`part` with its data read from `data`, its splits' content digests and its precision."""
    config = json.loads(part.config_json)
    config["data"] = data or config["data"]
    summary = dict(part.data)
    if content:
        summary["content_sha256"] = {"train": content, "eval": content + "-eval"}
        summary["source"] = config["data"]
    results = [dataclasses.replace(r, history=dataclasses.replace(
        r.history, precision=precision or r.history.precision)) for r in part.results]
    return dataclasses.replace(part, config_json=json.dumps(config), data=summary,
                               results=results)


@pytest.mark.slow
def test_shards_merge_by_data_content_and_precision_not_by_path(tmp_path):
    """The same images read from another path merge (and the provenance says where each shard
    read them); other images, or another precision, are refused naming the difference."""
    here = _with(_root_report(tmp_path / "seed0", 0, (0.9, 0.6)), "imagefolder:/a/png", "c1")
    elsewhere = _with(_root_report(tmp_path / "seed1", 1, (0.8, 0.65)), "imagefolder:/b/png", "c1")
    for index, part in enumerate((here, elsewhere)):
        study_merge.publish_runs(part, tmp_path / "runs" / f"seed{index}")
    folders = [str(tmp_path / "runs" / f"seed{index}") for index in (0, 1)]
    paths = study_merge.render_report(folders, str(tmp_path / "merged"))
    provenance = json.loads(paths["json"].read_text())["provenance"]
    assert provenance["data read from"] == {"seed0": "imagefolder:/a/png",
                                            "seed1": "imagefolder:/b/png"}

    other_images = _with(elsewhere, content="c2")
    with pytest.raises(ValueError, match=r"seed1 trained on other data than .*seed0: the images "
                                         r"of split\(s\) eval, train differ in content"):
        study_merge._check_one_study([here, other_images])
    bfloat16 = _with(elsewhere, precision="mixed_bfloat16")
    with pytest.raises(ValueError, match=r"the runs trained in different precisions: float32 "
                                         r"\(cifar_\w+ seed 0 in .*seed0\) vs mixed_bfloat16 "
                                         r"\(cifar_\w+ seed 1 in .*seed1\)"):
        study_merge._check_one_study([here, bfloat16])
    # without content digests on both sides (shards ingested before they were kept) the path
    # is still compared
    with pytest.raises(ValueError, match="data is \"imagefolder:/a/png\" vs \"imagefolder:/b/png\""):
        study_merge._check_one_study([_with(here), _with(_root_report(tmp_path / "s1", 1, (0.8, 0.6)),
                                                       "imagefolder:/b/png")])
