"""pipeline.study_plan: what `ablation plan` prints and refuses, from the model's arithmetic."""

from __future__ import annotations

import pytest

from pipeline import config as config_lib, study_plan
from pipeline.cli import main
from resnet_ablation import model_cost, models


@pytest.mark.slow
def test_plan_counts_trainers_images_flops_and_estimates_time_from_resnet50s_rate():
    config = config_lib.with_settings(config_lib.load_profile("cifar10_224_cpu"),
                                      ["seeds=3", "training.batch_size=256"])
    plan = study_plan.make_plan(config, gpus=8, gpu="a100-80gb")
    assert plan.trainers == 12 and plan.per_replica_batch == 32
    assert plan.train_images == 5000  # 500 of each of the 10 classes
    resnet50 = next(m for m in plan.models if m.name == "resnet50")
    built = models.build_model("resnet50", 10, (224, 224, 3))
    assert resnet50.train_gflops_per_image == pytest.approx(model_cost.train_flops(built) / 1e9)
    assert resnet50.train_gflops_per_image == pytest.approx(
        study_plan.RESNET50_TRAIN_GFLOPS_224, abs=0.05)
    # 32 images a GPU, every layer output in 2 bytes, plus weights, gradients and momentum
    assert resnet50.activation_gb_per_replica == pytest.approx(
        model_cost.activation_elements(built) * 32 * 2 / 1e9)
    assert resnet50.state_gb == pytest.approx(built.count_params() * 12 / 1e9)
    # every model's 5 epochs x 5,000 images x 3 seeds at 2,375 x 8 img/s, scaled by FLOPs
    expected = sum(5 * 5000 * 3 * m.train_gflops_per_image / study_plan.RESNET50_TRAIN_GFLOPS_224
                   / (2375 * 8) for m in plan.models) / 3600
    assert plan.estimated_hours() == pytest.approx(expected)
    text = study_plan.describe(plan)
    assert "12 Trainers (4 models x 3 seeds)" in text and "ESTIMATE" in text
    assert "batch 256 = 8 x 32 per GPU" in text


@pytest.mark.slow
def test_a_batch_that_cannot_fit_the_gpu_is_refused_in_one_line(capsys):
    assert main(["plan", "--profile", "cats_vs_dogs_cpu", "--set", "training.batch_size=2048",
                 "--gpu-type", "t4"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ablation plan: batch 2048 on 1 x NVIDIA T4: resnet50 needs about ")
    assert error.endswith("more than its 16 GB: lower training.batch_size or use more GPUs")
    assert "\n" not in error
    with pytest.raises(config_lib.ConfigError, match="unknown GPU kind 'k80'"):
        study_plan.make_plan(config_lib.load_profile("smoke"), gpu="k80")


@pytest.mark.slow
def test_without_a_published_rate_no_time_is_made_up():
    plan = study_plan.make_plan(config_lib.load_profile("smoke"), gpu="t4")
    assert plan.estimated_hours() is None
    assert "not estimated (no published throughput for this GPU kind" in study_plan.describe(plan)
