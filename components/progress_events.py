"""Progress events from inside a component to whatever runs it in the same process.

The Trainer emits an ``EpochDone`` after every epoch it records; the local runner listens and
draws the study's progress (``pipeline.study_progress``). Where nobody listens (Kubeflow, Vertex
AI, a test calling ``run_fn``) ``emit`` does nothing, and the Trainer prints Keras' own epoch
lines instead (``listening``). Imports nothing but the standard library and ``contracts``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

from components.contracts import EpochRecord


@dataclasses.dataclass(frozen=True)
class EpochDone:
    """Epoch ``record.epoch`` of `epochs` of (`model`, `seed`) is trained and recorded."""

    model: str
    seed: int
    epochs: int
    record: EpochRecord


_listeners: list[Callable[[EpochDone], None]] = []


@contextlib.contextmanager
def listen(callback: Callable[[EpochDone], None]) -> Iterator[None]:
    """Calls `callback` with every event emitted in this process while the block runs."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def listening() -> bool:
    """Whether anybody listens (the Trainer then leaves the epoch lines to them)."""
    return bool(_listeners)


def emit(event: EpochDone) -> None:
    for callback in list(_listeners):
        callback(event)
