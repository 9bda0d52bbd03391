"""The ablation report: pure row/summary/verdict logic, and the TFX component on real artifacts.

The evaluations are real: two tiny tf_keras classifiers (standing in for cifar_resnet20 and
cifar_plain20) are trained on a synthetic 3-class problem, saved with a ``serving_default``
signature over serialized tf.Examples, and evaluated by the TFX Evaluator executor (TFMA 0.52),
the plain one alone and the residual one against the plain one as baseline, as the pipeline does.
"""

import base64
import csv
import json
import math
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from PIL import Image
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import report
from components.keras_lib import keras
from components.model_specs import get_spec

EXPECTED_COLUMNS = ["model", "family", "depth", "residual", "params", "epochs", "seed",
                    "train_loss", "val_loss", "val_accuracy", "best_val_accuracy",
                    "delta_vs_plain", "images_per_second"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESNET, PLAIN = "cifar_resnet20", "cifar_plain20"


# --------------------------------------------------------------------------- helpers


def history(model, seed, val_accuracy, images_per_second=(100.0, 120.0, 400.0), params=1234):
    """A history.json dict: one epoch per value of `val_accuracy`."""
    spec = get_spec(model)
    epochs = [{"epoch": i + 1, "train_loss": 2.0 - 0.25 * i, "train_accuracy": acc,
               "val_loss": 1.9 - 0.2 * i, "val_accuracy": acc, "learning_rate": 0.1,
               "seconds": 3.0, "images_per_second": ips}
              for i, (acc, ips) in enumerate(zip(val_accuracy, images_per_second))]
    return {"model": model, "family": spec.family, "depth": spec.depth,
            "residual": spec.residual, "params": params, "seed": seed, "batch_size": 8,
            "image_size": 32, "epochs": epochs}


def row(model, seed, val_accuracy, **overrides):
    """A report row as rows_from makes it, with only what summarize/verdicts read."""
    spec = get_spec(model)
    base = {"model": model, "family": spec.family, "depth": spec.depth,
            "residual": "true" if spec.residual else "false", "params": 10, "epochs": 5,
            "seed": seed, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": val_accuracy,
            "best_val_accuracy": val_accuracy, "delta_vs_plain": None, "images_per_second": 50.0}
    return {**base, **overrides}


def model_run(directory, hist, with_properties=True):
    """A ModelRun artifact whose URI holds `hist` as history.json."""
    artifact = standard_artifacts.ModelRun()
    artifact.uri = str(directory)
    pathlib.Path(directory).mkdir(parents=True)
    (pathlib.Path(directory) / "history.json").write_text(json.dumps(hist))
    if with_properties:
        artifact.set_string_custom_property("model_name", hist["model"])
        artifact.set_int_custom_property("seed", hist["seed"])
    return artifact


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


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


def _eval_config(name, baseline_name=None):
    """Shaped like the pipeline's: model specs named after the models, explicit metrics."""
    def spec(model, is_baseline=False):
        return tfma.ModelSpec(name=model, label_key="label", prediction_key="probabilities",
                              signature_name="serving_default", is_baseline=is_baseline)

    metrics = [tfma.MetricConfig(class_name="ExampleCount"),
               tfma.MetricConfig(class_name="SparseCategoricalAccuracy",
                                 config='{"name": "accuracy"}'),
               tfma.MetricConfig(class_name="SparseCategoricalCrossentropy",
                                 config='{"name": "loss"}')]
    specs = [spec(name)] + ([spec(baseline_name, True)] if baseline_name else [])
    return tfma.EvalConfig(model_specs=specs, slicing_specs=[tfma.SlicingSpec()],
                           metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def _evaluate(directory, examples, name, model, baseline=None):
    """Runs the TFX Evaluator executor on `model` named `name` (against `baseline`, a
    (name, model) pair); returns its ModelEvaluation with the pipeline's custom properties."""
    config = _eval_config(name, baseline and baseline[0])
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(directory)
    evaluation.set_string_custom_property("model_name", name)
    evaluation.set_string_custom_property("baseline_model_name", baseline[0] if baseline else "")
    evaluation.set_int_custom_property("seed", 0)
    inputs = {"examples": [examples], "model": [model]}
    if baseline:
        inputs["baseline_model"] = [baseline[1]]
    evaluator_executor.Executor().Do(
        inputs, {"evaluation": [evaluation], "blessing": [standard_artifacts.ModelBlessing()]},
        {"eval_config": proto_utils.proto_to_json(config)})
    return evaluation


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


RUN_HISTORIES = [
    history(RESNET, 0, [0.3, 0.6, 0.5]),
    history(PLAIN, 0, [0.2, 0.4, 0.45]),
    history(RESNET, 1, [0.35, 0.65, 0.7], images_per_second=(10.0, 30.0, 20.0)),
    history(PLAIN, 1, [0.25, 0.5, 0.55]),
]


@pytest.fixture(scope="module")
def component_output(evaluations, tmp_path_factory):
    """Runs the AblationReport executor on four ModelRuns (two seeds) and the evaluations."""
    root = tmp_path_factory.mktemp("report")
    runs = [model_run(root / f"run{i}", h) for i, h in enumerate(RUN_HISTORIES)]
    output = report.AblationReportArtifact()
    output.uri = str(root / "report")
    report.AblationReportExecutor().Do(
        {"model_runs_0": runs[:2], "model_runs_1": runs[2:],  # one key per upstream channel
         "evaluations_0": [evaluations[PLAIN]], "evaluations_1": [evaluations[RESNET]]},
        {"report": [output]}, {})
    return output


def test_csv_header_order_is_exact(component_output):
    header = read_csv(pathlib.Path(component_output.uri) / "ablation.csv")[0]
    assert header[:len(EXPECTED_COLUMNS)] == EXPECTED_COLUMNS


def test_one_row_per_variant_and_seed(component_output):
    rows = read_csv(pathlib.Path(component_output.uri) / "ablation.csv")[1:]
    assert sorted((r[0], r[6]) for r in rows) == [
        (PLAIN, "0"), (PLAIN, "1"), (RESNET, "0"), (RESNET, "1")]


def _csv_rows(output):
    """CSV rows keyed by (model, seed); `output` is an artifact (TFX or MLMD) or a directory."""
    directory = pathlib.Path(getattr(output, "uri", output))
    with open(directory / "ablation.csv", newline="") as handle:
        return {(r["model"], int(r["seed"])): r for r in csv.DictReader(handle)}


def test_accuracies_are_the_evaluators_own_values(component_output, evaluations):
    rows = _csv_rows(component_output)
    for name in (RESNET, PLAIN):
        expected = tfma_accuracy(evaluations[name])
        assert float(rows[(name, 0)]["val_accuracy"]) == expected
        assert rows[(name, 0)]["val_source"] == "evaluator"
    # The two evaluated models must differ, or the delta checks below prove nothing.
    assert tfma_accuracy(evaluations[RESNET]) - tfma_accuracy(evaluations[PLAIN]) > 0.1


def test_without_an_evaluation_the_history_is_used(component_output):
    rows = _csv_rows(component_output)
    assert float(rows[(RESNET, 1)]["val_accuracy"]) == 0.7
    assert float(rows[(PLAIN, 1)]["val_accuracy"]) == 0.55
    assert rows[(RESNET, 1)]["val_source"] == "history"


def test_delta_vs_plain_is_the_difference(component_output, evaluations):
    rows = _csv_rows(component_output)
    delta = float(rows[(RESNET, 0)]["delta_vs_plain"])
    assert delta == pytest.approx(
        tfma_accuracy(evaluations[RESNET]) - tfma_accuracy(evaluations[PLAIN]), abs=1e-12)
    # TFMA's own candidate-minus-baseline diff agrees (it is computed in float32).
    assert delta == pytest.approx(float(rows[(RESNET, 0)]["eval_accuracy_diff"]), abs=1e-6)
    assert float(rows[(RESNET, 1)]["delta_vs_plain"]) == pytest.approx(0.7 - 0.55, abs=1e-12)
    assert rows[(PLAIN, 0)]["delta_vs_plain"] == rows[(PLAIN, 1)]["delta_vs_plain"] == ""


def test_best_accuracy_and_median_throughput(component_output):
    rows = _csv_rows(component_output)
    assert float(rows[(RESNET, 0)]["best_val_accuracy"]) == 0.6  # not the final 0.5
    assert float(rows[(RESNET, 0)]["images_per_second"]) == 120.0  # median, not mean 206.7
    assert float(rows[(RESNET, 1)]["images_per_second"]) == 20.0
    assert rows[(RESNET, 0)]["residual"] == "true" and rows[(PLAIN, 0)]["residual"] == "false"
    assert rows[(RESNET, 0)]["epochs"] == "3" and rows[(RESNET, 0)]["depth"] == "20"


def test_curves_png_is_a_real_image(component_output):
    png = pathlib.Path(component_output.uri) / "curves.png"
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size[0] > 0 and image.size[1] > 0


def test_html_is_self_contained(component_output):
    directory = pathlib.Path(component_output.uri)
    page = (directory / "report.html").read_text()
    assert "<table>" in page and f"<td>{RESNET}</td>" in page
    assert "beats cifar_plain20" in page
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match, "curves.png is not embedded as a data URI"
    assert base64.b64decode(match.group(1)) == (directory / "curves.png").read_bytes()
    assert not re.search(r'(src|href)="(?!data:)', page), "the page links an external file"


def test_markdown_json_and_artifact_properties(component_output):
    directory = pathlib.Path(component_output.uri)
    markdown = (directory / "ablation.md").read_text()
    assert "| " + " | ".join(EXPECTED_COLUMNS) in markdown
    assert "## Mean ± std over seeds" in markdown
    assert "cifar_resnet20 beats cifar_plain20 by" in markdown
    data = json.loads((directory / "ablation.json").read_text())
    assert data["columns"][:len(EXPECTED_COLUMNS)] == EXPECTED_COLUMNS
    assert len(data["rows"]) == 4 and len(data["summary"]) == 2 and len(data["verdicts"]) == 1
    assert component_output.get_int_custom_property("rows") == 4
    table = component_output.get_string_custom_property("markdown_table")
    assert table.splitlines()[0] == "| " + " | ".join(EXPECTED_COLUMNS) + " |"
    assert len(table.splitlines()) == 2 + 4
    assert component_output.get_string_custom_property("verdicts") == data["verdicts"][0]


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

    runs = [_importer(f"run_{h['model']}", model_run(tmp_path / h["model"], h, False).uri,
                      standard_artifacts.ModelRun, model_name=h["model"], seed=0)
            for h in RUN_HISTORIES[:2]]
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


def test_pipeline_runs_report_and_rerenders_from_mlmd(evaluations, tmp_path):
    """LocalDagRunner runs the report on its list inputs; render_from_pipeline_root then
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
    assert "beats cifar_plain20" in published.custom_properties["verdicts"].string_value
    in_pipeline = _csv_rows(published)
    assert float(in_pipeline[(RESNET, 0)]["val_accuracy"]) == tfma_accuracy(evaluations[RESNET])

    newer = history(PLAIN, 0, [0.2, 0.4, 0.45], params=999)
    _put_model_run(store, model_run(tmp_path / "newer", newer, False).uri, PLAIN, 0,
                   metadata_store_pb2.Artifact.LIVE)
    _put_model_run(store, tmp_path / "missing", RESNET, 0, metadata_store_pb2.Artifact.PENDING)
    paths = report.render_from_pipeline_root(root)
    assert paths["csv"] == root / "report" / "ablation.csv"
    rerendered = _csv_rows(paths["csv"].parent)
    assert sorted(rerendered) == [(PLAIN, 0), (RESNET, 0)]
    assert rerendered[(PLAIN, 0)]["params"] == "999"  # the newest LIVE run; PENDING ignored
    for name in (RESNET, PLAIN):
        assert float(rerendered[(name, 0)]["val_accuracy"]) == tfma_accuracy(evaluations[name])


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


def test_render_from_pipeline_root_without_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.sqlite"):
        report.render_from_pipeline_root(tmp_path)


# --------------------------------------------------------------------------- pure functions


def test_summarize_mean_and_sample_std():
    rows = [row(RESNET, 0, 0.6, delta_vs_plain=0.1, images_per_second=10.0),
            row(RESNET, 1, 0.7, delta_vs_plain=0.3, images_per_second=20.0),
            row(RESNET, 2, 0.8, delta_vs_plain=None, images_per_second=60.0),
            row(PLAIN, 0, 0.5)]
    resnet, plain = report.summarize(rows)
    assert (resnet["model"], resnet["seeds"], plain["seeds"]) == (RESNET, 3, 1)
    assert resnet["val_accuracy_mean"] == pytest.approx(0.7)
    assert resnet["val_accuracy_std"] == pytest.approx(0.1)  # ddof=1; population std is 0.0816
    assert resnet["images_per_second_mean"] == pytest.approx(30.0)
    assert resnet["images_per_second_std"] == pytest.approx(math.sqrt(700))
    assert resnet["delta_vs_plain_mean"] == pytest.approx(0.2)  # over the two non-empty values
    assert resnet["delta_vs_plain_std"] == pytest.approx(math.sqrt(0.02))
    assert plain["val_accuracy_mean"] == 0.5 and plain["val_accuracy_std"] is None
    assert plain["delta_vs_plain_mean"] is None


def test_summarize_keeps_different_training_lengths_apart():
    summary = report.summarize([row(RESNET, 0, 0.6, epochs=5), row(RESNET, 1, 0.9, epochs=10)])
    assert [(s["epochs"], s["seeds"]) for s in summary] == [(5, 1), (10, 1)]


def test_rows_from_prefers_the_evaluation_and_pairs_twins_by_seed():
    histories = [history(RESNET, 0, [0.5, 0.6]), history(PLAIN, 0, [0.4, 0.5]),
                 history(RESNET, 1, [0.5, 0.7]), history("resnet18", 0, [0.1, 0.2])]
    rows = report.rows_from(histories, {(PLAIN, 0): {"accuracy": 0.25, "loss": 3.5}})
    by_key = {(r["model"], r["seed"]): r for r in rows}
    assert list(rows[0])[:len(EXPECTED_COLUMNS)] == EXPECTED_COLUMNS
    assert [(r["model"], r["seed"]) for r in rows] == [
        (PLAIN, 0), (RESNET, 0), (RESNET, 1), ("resnet18", 0)]  # family, depth, plain first
    assert by_key[(PLAIN, 0)]["val_accuracy"] == 0.25 and by_key[(PLAIN, 0)]["val_loss"] == 3.5
    assert by_key[(RESNET, 0)]["delta_vs_plain"] == pytest.approx(0.6 - 0.25)
    assert by_key[(RESNET, 1)]["delta_vs_plain"] is None  # no plain run with seed 1
    assert by_key[("resnet18", 0)]["delta_vs_plain"] is None


def test_rows_from_rejects_percentages_duplicates_and_mismatched_lengths():
    with pytest.raises(ValueError, match="fraction"):
        report.rows_from([history(RESNET, 0, [50.0, 60.0])], {})
    with pytest.raises(ValueError, match="more than one history"):
        report.rows_from([history(RESNET, 0, [0.5]), history(RESNET, 0, [0.6])], {})
    rows = report.rows_from([history(RESNET, 0, [0.5, 0.6]), history(PLAIN, 0, [0.4])], {})
    assert rows[1]["delta_vs_plain"] is None  # 2 epochs against 1: not comparable


def rows_of(*runs):
    """rows_from over two-epoch histories; each run is (model, seed, final val_accuracy)."""
    return report.rows_from([history(m, seed, [0.1, acc]) for m, seed, acc in runs], {})


def test_verdicts_state_direction_size_and_noise():
    beats = report.verdicts(rows_of(*[(RESNET, s, 0.80 + 0.01 * s) for s in range(3)],
                                    *[(PLAIN, s, 0.70) for s in range(3)]))
    assert beats == [
        "cifar_resnet20 beats cifar_plain20 by 11.00 points of validation accuracy after "
        "2 epochs (mean of 3 seeds: 81.00% ± 1.00 vs 70.00% ± 0.00; per-seed gap "
        "+11.00 ± 1.00 points)."]
    noisy = report.verdicts(rows_of(("resnet34", 0, 0.60), ("resnet34", 1, 0.70),
                                    ("plain34", 0, 0.66), ("plain34", 1, 0.66)))[0]
    assert noisy.startswith("resnet34 trails plain34 by 1.00 points")
    assert "within one standard deviation" in noisy
    single = report.verdicts(rows_of((RESNET, 0, 0.5), (PLAIN, 0, 0.5)))[0]
    assert single.startswith("cifar_resnet20 ties with cifar_plain20 on validation accuracy")
    assert "single seed" in single
    unpaired = report.verdicts(rows_of(("plain50", 0, 0.4), ("resnet50", 1, 0.5)))
    assert unpaired == ["plain50 has no resnet50 twin trained for 2 epochs with the same seed, "
                        "so there is no comparison at this depth."]
    assert len(report.verdicts(rows_of(("plain50", 0, 0.4), (RESNET, 0, 0.4)))) == 2
    one_epoch = report.rows_from([history(RESNET, 0, [0.5]), history(PLAIN, 0, [0.5])], {})
    assert "after 1 epoch (" in report.verdicts(one_epoch)[0]


def test_non_finite_history_values_are_missing():
    broken = history(RESNET, 0, [0.3, 0.6, 0.5])
    broken["epochs"][1]["val_accuracy"] = math.nan
    broken["epochs"][2]["val_accuracy"] = math.nan
    resnet, plain = report.rows_from([broken, history(PLAIN, 0, [0.2, 0.3, 0.4])], {})[::-1]
    assert resnet["val_accuracy"] is None and resnet["best_val_accuracy"] == 0.3
    assert resnet["delta_vs_plain"] is None
    json.dumps(resnet, allow_nan=False)  # the report's JSON stays valid JSON


def test_markdown_table_formats_cells():
    table = report.markdown_table([row(RESNET, 0, 0.123456, params=269722)])
    header, rule, line = table.splitlines()
    assert header == "| " + " | ".join(EXPECTED_COLUMNS) + " |"
    assert rule == "|" + "---|" * len(EXPECTED_COLUMNS)
    assert "| 269,722 |" in line and "| 0.1235 |" in line and "| 50.0 |" in line
