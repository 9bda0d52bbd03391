"""What a study will run and roughly cost, before it runs (``ablation plan``).

For a configuration and a GPU kind: the Trainers, epochs and train images per epoch; per model
the training FLOPs per image (``resnet_ablation.model_cost``), the activation memory one replica
holds at its share of the batch, and an estimated training time from a published throughput.
Every time is an **estimate**: a published ResNet-50 rate scaled by each model's FLOPs per
image, which ignores how well a net uses the GPU (measured on a CPU, ResNet-34 trained twice
as fast as ResNet-50 though its FLOPs are 90 % of it) and whether the input pipeline keeps up.

Memory per replica is estimated as every layer's output for the replica's images (what
training keeps for the backward pass), at 2 bytes under mixed precision and 4 in float32, plus
the weights, their gradients and SGD's momentum in float32; a batch whose estimate exceeds the
GPU's memory is refused (``ConfigError``), as it would fail with an out-of-memory error there.
"""

from __future__ import annotations

import dataclasses

from pipeline import config as config_lib
from pipeline.study_progress import duration_text

RESNET50_TRAIN_GFLOPS_224 = 24.54  # resnet_ablation.model_cost.train_flops(resnet50 at 224) / 1e9


@dataclasses.dataclass(frozen=True)
class GpuKind:
    """A GPU kind: its memory and, where published, ResNet-50's training rate on it."""

    name: str
    memory_gb: float
    resnet50_images_per_second: float | None  # mixed precision, 224x224; None: none published
    source: str = ""


GPU_KINDS = {
    "a100-80gb": GpuKind(
        "NVIDIA A100 80 GB", 80, 2375,
        "NVIDIA Deep Learning Examples, TensorFlow2 ResNet-50 v1.5, mixed precision + XLA, "
        "224x224, batch 256"),
    "a100-40gb": GpuKind("NVIDIA A100 40 GB", 40, None),
    "v100-16gb": GpuKind("NVIDIA V100 16 GB", 16, None),
    "v100-32gb": GpuKind("NVIDIA V100 32 GB", 32, None),
    "t4": GpuKind("NVIDIA T4", 16, None),
    "l4": GpuKind("NVIDIA L4", 24, None),
    "h100-80gb": GpuKind("NVIDIA H100 80 GB", 80, None),
}


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    name: str
    params: int
    train_gflops_per_image: float
    activation_gb_per_replica: float
    state_gb: float  # weights, gradients and momentum

    @property
    def memory_gb(self) -> float:
        return self.activation_gb_per_replica + self.state_gb


@dataclasses.dataclass(frozen=True)
class StudyPlan:
    config: config_lib.PipelineConfig
    gpu: GpuKind
    gpus: int
    train_images: int | None  # per epoch; None: unknown before ingestion
    models: tuple[ModelPlan, ...]

    @property
    def trainers(self) -> int:
        return len(self.config.models) * self.config.seeds

    @property
    def per_replica_batch(self) -> int:
        return max(self.config.training.batch_size // self.gpus, 1)

    def estimated_hours(self) -> float | None:
        """Training time of the whole study on `gpus` of `gpu` (an estimate), or None."""
        rate = self.gpu.resnet50_images_per_second
        if rate is None or self.train_images is None:
            return None
        epoch_images = self.train_images * self.config.training.epochs * self.config.seeds
        seconds = sum(epoch_images * m.train_gflops_per_image / RESNET50_TRAIN_GFLOPS_224
                      / (rate * self.gpus) for m in self.models)
        return seconds / 3600


def gpu_kind(name: str) -> GpuKind:
    kind = GPU_KINDS.get(name.lower())
    if kind is None:
        raise config_lib.ConfigError(f"unknown GPU kind {name!r}; known: {', '.join(GPU_KINDS)}")
    return kind


def make_plan(config: config_lib.PipelineConfig, gpus: int = 1,
              gpu: str = "a100-80gb") -> StudyPlan:
    """The plan of `config` on `gpus` GPUs of kind `gpu`; ConfigError for an unknown kind, a
    non-positive count, or a batch whose estimated memory exceeds one GPU's."""
    if gpus < 1:
        raise config_lib.ConfigError(f"--gpus must be a positive integer, got {gpus}")
    kind = gpu_kind(gpu)
    plan = StudyPlan(config, kind, gpus, train_images(config),
                     tuple(_model_plan(name, config, gpus) for name in config.models))
    too_big = [m for m in plan.models if m.memory_gb > kind.memory_gb]
    if too_big:
        worst = max(too_big, key=lambda m: m.memory_gb)
        raise config_lib.ConfigError(
            f"batch {config.training.batch_size} on {gpus} x {kind.name}: {worst.name} needs "
            f"about {worst.memory_gb:.0f} GB per GPU ({plan.per_replica_batch} images of "
            f"{config.image_size}x{config.image_size}), more than its {kind.memory_gb:.0f} GB: "
            f"lower training.batch_size or use more GPUs")
    return plan


def _model_plan(name: str, config: config_lib.PipelineConfig, gpus: int) -> ModelPlan:
    from resnet_ablation import model_cost, models
    from resnet_ablation.keras2 import keras

    size = config.image_size
    model = models.build_model(name, 10, (size, size, 3), shortcut=config.shortcut)
    bytes_per_value = 4 if config.training.mixed_precision == "off" else 2
    replica_batch = max(config.training.batch_size // gpus, 1)
    params = model.count_params()
    plan = ModelPlan(
        name=name, params=params,
        train_gflops_per_image=model_cost.train_flops(model) / 1e9,
        activation_gb_per_replica=(model_cost.activation_elements(model) * replica_batch
                                   * bytes_per_value / 1e9),
        state_gb=params * 4 * 3 / 1e9)
    keras.backend.clear_session()
    return plan


def train_images(config: config_lib.PipelineConfig) -> int | None:
    """Train images per epoch before any subset or hold-out is applied, where that is known
    without ingesting: the files of an image folder's train split, a tfds set's recorded
    split size; then the subset settings. None when unknown."""
    from resnet_ablation import data_source

    source = config.source
    try:
        if source.kind == "imagefolder":
            folder = data_source.list_imagefolder(source.path)
            per_class: dict[int, int] = {}
            for file in folder.files:
                if data_source.logical_split(file.source_split) == data_source.TRAIN:
                    per_class[file.label] = per_class.get(file.label, 0) + 1
        else:
            return _tfds_train_images(config)
    except (OSError, ValueError):
        return None
    if config.train_per_class:
        per_class = {label: min(n, config.train_per_class) for label, n in per_class.items()}
    total = sum(per_class.values())
    return min(total, config.train_limit) if config.train_limit else total


def _tfds_train_images(config: config_lib.PipelineConfig) -> int | None:
    import tensorflow_datasets as tfds

    try:
        splits = tfds.builder(config.source.name, data_dir=config.tfds_data_dir).info.splits
        total = splits["train"].num_examples
    except Exception:  # noqa: BLE001  (not prepared, no recorded sizes: unknown)
        return None
    if not total:
        return None
    return min(total, config.train_limit) if config.train_limit else total


def describe(plan: StudyPlan) -> str:
    """The plan as lines of text for a terminal."""
    config, training = plan.config, plan.config.training
    images = f"{plan.train_images:,}" if plan.train_images is not None else "unknown until ingested"
    lines = [
        f"Study {config.pipeline_name} (profile {config.profile}): data {config.data}, "
        f"{config.image_size}x{config.image_size}",
        f"Components: ImageExampleGen, StatisticsGen, SchemaGen, SchemaCurator, "
        f"ExampleValidator, Transform, {plan.trainers} Trainers "
        f"({len(config.models)} models x {config.seeds} seeds), Evaluators, AblationReport",
        f"Training: {training.epochs} epochs of {images} train images, batch "
        f"{training.batch_size} = {plan.gpus} x {plan.per_replica_batch} per GPU, precision "
        f"{'float32' if training.mixed_precision == 'off' else 'mixed (float16 on GPUs)'}",
        f"On {plan.gpus} x {plan.gpu.name} ({plan.gpu.memory_gb:.0f} GB each):",
        f"  {'model':<16}{'params':>12}{'GFLOPs/img':>12}{'memory/GPU':>12}",
    ]
    for model in plan.models:
        lines.append(f"  {model.name:<16}{model.params:>12,}{model.train_gflops_per_image:>12.2f}"
                     f"{model.memory_gb:>10.1f} GB")
    hours = plan.estimated_hours()
    if hours is None:
        reason = ("no published throughput for this GPU kind in the table"
                  if plan.gpu.resnet50_images_per_second is None else "train images unknown")
        lines.append(f"Estimated training time: not estimated ({reason})")
    else:
        lines.append(f"Estimated training time: about {duration_text(hours * 3600)} — an "
                     f"ESTIMATE, from "
                     f"{plan.gpu.resnet50_images_per_second:,.0f} img/s for ResNet-50 "
                     f"({plan.gpu.source}) scaled by each model's FLOPs; not a measurement")
    lines.append("Memory per GPU is an estimate too: layer outputs for the backward pass plus "
                 "weights, gradients and momentum.")
    return "\n".join(lines)
