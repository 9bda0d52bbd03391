"""The compiled pipeline end to end in real containers, with KFP's own local runner.

Run by ``make test-kubeflow`` (which first makes sure a Docker daemon answers and the base image
exists: kubeflow/ensure_docker.sh, kubeflow/make_base_image.sh); skipped otherwise. The commands
are the ones kubeflow/README.md gives, run as subprocesses:

1. ``python kubeflow/build_image.py --base-image resnet-ablation-base:bookworm --cuda 0``: the
   CPU image, tagged by content (an image with the same tag is reused);
2. ``python kubeflow/runner.py --output spec.yaml --profile smoke --models
   cifar_resnet20,cifar_plain20 --epochs 1 --train-limit 256 --image IMAGE --pipeline-root
   gs://... --gpus 0``: the smoke study, one epoch, two CIFAR nets (10 tasks);
3. ``python -m kubeflow.local_run spec.yaml --pipeline-root DIR``: every task in its container
   (no network), input artifacts typed ``system.Artifact`` as open-source KFP hands them;

then reads the AblationReport artifact's ablation.csv.
"""

import csv
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("KUBEFLOW_CONTAINER_TESTS") != "1",
    reason="needs Docker: run by `make test-kubeflow` (KUBEFLOW_CONTAINER_TESTS=1)")

REPO = pathlib.Path(__file__).resolve().parents[1]
BASE_IMAGE = os.environ.get("KUBEFLOW_BASE_IMAGE", "resnet-ablation-base:bookworm")
MODELS = ("cifar_resnet20", "cifar_plain20")
TRAIN_LIMIT = 256
EVAL_IMAGES = 500  # data/cifar10_smoke/test
ROOT = "gs://compiled-root-unused-by-kfp-local/resnet-ablation"
TIMINGS: dict[str, float] = {}


def _run(step: str, command: list[str], timeout: int) -> str:
    """Runs `command` from the repository root, echoing its output; returns stdout + stderr."""
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    process.wait(timeout=timeout)
    TIMINGS[step] = time.monotonic() - start
    output = "".join(lines)
    assert process.returncode == 0, f"{step} failed ({process.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def image() -> str:
    output = _run("image", [sys.executable, "kubeflow/build_image.py", "--base-image",
                            BASE_IMAGE, "--cuda", "0"], timeout=1800)
    return output.strip().splitlines()[-1]


def test_the_smoke_study_runs_end_to_end_under_kfp_local(image, tmp_path):
    spec = tmp_path / "spec.yaml"
    _run("compile", [sys.executable, "kubeflow/runner.py", "--output", str(spec),
                     "--profile", "smoke", "--models", ",".join(MODELS), "--epochs", "1",
                     "--train-limit", str(TRAIN_LIMIT), "--image", image,
                     "--pipeline-root", ROOT, "--gpus", "0"], timeout=600)
    root = tmp_path / "kfp-root"
    output = _run("kfp.local run", [sys.executable, "-m", "kubeflow.local_run", str(spec),
                                    "--pipeline-root", str(root)], timeout=1800)
    print("\ntimings: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in TIMINGS.items()))

    [run_dir] = [path for path in root.iterdir() if path.is_dir()]
    assert output.count("finished with status \x1b[92mSUCCESS") == 11 or \
        output.count("SUCCESS") >= 11  # 10 tasks and the pipeline
    # every task with inputs got them typed system.Artifact and had them restored
    assert output.count("kubeflow.entrypoint: restored from the spec: input ") == 9
    # the Trainers' checkpoints went under this run's root, not the compiled gs:// root
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "er-cifar-plain20", "er-cifar-resnet20"]  # kfp.local's (trimmed) task folder names

    [report_csv] = run_dir.glob("*/report/ablation.csv")
    with report_csv.open() as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["model"] for row in rows) == sorted(MODELS)
    for row in rows:
        assert row["status"] == "ok", row
        assert int(row["epochs"]) == 1 and int(row["seed"]) == 0, row
        assert row["val_source"] == "evaluator", row  # TFMA's accuracy, from the Evaluator task
        assert int(float(row["eval_example_count"])) == EVAL_IMAGES, row
        for column in ("val_accuracy", "history_val_accuracy", "train_error", "eval_error"):
            assert 0.0 <= float(row[column]) <= 1.0, (column, row)
        assert float(row["eval_error"]) == pytest.approx(1 - float(row["val_accuracy"]))
    resnet = next(row for row in rows if row["model"] == "cifar_resnet20")
    assert resnet["residual"] == "true" and resnet["shortcut"] == "A"
    assert -1.0 <= float(resnet["delta_vs_plain"]) <= 1.0
    assert (report_csv.parent / "report.html").stat().st_size > 0
    # the image trains as a local run does: oneDNN on unless the pod's environment says not
    histories = [json.loads(path.read_text()) for path in run_dir.glob("*/model_run/history.json")]
    assert len(histories) == len(MODELS)
    assert all(history["onednn"] is True for history in histories), histories
