"""The ablation's statistics, rows and verdicts on hand-made numbers (no TensorFlow, no TFX)."""

import dataclasses
import math
import pathlib

import numpy as np
import pytest

from resnet_ablation import comparison
from resnet_ablation.contracts import EpochRecord, Predictions, RunHistory, SplitPredictions
from resnet_ablation.model_specs import get_spec

N = 1000  # eval examples in the hand-made studies


def epoch(i, val_accuracy=0.5, clean=0.5):
    return EpochRecord(epoch=i, train_loss=1.0, train_accuracy=0.5, val_loss=1.0,
                       val_accuracy=val_accuracy, clean_train_loss=1.0,
                       clean_train_accuracy=clean, learning_rate=0.1, seconds=2.0,
                       images_per_second=100.0)


def history(model, seed=0, epochs=3, status="ok", val_split="test", diverged_epoch=None,
            curve=(0.3, 0.4, 0.5)):
    spec = get_spec(model)
    return RunHistory(
        model=model, family=spec.family, depth=spec.depth, residual=spec.residual, params=10,
        seed=seed, batch_size=8, image_size=32, num_classes=10, steps_per_epoch=5,
        precision="float32", xla=False, training={"epochs": epochs}, val_split=val_split,
        eval_split="test", train_subset=N, shortcut="A" if spec.residual else "none",
        status=status, diverged_epoch=diverged_epoch,
        epochs=tuple(epoch(i + 1, curve[i % len(curve)]) for i in range(epochs)))


def outcomes(correct_count, n=N, labels=None, offset=0):
    """SplitPredictions with the first `correct_count` (after `offset`, cyclically) right."""
    labels = labels if labels is not None else [i % 10 for i in range(n)]
    right = {(offset + k) % n for k in range(correct_count)}
    predicted = [label if i in right else (label + 1) % 10 for i, label in enumerate(labels)]
    return SplitPredictions(tuple(f"id{i}" for i in range(n)), tuple(labels), tuple(predicted))


def result(model, seed=0, eval_correct=500, train_correct=500, status="ok", offset=0, **kwargs):
    offset += seed * 7
    predictions = (Predictions(eval=outcomes(eval_correct, offset=offset),
                               train=outcomes(train_correct, offset=offset))
                   if status == "ok" else None)
    metrics = {"accuracy": eval_correct / N, "loss": 1.0, "example_count": N} if status == "ok" else None
    return comparison.RunResult(history(model, seed, status=status, **kwargs), predictions, metrics)


def verdict(verdicts, kind, a, split):
    [found] = [v for v in verdicts if v["kind"] == kind and v["models"][0] == a
               and v["split"] == split]
    return found


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("b, c, expected", [
    (10, 2, 158 / 4096),  # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    (5, 5, 1.0), (0, 0, 1.0), (0, 6, 2 / 64),
    (3, 12, 2 * (1 + 15 + 105 + 455) / 2 ** 15),
])
def test_mcnemar_exact_p_values(b, c, expected):
    assert comparison.mcnemar_p(b, c) == pytest.approx(expected, rel=1e-12)


def test_wilson_interval_matches_newcombe_1998_example():
    interval = comparison.wilson_interval(81, 263)  # Newcombe (1998a): 0.2553 to 0.3662
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.2553, 0.3662)


def test_t_interval_uses_n_minus_one_degrees_of_freedom():
    interval = comparison.t_interval([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd 1.2910, se 0.6455, t(0.975, 3) = 3.18245: half-width 2.0543
    assert interval.estimate == 2.5
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.4457, 4.5543)
    two = comparison.t_interval([0.01, 0.03])  # t(0.975, 1) = 12.706, se = 0.01
    assert two.high - two.estimate == pytest.approx(0.12706, abs=1e-5)
    with pytest.raises(ValueError, match="at least two"):
        comparison.t_interval([0.5])


def test_paired_difference_hand_computed_table():
    # a = 40 both right, b = 15 only A, c = 5 only B, d = 40 neither (n = 100)
    a_correct = [True] * 40 + [True] * 15 + [False] * 5 + [False] * 40
    b_correct = [True] * 40 + [False] * 15 + [True] * 5 + [False] * 40
    interval, p_value = comparison.paired_difference(a_correct, b_correct)
    assert interval.estimate == pytest.approx(0.10)
    assert p_value == pytest.approx(comparison.mcnemar_p(15, 5))
    # Newcombe method 10 by hand: Wilson(55/100) = (.4524, .6438), Wilson(45/100) = (.3562,
    # .5476), phi = (40*40 - 15*5) / sqrt(55*45*45*55) = .6162
    l1, u1, l2, u2, phi = 0.45240, 0.64379, 0.35621, 0.54760, 1525 / 2475
    delta = math.sqrt((0.55 - l1) ** 2 - 2 * phi * (0.55 - l1) * (u2 - 0.45) + (u2 - 0.45) ** 2)
    epsilon = math.sqrt((u1 - 0.55) ** 2 - 2 * phi * (u1 - 0.55) * (0.45 - l2) + (0.45 - l2) ** 2)
    assert interval.low == pytest.approx(0.10 - delta, abs=2e-4)
    assert interval.high == pytest.approx(0.10 + epsilon, abs=2e-4)
    assert interval.low > 0  # 15 vs 5 discordant pairs: a real difference


def test_paired_difference_covers_the_true_gap_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):  # correlated pairs: P(A right) = .7, P(B right) = .65
        shared = rng.random(300)
        a = shared < 0.7
        b = np.where(rng.random(300) < 0.8, shared < 0.65, rng.random(300) < 0.65)
        interval, _ = comparison.paired_difference(list(a), list(b))
        covered += interval.low <= 0.05 <= interval.high
    assert 0.92 <= covered / 400 <= 0.985


def test_paired_difference_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="equally long"):
        comparison.paired_difference([True], [True, False])


def test_at_chance_against_the_majority_class_rate():
    # Binomial(1000, 0.1): 97.5 % quantile is 119
    assert comparison.at_chance(119, 1000, 0.1) and not comparison.at_chance(120, 1000, 0.1)
    assert comparison.at_chance(40, 1000, 0.1)  # below chance is not above it
    assert comparison.majority_rate([0, 0, 0, 1]) == 0.75


# --------------------------------------------------------------------------- rows


def test_rows_have_the_agreed_columns_and_paired_intervals():
    table = comparison.rows([result("cifar_resnet20", eval_correct=700, train_correct=800),
                           result("cifar_plain20", eval_correct=600, train_correct=650)])
    assert list(table[0])[:13] == list(comparison.COLUMNS)
    assert list(table[0])[13:19] == list(comparison.STATUS_COLUMNS)
    plain, residual = table
    assert (plain["model"], residual["model"]) == ("cifar_plain20", "cifar_resnet20")
    assert residual["delta_vs_plain"] == pytest.approx(0.1)
    assert residual["delta_ci_low"] < 0.1 < residual["delta_ci_high"]
    assert residual["delta_ci_low"] > 0  # 700 vs 600 of 1000 on the same examples
    assert residual["train_error"] == pytest.approx(0.2) and plain["eval_error"] == pytest.approx(0.4)
    assert residual["status"] == "ok" and residual["eval_split"] == "test"
    assert residual["shortcut"] == "A" and plain["shortcut"] == "none"
    assert plain["delta_vs_plain"] is None and plain["delta_ci_low"] is None
    assert residual["best_val_accuracy"] is None  # the curve is on test: no selection on it


def test_best_val_accuracy_only_on_a_validation_curve():
    [row] = comparison.rows([result("cifar_plain20", val_split="validation",
                                  curve=(0.3, 0.6, 0.5))])
    assert row["best_val_accuracy"] == 0.6


def test_diverged_row_keeps_status_and_last_finite_epochs():
    table = comparison.rows([
        result("cifar_resnet56", eval_correct=700),
        result("cifar_plain56", status="diverged", epochs=2, diverged_epoch=3)])
    plain, residual = table
    assert plain["status"] == "diverged" and plain["diverged_epoch"] == 3
    assert plain["epochs"] == 2 and plain["val_accuracy"] is None and plain["train_error"] is None
    assert residual["delta_vs_plain"] is None


def test_duplicate_runs_are_refused():
    with pytest.raises(ValueError, match="more than one run"):
        comparison.rows([result("cifar_plain20"), result("cifar_plain20")])


# --------------------------------------------------------------------------- verdicts


def test_one_seed_clear_gap_is_residual_better_with_mcnemar():
    verdicts = comparison.verdicts([result("cifar_resnet20", eval_correct=700),
                                  result("cifar_plain20", eval_correct=600)])
    found = verdict(verdicts, "residual_vs_plain", "cifar_resnet20", "test")
    assert found["conclusion"] == "residual_better" and found["seeds"] == 1
    assert found["gap"] == pytest.approx(0.1) and found["ci_low"] > 0
    assert found["p_value"] < 1e-6
    assert found["sentence"].startswith(
        "On test (1,000 images), cifar_resnet20 − cifar_plain20 = -10.00 points of error "
        "(30.00 % vs 40.00 %")
    assert "residual better" in found["sentence"] and "1 seed" in found["sentence"]
    assert set(found) >= {"kind", "family", "models", "metric", "split", "gap", "ci_low",
                          "ci_high", "seeds", "conclusion", "sentence"}


def test_ten_discordant_pairs_all_one_way_are_a_difference():
    # nested: the residual net is right on every example the plain one is, and on 10 more
    verdicts = comparison.verdicts([result("cifar_resnet20", eval_correct=510),
                                  result("cifar_plain20", eval_correct=500)])
    found = verdict(verdicts, "residual_vs_plain", "cifar_resnet20", "test")
    assert found["p_value"] == pytest.approx(2 / 1024) and found["conclusion"] == "residual_better"


def test_one_seed_small_gap_is_not_distinguishable():
    # the models are right on different examples: 260 vs 250 discordant pairs
    verdicts = comparison.verdicts([result("cifar_resnet20", eval_correct=510),
                                  result("cifar_plain20", eval_correct=500, offset=250)])
    found = verdict(verdicts, "residual_vs_plain", "cifar_resnet20", "test")
    assert found["conclusion"] == "not_distinguishable" and found["p_value"] > 0.5
    assert found["ci_low"] < 0 < found["ci_high"]
    assert "beats" not in found["sentence"]


def test_plain_better_when_the_interval_is_below_zero():
    verdicts = comparison.verdicts([result("cifar_resnet20", eval_correct=500),
                                  result("cifar_plain20", eval_correct=650)])
    assert verdict(verdicts, "residual_vs_plain", "cifar_resnet20", "test")["conclusion"] == "plain_better"


def test_several_seeds_use_a_t_interval_over_per_seed_gaps():
    runs = [result("cifar_resnet20", seed, eval_correct=700 + 10 * seed) for seed in range(3)]
    runs += [result("cifar_plain20", seed, eval_correct=600 + 5 * seed) for seed in range(3)]
    found = verdict(comparison.verdicts(runs), "residual_vs_plain", "cifar_resnet20", "test")
    expected = comparison.t_interval([0.100, 0.105, 0.110])
    assert found["seeds"] == 3 and "p_value" not in found
    assert (found["gap"], found["ci_low"], found["ci_high"]) == pytest.approx(
        (expected.estimate, expected.low, expected.high))
    assert found["conclusion"] == "residual_better" and "t over seeds" in found["sentence"]


def test_two_seeds_with_opposite_gaps_are_not_distinguishable():
    runs = [result("cifar_resnet20", 0, eval_correct=700), result("cifar_plain20", 0, eval_correct=600),
            result("cifar_resnet20", 1, eval_correct=600), result("cifar_plain20", 1, eval_correct=650)]
    found = verdict(comparison.verdicts(runs), "residual_vs_plain", "cifar_resnet20", "test")
    assert found["conclusion"] == "not_distinguishable" and found["seeds"] == 2


def test_without_predictions_one_seed_gives_no_interval_and_no_conclusion():
    """A shard published before predictions were kept: accuracies only."""
    runs = [dataclasses.replace(result(name, eval_correct=correct), predictions=None)
            for name, correct in (("cifar_resnet20", 700), ("cifar_plain20", 600))]
    found = verdict(comparison.verdicts(runs), "residual_vs_plain", "cifar_resnet20", "test")
    assert found["conclusion"] == "no_data" and found["gap"] is None
    assert found["sentence"].endswith("has no interval (after 3 epochs, 1 seed): no conclusion.")
    seed1 = [result("cifar_resnet20", 1, eval_correct=690), result("cifar_plain20", 1, eval_correct=610)]
    found = verdict(comparison.verdicts(runs + seed1), "residual_vs_plain", "cifar_resnet20", "test")
    assert found["gap"] == pytest.approx(0.09) and found["seeds"] == 2
    assert found["sentence"].startswith("On test (1,000 images)")  # from seed 1's predictions


def test_both_at_chance_is_at_chance_never_a_winner():
    verdicts = comparison.verdicts([result("cifar_resnet20", eval_correct=115),
                                  result("cifar_plain20", eval_correct=95)])
    found = verdict(verdicts, "residual_vs_plain", "cifar_resnet20", "test")
    assert found["conclusion"] == "at_chance"


def test_depth_verdicts_on_training_error_show_degradation():
    runs = [result("cifar_plain20", train_correct=900), result("cifar_plain56", train_correct=800),
            result("cifar_resnet20", train_correct=900), result("cifar_resnet56", train_correct=950)]
    verdicts = comparison.verdicts(runs)
    plain = verdict(verdicts, "depth", "cifar_plain56", "train")
    residual = verdict(verdicts, "depth", "cifar_resnet56", "train")
    assert plain["models"] == ["cifar_plain56", "cifar_plain20"]
    assert plain["conclusion"] == "deeper_worse" and "degradation" in plain["sentence"]
    assert residual["conclusion"] == "deeper_better"
    assert "no augmentation" in plain["sentence"]
    kinds = {(v["kind"], v["models"][0], v["split"]) for v in verdicts}
    assert len(kinds) == len(verdicts) == 8  # 2 pairs + 2 depth steps, on test and train


def test_a_diverged_twin_gives_a_diverged_verdict_not_a_crash():
    verdicts = comparison.verdicts([
        result("cifar_resnet56", eval_correct=700),
        result("cifar_plain56", status="diverged", epochs=1, diverged_epoch=2)])
    found = verdict(verdicts, "residual_vs_plain", "cifar_resnet56", "test")
    assert found["conclusion"] == "diverged" and found["gap"] is None and found["seeds"] == 0
    assert "cifar_plain56 seed 0 diverged (non-finite loss in epoch 2)" in found["sentence"]


def test_summary_averages_seeds():
    runs = [result("cifar_plain20", seed, eval_correct=600 + 100 * seed) for seed in range(2)]
    [entry] = comparison.summarize(comparison.rows(runs))
    assert entry["seeds"] == 2 and entry["ok"] == 2
    assert entry["val_accuracy_mean"] == pytest.approx(0.65)
    assert entry["val_accuracy_std"] == pytest.approx(math.sqrt(0.005))


def test_repeat_check_finds_the_first_differing_epoch_and_the_final_differences():
    """benchmarks/repeat_check.py: bitwise-equal repeats are reported equal; a repeat whose
    second epoch's validation accuracy moved is not, with that epoch and the differences."""
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "repeat_check.py"
    spec = importlib.util.spec_from_file_location("repeat_check", path)
    repeat_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repeat_check)

    first = result("cifar_resnet20", eval_correct=800, train_correct=900)
    same = repeat_check.compare(first, result("cifar_resnet20", eval_correct=800, train_correct=900))
    assert same["bitwise_equal"] and same["first_differing_epoch"] is None
    assert same["test_diff_points"] == 0.0 and same["max_abs_diff_val_accuracy"] == 0.0

    moved = result("cifar_resnet20", eval_correct=790, train_correct=905, curve=(0.3, 0.42, 0.5))
    row = repeat_check.compare(first, moved)
    assert not row["bitwise_equal"] and row["first_differing_epoch"] == 2
    assert row["max_abs_diff_val_accuracy"] == pytest.approx(0.02)
    assert row["test_accuracy"] == [80.0, 79.0] and row["test_diff_points"] == -1.0
    assert row["train_accuracy"] == [90.0, 90.5] and row["train_diff_points"] == 0.5
