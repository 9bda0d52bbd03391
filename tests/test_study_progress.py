"""pipeline.study_progress: the study's progress line and its time left, on a fake clock."""

from __future__ import annotations

import io

import pytest

from pipeline.study_progress import StudyProgress, duration_text
from resnet_ablation.contracts import EpochRecord
from resnet_ablation.progress_events import EpochDone

TRAINERS = [("Trainer.small", "small", 0), ("Trainer.big", "big", 0)]


def record(epoch: int, seconds: float, clean: float | None = None, val: float = 0.75):
    return EpochRecord(epoch=epoch, train_loss=1.0, train_accuracy=0.5, val_loss=1.0,
                       val_accuracy=val, clean_train_loss=None,
                       clean_train_accuracy=0.9 if clean is not None else None,
                       learning_rate=0.1, seconds=seconds, images_per_second=5000 / seconds,
                       clean_train_seconds=clean)


def progress(tty: bool = False) -> tuple[StudyProgress, io.StringIO]:
    stream = io.StringIO()
    return StudyProgress(TRAINERS, 3, {"small": 1.0, "big": 3.0}, stream=stream, tty=tty,
                         clock=lambda: 0.0), stream


def test_time_left_weighs_each_model_by_its_cost_from_the_measured_epochs():
    study, stream = progress()
    study.component_started("ImageExampleGen")
    study.component_started("Trainer.small")
    assert study.seconds_left() is None  # nothing measured yet
    study.epoch_done(EpochDone("small", 0, 3, record(1, 8.0, clean=2.0)))
    # 10 s for 1 unit: small has 2 epochs x 1 left, big 3 epochs x 3
    assert study.seconds_left() == pytest.approx((20.0, 110.0))
    study.epoch_done(EpochDone("small", 0, 3, record(2, 12.0)))  # now 22 s for 2 units
    assert study.seconds_left() == pytest.approx((11.0, 10 * 11.0))
    study.epoch_done(EpochDone("small", 0, 3, record(3, 11.0)))
    study.component_finished("Trainer.small")
    study.component_started("Trainer.big")
    assert study.seconds_left() == pytest.approx((99.0, 99.0))  # 33 s / 3 units, x 9
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[00:00:00] ImageExampleGen ..." or lines[0].endswith("ImageExampleGen ...")
    assert lines[2] == ("Trainer 1/2 small seed 0 · epoch 1/3 · 625 img/s · val error 25.0 % · "
                        "train error 10.0 % · Trainer ~20 s left, training ~2 min left")
    assert lines[4].startswith("Trainer 1/2 small seed 0 · epoch 3/3 · ")
    assert lines[-1].endswith("Trainer.big ...")


def test_a_cached_trainer_leaves_the_estimate_and_a_resumed_one_times_one_epoch():
    study, stream = progress()
    study.component_started("Trainer.small")
    study.component_finished("Trainer.small")  # cached: no epoch events at all
    study.component_started("Trainer.big")
    study.epoch_done(EpochDone("big", 0, 3, record(2, 30.0)))  # resumed after epoch 1
    # 30 s timed one epoch of big (3 units); small is done, big has one epoch left
    assert study.seconds_left() == pytest.approx((30.0, 30.0))
    study.epoch_done(EpochDone("big", 0, 3, record(2, 99.0)))  # the same epoch again: ignored
    assert study.seconds_left() == pytest.approx((30.0, 30.0))
    assert "Trainer 2/2 big seed 0 · epoch 2/3" in stream.getvalue()


def test_on_a_terminal_the_line_updates_in_place_and_component_lines_print_above_it():
    study, stream = progress(tty=True)
    study.component_started("Trainer.small")
    study.epoch_done(EpochDone("small", 0, 3, record(1, 10.0)))
    study.epoch_done(EpochDone("small", 0, 3, record(2, 10.0)))
    study.component_started("Evaluator")
    study.close()
    text = stream.getvalue()
    assert "\r" in text and "epoch 2/3" in text and "Evaluator ..." in text
    assert text.count("epoch 1/3") == 1  # drawn once, then overwritten


@pytest.mark.parametrize("seconds, text", [(45.4, "45 s"), (420, "7 min"), (7500, "2 h 05 min"),
                                           (-3, "0 s")])
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


def test_the_clean_training_error_pass_gets_a_line_of_its_own():
    from resnet_ablation.progress_events import MeasuringTrainError

    study, stream = progress()
    study.component_started("Trainer.big")
    study.event(MeasuringTrainError("big", 0, 1, 3, 2000))
    study.event(EpochDone("big", 0, 3, record(1, 30.0, clean=6.0)))
    lines = stream.getvalue().splitlines()
    assert lines[1] == ("Trainer 1/2 big seed 0 · epoch 1/3 trained · measuring the training "
                        "error on 2,000 images")
    assert lines[2].startswith("Trainer 1/2 big seed 0 · epoch 1/3 · ")
    assert study.seconds_left() == pytest.approx((72.0, 72.0 + 36.0))  # 36 s a unit of 3
