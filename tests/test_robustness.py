"""What users feed the ``ablation`` command: one line on stderr and the documented exit code
(2 usage or configuration, 1 data or runtime, 130 interrupted), never a traceback, quickly.

Every probe runs the real command in a child process, from an empty working directory."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE_DATA = REPO / "data" / "cifar10_smoke"
CONFIG_SECONDS = 30  # a configuration error is found before TensorFlow or TFX load
# TensorFlow 2.21's native runtime logs two INFO lines on import, whatever TF_CPP_MIN_LOG_LEVEL
# says ("oneDNN custom operations are on", "Could not find cuda drivers"): not ours to remove.
NATIVE_LOG = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl::InitializeLog)")


def ablation(*args: str, cwd: pathlib.Path, env: dict | None = None,
             timeout: float = 120) -> tuple[int, str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    return done.returncode, done.stderr, time.perf_counter() - started


PROBES = {  # name: (arguments, exit code, what the message must say)
    "empty image folder path": (["run", "--data", "imagefolder:"], 2, "invalid data 'imagefolder:'"),
    "missing image folder": (["run", "--data", "imagefolder:missing"], 2, "does not exist"),
    "tilde folder that does not exist": (["run", "--data", "imagefolder:~/no-such-folder-here"],
                                         2, os.path.expanduser("~/no-such-folder-here")),
    "bad tfds name": (["run", "--data", "tfds:Bad-Name"], 2, "invalid data 'tfds:Bad-Name'"),
    "unknown profile": (["run", "--profile", "nope"], 2, "unknown profile 'nope'"),
    "unknown tfds set": (["run", "--data", "tfds:no_such_set_here", "--pipeline-root", "root"], 2,
                         "unknown tfds data set 'no_such_set_here'"),
    "unbalanced quotes in beam args": (["run", "--beam-args", '"--x'], 2, "--beam-args"),
    "pipeline root in /proc": (["run", "--pipeline-root", "/proc/ablation"], 2,
                               "kernel file system"),
    "pipeline root in /sys": (["run", "--pipeline-root", "/sys/x"], 2, "kernel file system"),
    "huge image size": (["run", "--image-size", "10000"], 2, "above 1024"),
    "zero seeds": (["run", "--seeds", "0"], 2, "expected a positive integer, got '0'"),
    "unknown model": (["run", "--models", "resnet51"], 2, "unknown model(s) resnet51"),
    "report on a folder that is no pipeline root": (["report", "."], 1, "is it a pipeline root?"),
    "runs on a folder that is no pipeline root": (["runs", "."], 1, "is it a pipeline root?"),
    "merging without an output": (["report", "a", "b"], 2, "needs --output DIR"),
    "compile to a local root": (["compile", "--output", "x.yaml", "--image", "r/i:1"], 2,
                                "local path"),
}


@pytest.mark.parametrize("name", PROBES)
def test_user_errors_are_one_line_with_the_documented_exit_code(name, tmp_path):
    arguments, code, message = PROBES[name]
    returncode, stderr, seconds = ablation(*arguments, cwd=tmp_path)
    assert (returncode, "Traceback" in stderr) == (code, False), stderr
    *usage, last = [line for line in stderr.strip().splitlines() if not NATIVE_LOG.match(line)]
    assert message in last  # one line; argparse's usage lines may precede it, nothing else
    assert all(line.startswith(("usage: ", " ")) for line in usage), stderr
    assert seconds < CONFIG_SECONDS
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # wrote nothing


def test_debug_shows_the_traceback(tmp_path):
    returncode, stderr, _ = ablation("--debug", "run", "--data", "imagefolder:", cwd=tmp_path)
    assert returncode != 0 and "Traceback" in stderr and "ConfigError" in stderr
    returncode, stderr, _ = ablation("run", "--data", "imagefolder:", cwd=tmp_path,
                                     env={"ABLATION_DEBUG": "1"})
    assert "Traceback" in stderr


def _start_run(tmp_path: pathlib.Path) -> subprocess.Popen:
    """`ablation run` on the smoke images, returned once its first component is running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--data", f"imagefolder:{SMOKE_DATA}",
         "--pipeline-root", str(tmp_path / "root"), "--models", "cifar_resnet20", "--epochs", "1"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "root" / "metadata.sqlite").exists():
        time.sleep(0.5)
    time.sleep(2)
    return process


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    process = _start_run(tmp_path)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "ablation run: interrupted"
    assert not list((tmp_path / "root" / ".tmp").glob("*"))  # the run's temp dir is gone


def test_runs_shows_a_killed_run_as_interrupted(tmp_path):
    process = _start_run(tmp_path)
    process.kill()
    process.communicate(timeout=60)
    listing = subprocess.run([sys.executable, "-m", "pipeline.cli", "runs", str(tmp_path / "root")],
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, timeout=120).stdout
    assert listing.strip().splitlines()[-1].endswith("interrupted"), listing


def test_a_second_run_on_a_root_in_use_is_refused_at_once(tmp_path):
    from pipeline import local_runner

    with local_runner.exclusive_root(str(tmp_path / "root")):
        returncode, stderr, seconds = ablation(
            "run", "--pipeline-root", str(tmp_path / "root"), cwd=tmp_path)
        assert local_runner.root_in_use(str(tmp_path / "root"))
    assert (returncode, "Traceback" in stderr) == (1, False), stderr
    assert f"pipeline root {tmp_path / 'root'} is in use by pid {os.getpid()}" in stderr
    assert seconds < CONFIG_SECONDS
    assert not local_runner.root_in_use(str(tmp_path / "root"))


def _hostile_folder(root: pathlib.Path) -> pathlib.Path:
    """An image folder with 6 good PNGs per class and, among the cats, one of each entry that
    once hung, exhausted memory or aborted the ingest."""
    data = root / "data"
    for split, count in (("train", 6), ("test", 2)):
        for name in ("cat", "dog"):
            folder = data / split / name
            folder.mkdir(parents=True)
            for source in sorted((SMOKE_DATA / split / name).iterdir())[:count]:
                (folder / source.name).write_bytes(source.read_bytes())
    cats = data / "train" / "cat"
    good = sorted(cats.iterdir())[0].read_bytes()
    os.mkfifo(cats / "fifo.png")  # reading it blocks forever
    (cats / "dangling.png").symlink_to(root / "gone.png")
    (cats / "loop.png").symlink_to(cats / "loop.png")
    (cats / "zero.png").symlink_to("/dev/zero")  # endless bytes, and outside the folder
    (cats / "etc.png").symlink_to("/etc/hostname")  # a file outside the folder
    with open(cats / "huge.png", "wb") as file:  # 100 MB, sparse: costs no disk
        file.truncate(100 * 2**20)
    (cats / os.fsdecode(b"caf\xe9.png")).write_bytes(good)  # a name that is not UTF-8
    return data


def test_hostile_folder_entries_are_skipped_and_counted_in_bounded_time_and_memory(tmp_path):
    data = _hostile_folder(tmp_path)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "max RSS %M KiB", sys.executable, "-m", "pipeline.cli", "ingest",
         "--data", f"imagefolder:{data}", "--pipeline-root", str(tmp_path / "root"),
         "--image-size", "32", "--beam-args=--direct_running_mode=in_memory"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(system_tmp)},
        capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # 6 good cats + the non-UTF-8 copy; the rest skipped, each with its reason
    assert ("split train: 13 examples, skipped 6 (not_a_file 1, outside_root 2, too_large 1, "
            "unreadable 2)") in done.stdout
    assert "split eval: 4 examples, skipped 0 (none)" in done.stdout
    assert seconds < 300
    peak_kib = int(re.search(r"max RSS (\d+) KiB", done.stderr).group(1))
    assert peak_kib < 4 * 2**20  # well under 4 GiB: nothing endless or huge was read
    assert list(system_tmp.iterdir()) == []  # the run kept its temporary files in its root
    assert not (tmp_path / "root" / ".tmp").exists()


def test_an_unprepared_tfds_set_offline_fails_in_seconds_and_writes_nothing(tmp_path):
    """This machine reaches no download server: the ingest must say so at once."""
    home = tmp_path / "home"
    home.mkdir()
    returncode, stderr, seconds = ablation(
        "ingest", "--data", "tfds:cifar10", "--pipeline-root", str(tmp_path / "root"),
        "--image-size", "32", "--beam-args=--direct_running_mode=in_memory", cwd=tmp_path,
        env={"HOME": str(home)})
    assert (returncode, "Traceback" in stderr) == (1, False), stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert "'cifar10' is not prepared" in last and "www.cs.toronto.edu cannot be reached" in last
    assert "tfds_data_dir" in last and "imagefolder:PATH" in last
    assert seconds < 90
    written = {p.name for p in home.iterdir()}  # Keras and matplotlib make their caches
    assert "tensorflow_datasets" not in written, written


@pytest.mark.parametrize(("content", "message"), [
    ('{"image_size": "32"}', "image_size: expected an integer, got '32'"),
    ('{"models": "resnet20"}', "models: expected a list, got 'resnet20'"),
    ('{"training": 5}', "training: expected a table of TrainingConfig settings, got 5"),
    ('{"training": {"epochs": "3"}}', "training.epochs: expected an integer, got '3'"),
    ('{"image_size": ', "Expecting value"),
    (None, "No such file or directory")])
def test_the_tfx_cli_path_reports_a_bad_config_in_one_line(tmp_path, content, message):
    """`tfx pipeline create --pipeline_path=pipeline/local_runner.py` runs the file with
    ABLATION_CONFIG or ABLATION_PROFILE: their errors are one line, exit code 2."""
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "pipeline" / "local_runner.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ABLATION_CONFIG": str(path)})
    assert (done.returncode, "Traceback" in done.stderr) == (2, False), done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"local_runner.py: ABLATION_CONFIG={path}") and message in last
    assert time.perf_counter() - started < CONFIG_SECONDS


def test_an_unknown_profile_on_the_tfx_cli_path_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "pipeline" / "local_runner.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ABLATION_PROFILE": "nope"})
    assert (done.returncode, "Traceback" in done.stderr) == (2, False), done.stderr
    assert "unknown profile 'nope'" in done.stderr.strip().splitlines()[-1]
