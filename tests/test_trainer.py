"""The Trainer module's run_fn on a tiny config: export, history, determinism, NaN guard, resume."""

import dataclasses
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from components import hardware, input_pipeline, optimisation, trainer
from pipeline import config as config_lib
from pipeline.config import TrainingConfig
from resnet_ablation.contracts import LayerResponses, Predictions, RunHistory
from tests.helpers import read_examples
from tests.test_tensorboard_logs import read_scalars

TINY = TrainingConfig(epochs=2, batch_size=16, steps_per_epoch=3, eval_steps=2,
                      warmup_epochs=0.5, shuffle_buffer=64)
REPO = pathlib.Path(__file__).resolve().parents[1]
TIMINGS = ("seconds", "images_per_second", "validation_seconds", "clean_train_seconds")


def fn_args(ingested, out: pathlib.Path, model: str, training: TrainingConfig = TINY,
            seed: int = 0, checkpoint_root: str | None = None) -> FnArgs:
    return FnArgs(
        train_files=ingested.split_files("train"), eval_files=ingested.split_files("eval"),
        transform_graph_path=ingested.transform_graph,
        schema_path=os.path.join(ingested.schema, "schema.pbtxt"),
        serving_model_dir=str(out / "model"), model_run_dir=str(out / "run"),
        custom_config=trainer.trainer_custom_config(model, seed, training, checkpoint_root))


def _serialized_examples(paths: list[pathlib.Path]) -> tf.Tensor:
    return tf.constant([tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[p.read_bytes()]))
    })).SerializeToString() for p in paths])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cifar_resnet20", "cifar_plain20"])
def test_run_fn_exports_a_model_that_classifies_raw_png_bytes(ingested, tmp_path, model):
    args = fn_args(ingested, tmp_path, model)
    trainer.run_fn(args)

    loaded = tf.saved_model.load(args.serving_model_dir)
    assert {"serving_default", "transform_features"} <= set(loaded.signatures)
    pngs = sorted((REPO / "data/cifar10_smoke/test").rglob("*.png"))[:5]
    probabilities = loaded.signatures["serving_default"](
        examples=_serialized_examples(pngs))["probabilities"].numpy()
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)

    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["model"] == model and history["residual"] == ("resnet" in model)
    assert history["params"] == 269_722 and history["num_classes"] == 10
    assert history["status"] == "ok" and history["diverged_epoch"] is None
    assert history["shortcut"] == ("A" if "resnet" in model else "none")
    assert history["device"].startswith("CPU: ")
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    for entry in history["epochs"]:
        assert 0 <= entry["val_accuracy"] <= 1 and np.isfinite(entry["train_loss"])
        assert 0 <= entry["clean_train_accuracy"] <= 1  # measured every epoch by default
        assert entry["images_per_second"] > 0 and entry["learning_rate"] > 0
        assert 0 < entry["validation_seconds"] < entry["seconds"]  # part of the epoch
        assert entry["clean_train_seconds"] > 0  # measured after it
    assert any(p.name.startswith("events.out") for p in (tmp_path / "run" / "logs").rglob("*"))
    # the paper's scalars for TensorBoard, each epoch as the history records it
    scalars, _ = read_scalars(str(tmp_path / "run" / "logs" / "paper"))
    val = history["val_split"]
    assert scalars[f"error/{val}"] == pytest.approx(
        {e["epoch"]: 1 - e["val_accuracy"] for e in history["epochs"]})
    assert scalars["error/train_clean"] == pytest.approx(
        {e["epoch"]: 1 - e["clean_train_accuracy"] for e in history["epochs"]})
    assert all(e["weight_decay_term"] > 0 for e in history["epochs"])  # wd 1e-4 on every weight
    assert scalars["weight_decay_term"] == pytest.approx(
        {e["epoch"]: e["weight_decay_term"] for e in history["epochs"]})

    predictions = Predictions.from_json((tmp_path / "run" / "predictions.json").read_text())
    eval_ids = {e["id"] for e in read_examples(ingested.examples, "eval")}
    assert set(predictions.eval.ids) == eval_ids and len(predictions.eval.ids) == len(eval_ids)
    assert len(predictions.train.ids) == history["train_subset"] == 96  # the whole (limited) train
    # the clean training accuracy of the last epoch is the accuracy of these predictions
    assert history["epochs"][-1]["clean_train_accuracy"] == pytest.approx(
        predictions.train.accuracy, abs=1e-6)
    labels = {e["id"]: e["label"] for e in read_examples(ingested.examples, "eval")}
    assert [labels[i] for i in predictions.eval.ids] == list(predictions.eval.labels)
    responses = LayerResponses.from_json((tmp_path / "run" / "responses.json").read_text())
    assert len(responses.layers) == len(responses.std) == 19  # the 3x3 layers of a 20-layer net
    assert all(std > 0 for std in responses.std) and responses.images == len(eval_ids)


@pytest.mark.slow
def test_deterministic_runs_are_bitwise_identical(ingested, tmp_path):
    training = dataclasses.replace(TINY, deterministic=True)
    weights, histories = [], []
    for run in ("a", "b"):
        args = fn_args(ingested, tmp_path / run, "cifar_resnet20", training, seed=7)
        trainer.run_fn(args)
        loaded = tf.saved_model.load(args.serving_model_dir)
        weights.append({v.name: v.numpy() for v in loaded.variables})
        history = json.loads((tmp_path / run / "run" / "history.json").read_text())
        histories.append([{k: v for k, v in e.items() if k not in TIMINGS}
                          for e in history["epochs"]])
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    assert histories[0] == histories[1]


@pytest.mark.slow
def test_a_diverged_run_is_recorded_not_raised(ingested, tmp_path):
    diverging = dataclasses.replace(TINY, epochs=3, base_learning_rate=1e30, warmup_epochs=0,
                                    weight_decay=0.0)
    args = fn_args(ingested, tmp_path, "cifar_plain20", diverging)
    trainer.run_fn(args)
    history = RunHistory.from_json((tmp_path / "run" / "history.json").read_text())
    assert history.status == "diverged" and history.diverged_epoch == 1
    assert history.epochs == ()  # no finite epoch to keep; training stopped at once
    assert os.listdir(args.serving_model_dir) == ["DIVERGED"]
    assert "diverged in epoch 1" in (pathlib.Path(args.serving_model_dir) / "DIVERGED").read_text()
    assert not (tmp_path / "run" / "predictions.json").exists()


def test_record_order_does_not_depend_on_the_core_count(ingested):
    """The reader's interleave width is fixed, so two runs see the same order on any machine."""
    order = [r.numpy() for r in input_pipeline.read_records(ingested.split_files("train"))]
    assert input_pipeline.READ_PARALLELISM == 4
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1  # as on a one-core machine
    single = input_pipeline.read_records(ingested.split_files("train")).with_options(options)
    assert [r.numpy() for r in single] == order and len(order) == 96


_CHILD = """
import json, sys
import resnet_ablation.keras2
from tfx.components.trainer.fn_args_utils import FnArgs
from components import trainer
trainer.run_fn(FnArgs(**json.loads(sys.argv[1])))
"""


def _child(args: FnArgs, *prefix: str) -> subprocess.Popen:
    """run_fn(args) in a fresh Python process (optionally under a command `prefix`)."""
    fields = {f: getattr(args, f) for f in ("train_files", "eval_files", "transform_graph_path",
                                            "schema_path", "serving_model_dir", "model_run_dir",
                                            "custom_config")}
    return subprocess.Popen([*prefix, sys.executable, "-c", _CHILD, json.dumps(fields)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_after_first_checkpoint(args: FnArgs, checkpoints: pathlib.Path, timeout: float,
                                child=None) -> list[dict]:
    """Runs `args` in a child process (`child`: how to start it, default ``_child``), kills it
    (SIGKILL) once epoch 1 is checkpointed under `checkpoints`, checks that its history holds
    epoch 1 alone, and returns that history's epochs."""
    process = (child or _child)(args)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        # epoch 1 is checkpointed once the manager's state file names it (it is written
        # after ckpt-1.index: a kill between the two leaves no checkpoint to resume from)
        if any("ckpt-1" in state.read_text() for state in checkpoints.rglob("checkpoint")):
            break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = json.loads((pathlib.Path(args.model_run_dir) / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in killed] == [1]
    return killed


def _outcome(args: FnArgs) -> tuple[dict, list]:
    """The exported model's weights and the history without timings."""
    loaded = tf.saved_model.load(args.serving_model_dir)
    history = json.loads((pathlib.Path(args.model_run_dir) / "history.json").read_text())
    return ({v.name: v.numpy() for v in loaded.variables},
            [{k: v for k, v in e.items() if k not in TIMINGS}
             for e in history["epochs"]])


def _assert_same(a: tuple[dict, list], b: tuple[dict, list]) -> None:
    assert a[0].keys() == b[0].keys()
    for name in a[0]:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)
    assert a[1] == b[1]


# Deterministic, augmented, the epoch longer than the 96-image split: every source of order.
RESUMABLE = dataclasses.replace(TINY, epochs=3, steps_per_epoch=8, deterministic=True)


@pytest.mark.slow
def test_killed_run_resumes_exactly_as_an_uninterrupted_run(ingested, tmp_path):
    straight = fn_args(ingested, tmp_path / "straight", "cifar_resnet20", RESUMABLE, seed=3)
    trainer.run_fn(straight)

    checkpoints = tmp_path / "checkpoints"
    first = fn_args(ingested, tmp_path / "first", "cifar_resnet20", RESUMABLE, seed=3,
                    checkpoint_root=str(checkpoints))
    killed = kill_after_first_checkpoint(first, checkpoints, timeout=300)

    second = fn_args(ingested, tmp_path / "second", "cifar_resnet20", RESUMABLE, seed=3,
                     checkpoint_root=str(checkpoints))
    trainer.run_fn(second)
    resumed = json.loads((tmp_path / "second" / "run" / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in resumed] == [1, 2, 3]
    assert resumed[0] == killed[0]  # epoch 1 was restored, not trained again
    _assert_same(_outcome(second), _outcome(straight))
    assert not list(checkpoints.rglob("ckpt-*"))  # removed once the run finished


@pytest.mark.slow
def test_one_core_and_all_cores_train_identically(ingested, tmp_path):
    """The data order and augmentation are fixed, and deterministic = true with a fixed thread
    count fixes every op: a run pinned to one core gives the same model and metrics as one on
    every core. (Without intra_op_threads, TensorFlow sizes its pools from the cores it may use,
    and the weights differ by about 1e-2 after 16 steps here.)"""
    training = dataclasses.replace(RESUMABLE, epochs=2, intra_op_threads=2)
    runs = [fn_args(ingested, tmp_path / name, "cifar_resnet20", training, seed=5)
            for name in ("one", "all")]
    for args, prefix in zip(runs, (("taskset", "-c", "0"), ())):
        assert _child(args, *prefix).wait(timeout=600) == 0
    _assert_same(_outcome(runs[0]), _outcome(runs[1]))


def test_epoch_data_depends_on_seed_and_epoch_only(ingested):
    transform = tft.TFTransformOutput(ingested.transform_graph)

    def batches(epochs, seed=1):
        dataset = input_pipeline.training_dataset(ingested.split_files("train"), transform, 16,
                                                  seed=seed, steps_per_epoch=4, epochs=epochs,
                                                  augment=True)
        return [images.numpy() for images, _ in dataset]

    all_epochs, from_epoch_2 = batches(range(0, 3)), batches(range(2, 3))
    assert len(all_epochs) == 12 and len(from_epoch_2) == 4
    for a, b in zip(all_epochs[8:], from_epoch_2):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(all_epochs[0], all_epochs[4])  # epochs differ from each other
    assert not np.array_equal(batches(range(0, 1), seed=2)[0], all_epochs[0])


def test_decoded_in_memory_and_streamed_epochs_are_identical(ingested):
    """Decoding the split once and shuffling decoded examples gives the batches that shuffling
    records and decoding every batch gives: the cache changes speed, not data."""
    transform = tft.TFTransformOutput(ingested.transform_graph)

    def batches(in_memory):
        dataset = input_pipeline.training_dataset(ingested.split_files("train"), transform, 16,
                                                  seed=3, steps_per_epoch=5, epochs=range(0, 2),
                                                  augment=True, in_memory=in_memory)
        return [(images.numpy(), labels.numpy()) for images, labels in dataset]

    streamed, in_memory = batches(False), batches(True)
    assert len(streamed) == len(in_memory) == 10
    # the decoded split is held once, not embedded in the dataset's graph once per epoch
    # (that copy made a 30-epoch, 224-pixel in-memory run need 25 GB); serialising the graph
    # writes the captured variables' values once
    many_epochs = input_pipeline.training_dataset(ingested.split_files("train"), transform, 16,
                                                  seed=3, steps_per_epoch=5, epochs=range(0, 20),
                                                  in_memory=True)
    decoded_bytes = sum(images.nbytes for images, _ in in_memory[:6])  # 96 images
    assert len(many_epochs._as_serialized_graph().numpy()) < 2 * decoded_bytes
    for (a_images, a_labels), (b_images, b_labels) in zip(streamed, in_memory):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)


def test_augment_batch_flips_and_crops_whole_pixels_per_image():
    images = tf.reshape(tf.range(2 * 8 * 8 * 3, dtype=tf.float32) + 1, [2, 8, 8, 3])
    seed = tf.constant([7, 0], tf.int64)
    out = input_pipeline.augment_batch(images, seed).numpy()
    assert out.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(out, input_pipeline.augment_batch(images, seed).numpy())
    assert not np.array_equal(out, input_pipeline.augment_batch(images, tf.constant([8, 0], tf.int64)))
    seen_offsets = set()
    for original, result in zip(images.numpy(), out):
        padded = np.pad(original, [(1, 1), (1, 1), (0, 0)])  # pad 8 // 8 = 1 pixel of zeros
        matches = [(flip, y, x) for flip in (False, True) for y in range(3) for x in range(3)
                   if np.array_equal(result, (padded[:, ::-1] if flip else padded)
                                     [y:y + 8, x:x + 8])]
        assert len(matches) == 1  # one flip and whole-pixel offset reproduce it exactly
        seen_offsets.add(matches[0])
    assert set(np.unique(out)) <= set(np.unique(images.numpy())) | {0.0}  # no resampled values


@pytest.mark.parametrize(("mode", "gpu", "bf16", "policy"), [
    ("off", True, True, "float32"), ("auto", True, False, "mixed_float16"),
    ("auto", False, True, "mixed_bfloat16"), ("auto", False, False, "float32"),
    ("on", False, False, "mixed_bfloat16"), ("on", True, False, "mixed_float16")])
def test_precision_policy_follows_the_hardware(monkeypatch, mode, gpu, bf16, policy):
    monkeypatch.setattr(hardware, "cpu_has_bfloat16", lambda: bf16)
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0"] if gpu and kind == "GPU" else [])
    assert hardware.precision_policy(mode) == policy


def test_cpu_bfloat16_detection_reads_the_cpu_flags():
    with open("/proc/cpuinfo") as file:
        flags = next(line for line in file if line.startswith("flags")).split()
    assert hardware.cpu_has_bfloat16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_cache_decision_counts_train_eval_and_subset():
    training = TrainingConfig(memory_cache_mb=860, train_eval_examples=10_000)
    assert input_pipeline.decoded_bytes(1, 32) == 12_288
    assert input_pipeline.fits_in_memory(training, 50_000, 10_000, 32)  # 70,000 x 12 KiB = 820 MiB
    assert not input_pipeline.fits_in_memory(training, 60_000, 10_000, 32)  # 80,000: 938 MiB
    assert not input_pipeline.fits_in_memory(TrainingConfig(memory_cache_mb=0), 10, 10, 32)


def _decay_term(model, scope: str | None) -> float:
    """The weight-decay loss term add_weight_decay adds to `model` (default scope if None)."""
    if scope is None:
        optimisation.add_weight_decay(model, 1e-4)
    else:
        optimisation.add_weight_decay(model, 1e-4, scope)
    [term] = model.losses
    return float(term)


def _l2(weights) -> float:
    return sum(float((w.numpy().astype(np.float64) ** 2).sum()) / 2 for w in weights)


@pytest.mark.parametrize("scope", ["all", "kernels", None])
def test_weight_decay_scope_all_includes_batchnorm_gamma_beta_and_bias(scope):
    """"all" (the default, as fb.resnet.torch and torchvision's reference script) decays every
    trainable weight; "kernels" only convolution and dense kernels."""
    from resnet_ablation import models

    model = models.build_model("cifar_plain20", 10, (8, 8, 3))
    rng = np.random.default_rng(0)
    weights = model.trainable_weights
    for weight in weights:  # gamma, beta and the bias away from their initial 1 / 0
        if not weight.name.endswith("kernel:0"):
            weight.assign(rng.uniform(-1, 1, weight.shape).astype(np.float32))
    kernels = [w for w in weights if w.name.endswith("kernel:0")]
    others = [w for w in weights if not w.name.endswith("kernel:0")]
    assert {w.name.split("/")[-1] for w in others} == {"gamma:0", "beta:0", "bias:0"}
    assert len(others) == 2 * 19 + 1  # gamma and beta of 19 BatchNorms, the dense bias
    expected = 1e-4 * (_l2(kernels) if scope == "kernels" else _l2(weights))
    assert _decay_term(model, scope) == pytest.approx(expected, rel=1e-5)
    assert _l2(others) > 0.1 * _l2(kernels)  # the two scopes really differ here


def test_weight_decay_scope_reaches_the_compiled_model_and_is_validated():
    from pipeline import config as config_lib

    assert TrainingConfig().weight_decay_scope == "all"
    for scope in ("all", "kernels"):
        training = dataclasses.replace(TINY, weight_decay=1e-4, weight_decay_scope=scope)
        model = optimisation.compiled_model("cifar_plain20", 10, 8, training, steps_per_epoch=1)
        decayed = [w for w in model.trainable_weights
                   if scope == "all" or w.name.endswith("kernel:0")]
        [term] = model.losses
        assert float(term) == pytest.approx(1e-4 * _l2(decayed), rel=1e-5)
    with pytest.raises(ValueError, match="all, kernels, got 'bn'"):
        optimisation.add_weight_decay(model, 1e-4, "bn")
    config = config_lib.with_overrides(config_lib.PipelineConfig(), weight_decay_scope="bn")
    with pytest.raises(config_lib.ConfigError,
                       match="weight_decay_scope must be one of all, kernels, got 'bn'"):
        config_lib.validate(config)


def test_cifar_paper_profile_sets_the_paper_protocol():
    """Paper section 4.2: per-pixel mean, weight decay 1e-4 on every parameter, batch 128 at lr
    0.1, /10 at 32k and 48k iterations, 64k in all; 5 seeds; trained on all 50k train images."""
    from pipeline import config as config_lib

    config = config_lib.validate(config_lib.load_profile("cifar_paper"))
    assert (config.data, config.image_size, config.normalization) == (
        "tfds:cifar10", 32, "per_pixel_mean")
    assert config.models == ("cifar_resnet20", "cifar_plain20", "cifar_resnet56", "cifar_plain56")
    assert config.seeds == 5 and config.validation_fraction == 0
    train = config.training
    assert (train.weight_decay, train.weight_decay_scope, train.momentum) == (1e-4, "all", 0.9)
    assert train.batch_size == 128 and train.learning_rate == pytest.approx(0.1)
    assert (train.schedule, train.warmup_epochs) == ("step", 0)
    steps = 50_000 // train.batch_size  # full batches per epoch of the 50k train images
    assert steps == 390
    epochs = (*train.step_decay_epochs, train.epochs)
    assert epochs == (82, 123, 164)
    assert [round(iterations / steps) for iterations in (32_000, 48_000, 64_000)] == list(epochs)
    # the profile comment's 45k/5k alternative: 351 batches per epoch
    assert [round(i / (45_000 // 128)) for i in (32_000, 48_000, 64_000)] == [91, 137, 182]


def test_warmup_schedule_ramps_then_follows_its_kind():
    def rates(schedule, steps):
        return [float(schedule(step)) for step in steps]

    cosine = optimisation.WarmupSchedule(peak=0.4, warmup_steps=4, total_steps=104)
    assert rates(cosine, [0, 1, 3]) == pytest.approx([0.1, 0.2, 0.4])  # linear to the peak
    assert rates(cosine, [4, 54, 104, 200]) == pytest.approx([0.4, 0.2, 0.0, 0.0], abs=1e-6)
    step = optimisation.WarmupSchedule(peak=0.1, warmup_steps=0, total_steps=100, kind="step",
                                       boundaries=(50, 75))
    assert rates(step, [0, 49, 50, 74, 75, 99]) == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    flat = optimisation.WarmupSchedule(peak=0.3, warmup_steps=2, total_steps=10, kind="constant")
    assert rates(flat, [0, 1, 2, 9]) == pytest.approx([0.15, 0.3, 0.3, 0.3])
    restored = optimisation.WarmupSchedule(**step.get_config())
    assert rates(restored, [49, 50, 75]) == rates(step, [49, 50, 75])


def test_learning_rate_schedule_converts_epochs_to_steps():
    training = TrainingConfig(epochs=12, batch_size=128, base_learning_rate=0.2,
                              warmup_epochs=0.5, schedule="step", step_decay_epochs=(6, 9))
    schedule = optimisation.learning_rate_schedule(training, steps_per_epoch=390)
    assert (schedule.peak, schedule.warmup_steps, schedule.total_steps, schedule.boundaries) == (
        0.1, 195, 4680, (2340, 3510))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"models": ("resnet51",)}, "unknown model(s) resnet51"),
    ({"models": ()}, "name at least one model"),
    ({"models": ("resnet18", "resnet18")}, "duplicates"),
    ({"image_size": 0}, "image_size must be a positive integer"),
    ({"image_size": 2048}, "above 1024"),
    ({"first_seed": -1}, "first_seed must be 0 or more"),
    ({"eval_fraction": 1.0}, "eval_fraction must be in (0, 1)"),
    ({"validation_fraction": -0.1}, "validation_fraction must be in [0, 1)"),
    ({"shortcut": "D"}, "shortcut must be one of A, B, C"),
    ({"normalization": "zca"}, "normalization must be one of"),
    ({"data": "imagefolder:/no/such/folder"}, "does not exist"),
    ({"data": "s3:x"}, "invalid data"),
    ({"pipeline_root": "/proc/x"}, "kernel file system"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"memory_cache_mb": -1}, "memory_cache_mb must be 0"),
    ({"mixed_precision": "fp8"}, "mixed_precision must be auto, on or off"),
    ({"schedule": "linear"}, "schedule must be cosine, step or constant"),
    ({"weight_decay_scope": "bias"}, "weight_decay_scope must be one of"),
    ({"base_learning_rate": 0.0}, "base_learning_rate must be positive")])
def test_validate_names_the_bad_value(tmp_path, overrides, message):
    config = config_lib.with_overrides(config_lib.load_profile("smoke"),
                                       pipeline_root=str(tmp_path / "root"))
    config = (dataclasses.replace(config, models=overrides["models"]) if "models" in overrides
              else config_lib.with_overrides(config, **overrides))
    with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
        config_lib.validate(config)
    assert config_lib.validate(config_lib.with_overrides(
        config_lib.load_profile("smoke"), pipeline_root=str(tmp_path / "root"))) is not None


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "expected"), [(None, "True"), ("0", "False"), ("1", "True")])
def test_onednn_is_on_unless_the_user_chose_otherwise(setting, expected):
    """Importing ``components`` turns TensorFlow's oneDNN kernels on (TensorFlow leaves them off
    on AVX2-only processors); a TF_ENABLE_ONEDNN_OPTS the user set is kept."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    done = subprocess.run(
        [sys.executable, "-c", "import components.hardware as h; print(h.onednn_enabled())"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == expected


_STEPS_CHILD = """
import json, numpy as np
from components import hardware, optimisation
from resnet_ablation.keras2 import keras
from pipeline.config import TrainingConfig
keras.utils.set_random_seed(0)
training = TrainingConfig(batch_size=32, warmup_epochs=0, schedule="constant", mixed_precision="off")
model = optimisation.compiled_model("cifar_resnet20", 10, 32, training, 10)
rng = np.random.default_rng(0)
images, labels = rng.normal(size=(96, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 96)
import tensorflow as tf
with tf.GradientTape() as tape:
    predicted = model(images[:32], training=True)
    loss = model.compiled_loss(tf.constant(labels[:32]), predicted) + sum(model.losses)
gradients = tape.gradient(loss, model.trainable_variables)
history = model.fit(images, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
print(json.dumps({"onednn": hardware.onednn_enabled(), "loss": history.history["loss"],
                  "gradients": [float(tf.norm(g)) for g in gradients]}))
"""


@pytest.mark.slow
def test_training_with_onednn_matches_training_without_within_float_tolerance():
    """resnet-20 in float32 with oneDNN's kernels and with TensorFlow's own: the same gradients
    at initialisation (per-tensor norms) and the same losses over six SGD steps, up to float
    rounding (oneDNN sums in another order; through 19 BatchNorm layers on noise images that
    moves a gradient norm by up to a few tenths of a per cent). The weights then drift apart as
    any two kernel libraries' do: after six steps some small BatchNorm and bias tensors differ
    by a few per cent."""
    outcomes = {}
    for setting in ("1", "0"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
        done = subprocess.run([sys.executable, "-c", _STEPS_CHILD], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outcomes[setting] = json.loads(done.stdout.strip().splitlines()[-1])
    on, off = outcomes["1"], outcomes["0"]
    assert (on["onednn"], off["onednn"]) == (True, False)
    np.testing.assert_allclose(on["loss"], off["loss"], rtol=1e-3)
    # measured 2026-12-02 (AVX2 EPYC): at most 0.23 % apart, in the BatchNorm parameters
    np.testing.assert_allclose(on["gradients"], off["gradients"], rtol=5e-3)
    assert on["loss"] != off["loss"]  # two kernel libraries ran, not one twice
