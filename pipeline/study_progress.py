"""A study's progress as it runs: which component, Trainer k of N, epoch e of E, images per
second, and the time left for the Trainer and for the study's training.

The local runner feeds it TFX's component start/finish records and the Trainer's
``progress_events.EpochDone`` events. Time left is estimated from the epochs measured so far
(their wall time, the clean training-error pass included), each model's epochs weighted by its
training FLOPs per image (``resnet_ablation.model_cost``), so a 56-layer net's epochs count about
three times a 20-layer net's before it has run one. It counts training only: the data half,
the Evaluators and the report come on top (minutes, in the studies here).

On a terminal the line is a tqdm bar that updates in place and component lines print above it;
anywhere else (a CI log, a file) every epoch prints one line, and one more while the epoch's
clean training error is measured.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from tqdm import tqdm

from resnet_ablation.progress_events import EpochDone, MeasuringTrainError


@dataclasses.dataclass
class _Trainer:
    component_id: str
    model: str
    seed: int
    cost: float  # relative training cost of one epoch
    epochs_done: int = 0
    finished: bool = False


def duration_text(seconds: float) -> str:
    """``2 h 05 min``, ``7 min``, ``45 s``: a time left, to the precision that means anything."""
    seconds = max(seconds, 0.0)
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds)} s"


class StudyProgress:
    """Tracks and shows one run of a study.

    `trainers`: (component id, model, seed) of every Trainer in the pipeline; `epochs`: each
    Trainer's epochs; `cost`: each model's relative training cost per epoch (any positive
    scale). `stream`, `tty` and `clock` are for tests."""

    def __init__(self, trainers: Sequence[tuple[str, str, int]], epochs: int,
                 cost: Mapping[str, float], *, stream: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.time):
        self.epochs = epochs
        self.trainers = {cid: _Trainer(cid, model, seed, cost[model])
                         for cid, model, seed in trainers}
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.current: str | None = None
        self.measured_seconds = 0.0
        self.measured_units = 0.0
        self.bar: tqdm | None = None
        self._started: list[str] = []  # Trainer ids in the order they started

    # --- what happens ------------------------------------------------------------------------

    def component_started(self, component_id: str) -> None:
        self._write(f"[{time.strftime('%H:%M:%S', time.localtime(self.clock()))}] "
                    f"{component_id} ...")
        if component_id in self.trainers:
            self.current = component_id
            self._number(self.trainers[component_id])

    def component_finished(self, component_id: str) -> None:
        """A Trainer that finished counts as done, whether it trained, resumed or was cached."""
        trainer = self.trainers.get(component_id)
        if trainer is not None:
            trainer.finished = True
            self._refresh()

    def event(self, event: EpochDone | MeasuringTrainError) -> None:
        """What the local runner passes every Trainer event to."""
        if isinstance(event, MeasuringTrainError):
            self.measuring(event)
        else:
            self.epoch_done(event)

    def measuring(self, event: MeasuringTrainError) -> None:
        """A line while the clean training error is measured (minutes at 224 pixels)."""
        trainer = self._trainer_of(event)
        if trainer is None:
            return
        self._show(f"Trainer {self._number(trainer)}/{len(self.trainers)} {trainer.model} seed "
                   f"{trainer.seed} · epoch {event.epoch}/{self.epochs} trained · measuring the "
                   f"training error on {event.images:,} images")

    def epoch_done(self, event: EpochDone) -> None:
        trainer = self._trainer_of(event)
        record = event.record
        if trainer is None:
            return
        if record.epoch <= trainer.epochs_done:
            return  # already counted
        trainer.epochs_done = record.epoch  # a resumed Trainer's first event skips ahead
        self.measured_seconds += record.seconds + (record.clean_train_seconds or 0.0)
        self.measured_units += trainer.cost  # the record times one epoch, resumed or not
        self._show(self.line(trainer, record))

    def _show(self, line: str) -> None:
        """The progress line: the bar's text on a terminal, a printed line elsewhere."""
        if self.tty:
            self._bar().set_description_str(line, refresh=False)
            self._refresh()
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # --- what is shown -----------------------------------------------------------------------

    def line(self, trainer: _Trainer, record) -> str:
        parts = [f"Trainer {self._number(trainer)}/{len(self.trainers)} "
                 f"{trainer.model} seed {trainer.seed}",
                 f"epoch {record.epoch}/{self.epochs}",
                 f"{record.images_per_second:,.0f} img/s"]
        if record.val_accuracy is not None:
            parts.append(f"val error {100 * (1 - record.val_accuracy):.1f} %")
        if record.clean_train_accuracy is not None:
            parts.append(f"train error {100 * (1 - record.clean_train_accuracy):.1f} %")
        left = self.seconds_left()
        if left is not None:
            parts.append(f"Trainer ~{duration_text(left[0])} left, "
                         f"training ~{duration_text(left[1])} left")
        return " · ".join(parts)

    def seconds_left(self) -> tuple[float, float] | None:
        """(the current Trainer's, the study's) training seconds left; None before any epoch
        has been measured."""
        if not self.measured_units:
            return None
        per_unit = self.measured_seconds / self.measured_units
        current = self.trainers.get(self.current) if self.current else None
        trainer_left = ((self.epochs - current.epochs_done) * current.cost * per_unit
                        if current and not current.finished else 0.0)
        return trainer_left, self._units_left() * per_unit

    def _number(self, trainer: _Trainer) -> int:
        """`trainer`'s place in the order the Trainers ran in (the runner's, not the
        configuration's): 1 + the Trainers that finished before it."""
        if trainer.component_id not in self._started:
            self._started.append(trainer.component_id)
        return self._started.index(trainer.component_id) + 1

    def _units_left(self) -> float:
        return sum((self.epochs - t.epochs_done) * t.cost
                   for t in self.trainers.values() if not t.finished)

    def _units_total(self) -> float:
        return self.epochs * sum(t.cost for t in self.trainers.values())

    def _trainer_of(self, event: EpochDone | MeasuringTrainError) -> _Trainer | None:
        current = self.trainers.get(self.current) if self.current else None
        if current and (current.model, current.seed) == (event.model, event.seed):
            return current
        return next((t for t in self.trainers.values()
                     if (t.model, t.seed) == (event.model, event.seed)), None)

    def _bar(self) -> tqdm:
        if self.bar is None:
            self.bar = tqdm(total=round(self._units_total(), 6), file=self.stream,
                            bar_format="{desc} |{bar:20}| {percentage:3.0f}%",
                            dynamic_ncols=True, leave=True)
        return self.bar

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.n = round(self._units_total() - self._units_left(), 6)
            self.bar.refresh()

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


def relative_costs(models: Sequence[str], image_size: int) -> dict[str, float]:
    """Each model's training FLOPs per image at `image_size`, in GFLOPs (builds each model
    once, in a moment, and forgets it)."""
    from resnet_ablation import model_cost, models as model_family
    from resnet_ablation.keras2 import keras

    costs = {}
    for name in models:
        model = model_family.build_model(name, 10, (image_size, image_size, 3))
        costs[name] = model_cost.train_flops(model) / 1e9
    keras.backend.clear_session()
    return costs
