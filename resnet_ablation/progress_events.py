"""Progress events from inside a component to whatever runs it in the same process.

The Trainer emits a ``MeasuringTrainError`` before an epoch's clean training-error pass and
an ``EpochDone`` after every epoch it records; the local runner listens and
draws the study's progress (``pipeline.study_progress``). Where nobody listens (Kubeflow, Vertex
AI, a test calling ``run_fn``) ``emit`` does nothing, and the Trainer prints Keras' own epoch
lines instead (``listening``). Imports nothing but the standard library and ``contracts``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

from resnet_ablation.contracts import EpochRecord


@dataclasses.dataclass(frozen=True)
class EpochDone:
    """Epoch ``record.epoch`` of `epochs` of (`model`, `seed`) is trained and recorded."""

    model: str
    seed: int
    epochs: int
    record: EpochRecord


@dataclasses.dataclass(frozen=True)
class MeasuringTrainError:
    """Epoch `epoch` of `epochs` of (`model`, `seed`) is trained; the clean training error on
    `images` train images is being measured (inference mode, no augmentation)."""

    model: str
    seed: int
    epoch: int
    epochs: int
    images: int


Event = EpochDone | MeasuringTrainError
_listeners: list[Callable[[Event], None]] = []


@contextlib.contextmanager
def listen(callback: Callable[[Event], None]) -> Iterator[None]:
    """Calls `callback` with every event emitted in this process while the block runs."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def listening() -> bool:
    """Whether anybody listens (the Trainer then leaves the epoch lines to them)."""
    return bool(_listeners)


def emit(event: Event) -> None:
    for callback in list(_listeners):
        callback(event)
