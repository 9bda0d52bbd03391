"""What the Trainer writes and the report reads: pure Python, importable without TensorFlow or TFX.

A ModelRun artifact's URI holds two files:

- ``history.json`` (``RunHistory``): what was trained, how, and one ``EpochRecord`` per
  finished epoch; ``status`` says whether the run finished (``ok``) or its loss stopped being
  finite (``diverged``, with the epoch in ``diverged_epoch`` and only the finite epochs kept).
- ``predictions.json`` (``Predictions``, finished runs only): the final model's predicted class
  for every example of the eval split and of the fixed train subset, keyed by record id, so
  two models can be compared example by example.
- ``responses.json`` (``LayerResponses``, finished runs only): the standard deviation of each
  3×3 layer's response on eval images (the paper's Fig. 7).

A diverged run exports no model: its serving-model directory holds only ``DIVERGED_FILE``.

``TrainingConfig`` (the Trainer's part of the study's configuration, carried in its
custom_config) and the Transform options live here too, so that components never import the
pipeline layer; ``pipeline.config`` builds the whole configuration on top of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, Literal

HISTORY_FILE = "history.json"
PREDICTIONS_FILE = "predictions.json"
RESPONSES_FILE = "responses.json"
DIVERGED_FILE = "DIVERGED"  # the only file in a diverged run's serving-model directory

# which trainable weights weight decay applies to: every one (BatchNorm gamma/beta and the dense
# bias included, as fb.resnet.torch and torchvision's reference script do) or conv/dense kernels
WEIGHT_DECAY_SCOPES = ("all", "kernels")
# Transform's input normalisation, statistics over the train split: the paper's per-pixel mean
# subtraction (section 4.2), or per-channel mean and standard deviation
NORMALIZATIONS = ("per_channel", "per_pixel_mean")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything the Trainer does identically for every variant of the study."""

    epochs: int = 2
    batch_size: int = 128
    base_learning_rate: float = 0.1  # at batch 256; scaled linearly with batch_size
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_scope: Literal["all", "kernels"] = "all"  # see WEIGHT_DECAY_SCOPES
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_decay_epochs: tuple[int, ...] = ()  # "step": divide the rate by 10 at these epochs
    augment: bool = True  # random crop (pad 1/8) + horizontal flip, train split only
    shuffle_buffer: int = 10_000
    steps_per_epoch: int | None = None  # None: one pass over the train split
    eval_steps: int | None = None  # None: the whole eval split
    # The paper's training error: the model in inference mode, without augmentation, on the
    # first train_eval_examples train records (ExampleGen's seeded order), after every
    # train_eval_every epochs (0: after the last epoch only) and always after the last.
    train_eval_examples: int = 10_000
    train_eval_every: int = 1
    # auto: mixed_float16 with a GPU visible, mixed_bfloat16 on a CPU with bfloat16 units
    # (AVX512_BF16 or AMX), else float32; on: mixed_float16 on GPUs, mixed_bfloat16 on CPUs;
    # off: float32 (bitwise comparable with float32 runs); float16: mixed_float16 everywhere,
    # CPUs too (slow there: it tests the GPU path). Softmax and loss stay float32; under
    # mixed_float16 Keras wraps SGD in a LossScaleOptimizer (dynamic loss scaling, its scale
    # checkpointed with the optimizer).
    mixed_precision: Literal["auto", "on", "off", "float16"] = "auto"
    # XLA-compiles Keras' train, test and predict steps (jit_compile). The input pipeline
    # (decoding, the Transform graph, augmentation) runs in tf.data, outside the compiled step,
    # and so do the callbacks, predictions.json's argmax and the export; XLA fuses and reorders
    # float arithmetic, so an XLA run matches a non-XLA one to float rounding, not bitwise.
    xla: bool = False
    # Devices training is split over (data parallel, MirroredStrategy); batch_size is the
    # global batch, each replica takes batch_size / replicas. None: every GPU when there are
    # several (MirroredStrategy), else the default one-device strategy. N on a machine without
    # GPUs splits the CPU into N logical devices: the multi-GPU code path on a CPU, for tests.
    # BatchNorm normalises with each replica's own batch statistics, as multi-GPU training in
    # the paper's time did (see optimisation.compiled_model).
    replicas: int | None = None
    deterministic: bool = False  # bitwise-reproducible CPU runs (slower)
    # TensorFlow's intra-op threads (inter-op: 1); None: its default, one per usable core. Set
    # it, with deterministic = true, for identical results on machines with other core counts.
    intra_op_threads: int | None = None
    # The train split (and the eval and train-subset batches) decoded and transformed once and
    # kept in memory when they take at most this many MB as float32 (0: decode every epoch).
    # The same examples in the same order either way.
    memory_cache_mb: int = 2048

    @property
    def learning_rate(self) -> float:
        """The peak learning rate: the paper's 0.1 scaled by batch_size / 256."""
        return self.base_learning_rate * self.batch_size / 256


Status = Literal["ok", "diverged", "running"]
STATUSES: tuple[str, ...] = ("ok", "diverged", "running")


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One finished epoch. Losses are cross-entropies (no weight decay); None = not measured.

    ``train_*`` are Keras' running means over the epoch's steps (augmented images, BatchNorm in
    training mode); ``clean_train_*`` are the model at the end of the epoch in inference mode on
    the fixed train subset without augmentation (the paper's training error); ``val_*`` are the
    model at the end of the epoch on the split named by ``RunHistory.val_split``.
    """

    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    clean_train_loss: float | None
    clean_train_accuracy: float | None
    learning_rate: float
    seconds: float  # the epoch's wall time, its validation included
    images_per_second: float  # train images / seconds
    # the part of `seconds` spent validating, and the clean train measurement after the epoch
    # (not in `seconds`); None in histories written before they were recorded
    validation_seconds: float | None = None
    clean_train_seconds: float | None = None
    # the epoch's mean weight-decay term (Keras' loss minus the cross-entropy); None: not recorded
    weight_decay_term: float | None = None


@dataclasses.dataclass(frozen=True)
class RunHistory:
    """One (model, seed) training run."""

    model: str
    family: str
    depth: int
    residual: bool
    params: int
    seed: int
    batch_size: int
    image_size: int
    num_classes: int
    steps_per_epoch: int
    precision: str
    xla: bool
    training: dict[str, Any]
    val_split: str  # "validation", or the eval split's name ("test", "held_out", ...)
    eval_split: str  # what the eval split is: "test", "validation", "held_out" or "eval"
    train_subset: int  # examples in the fixed train subset of the clean_train_* numbers
    shortcut: str = "none"  # "A" | "B" | "C" on residual nets, "none" on plain ones
    device: str = ""  # what trained it, e.g. "CPU (2 cores)" or "2 x GPU (NVIDIA A100)"
    cpu_flags: tuple[str, ...] = ()  # processor.SPEED_FLAGS it has (avx2 ... amx_bf16)
    onednn: bool | None = None  # TensorFlow's oneDNN kernels on (None: not recorded)
    tensorflow: str = ""  # TensorFlow's version
    status: Status = "running"
    diverged_epoch: int | None = None
    epochs: tuple[EpochRecord, ...] = ()

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @property
    def final(self) -> EpochRecord | None:
        """The last finished epoch, or None before the first."""
        return self.epochs[-1] if self.epochs else None

    def to_json(self) -> str:
        return json.dumps(_finite_or_none(dataclasses.asdict(self)), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RunHistory:
        return from_dict(cls, json.loads(text))


@dataclasses.dataclass(frozen=True)
class SplitPredictions:
    """Predicted and true class of every example of one split, in one fixed order."""

    ids: tuple[str, ...]
    labels: tuple[int, ...]
    predicted: tuple[int, ...]

    def __post_init__(self):
        if not len(self.ids) == len(self.labels) == len(self.predicted):
            raise ValueError(f"ids, labels and predicted differ in length: {len(self.ids)}, "
                             f"{len(self.labels)}, {len(self.predicted)}")

    def correct_by_id(self) -> dict[str, bool]:
        return {i: t == p for i, t, p in zip(self.ids, self.labels, self.predicted)}

    @property
    def accuracy(self) -> float:
        return sum(t == p for t, p in zip(self.labels, self.predicted)) / max(len(self.ids), 1)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The final model's predictions on the eval split and on the fixed train subset."""

    eval: SplitPredictions
    train: SplitPredictions

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Predictions:
        return from_dict(cls, json.loads(text))


@dataclasses.dataclass(frozen=True)
class LayerResponses:
    """Std of each 3×3 layer's BatchNorm output (before addition and ReLU), input to output,
    of the trained model in inference mode over `images` eval images."""

    layers: tuple[str, ...]
    std: tuple[float, ...]
    images: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LayerResponses:
        return from_dict(cls, json.loads(text))


def from_dict(cls, values: Any, prefix: str = ""):
    """An instance of dataclass `cls` from plain values (parsed JSON, TOML or a protobuf
    Struct): nested dataclasses, lists as tuples, whole floats as ints where the field is an int.
    The one converter from plain data to this project's dataclasses. Raises ValueError naming
    unknown (with the allowed ones) or missing fields, and a value of the wrong type (naming
    the field, ``prefix`` first: nested fields as ``training.epochs``)."""
    if not dataclasses.is_dataclass(cls):
        return values
    if not isinstance(values, dict):
        raise ValueError(f"expected a table of {cls.__name__} settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(fields)}")
    kwargs = {name: _convert(hints[name], value, prefix + name) for name, value in values.items()}
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{cls.__name__}: missing field(s) {', '.join(missing)}")
    return cls(**kwargs)


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _convert(hint: Any, value: Any, name: str) -> Any:
    """`value` as field `name` of type `hint` holds it; ValueError naming the field, the type
    expected and the value when it is of another type (a string for a number, a string for a
    list, a number for a table)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def wrong(expected: str) -> ValueError:
        return ValueError(f"{name}: expected {expected}, got {value!r}")

    if value is None:
        return None
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # a protobuf Struct stores every number as a double
    if hint in _TYPE_NAMES:
        numeric = hint is float and isinstance(value, int)
        if isinstance(value, bool) != (hint is bool) or not (isinstance(value, hint) or numeric):
            raise wrong(_TYPE_NAMES[hint])
        return float(value) if numeric else value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise wrong(f"a table of {hint.__name__} settings")
        return from_dict(hint, value, f"{name}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong("a list")
        item = args[0] if args else Any
        return tuple(_convert(item, v, name) for v in value)
    if args and origin is not Literal:  # X | None: convert with the non-None member
        members = [a for a in args if a is not type(None)]
        return _convert(members[0], value, name) if len(members) == 1 else value
    return value


def _finite_or_none(value: Any) -> Any:
    """`value` with NaN and infinite floats replaced by None, recursively (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def finite(value: Any) -> float | None:
    """`value` as a float; None for a missing or non-finite (NaN, inf) value."""
    return float(value) if value is not None and math.isfinite(value) else None
