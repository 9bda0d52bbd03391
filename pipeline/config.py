"""The pipeline's configuration: one typed place for every setting, profiles as TOML files.

A profile (``pipeline/profiles/NAME.toml``) is a partial ``PipelineConfig``: top-level keys are
``PipelineConfig`` fields, the ``[training]`` table holds ``TrainingConfig`` fields. Command-line
flags override a profile through ``with_overrides``. ``validate`` checks everything that can be
checked before a component runs and raises ``ConfigError`` with one line saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import tomllib
from typing import Any

from resnet_ablation import contracts
from resnet_ablation.contracts import (  # re-exported: the configuration's Trainer part
    NORMALIZATIONS,
    WEIGHT_DECAY_SCOPES,
    TrainingConfig,
)
from resnet_ablation.data_source import DataSource, parse_data
from resnet_ablation.model_specs import MODEL_NAMES, SHORTCUT_OPTIONS, get_spec

PROFILES_DIR = pathlib.Path(__file__).parent / "profiles"
METADATA_FILE = "metadata.sqlite"  # ML Metadata's SQLite store, under the pipeline root
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_IMAGE_SIZE = 1024  # a larger square input is almost surely a typo, and costs memory
MAX_SEEDS = 100  # seeds per run: each adds a Trainer per model to the pipeline; shard above
_SYSTEM_TREES = (pathlib.Path("/proc"), pathlib.Path("/sys"), pathlib.Path("/dev"))
def is_uri(path: str) -> bool:
    """Whether `path` names remote storage (``scheme://...``) rather than a local path."""
    return "://" in path


class ConfigError(ValueError):
    """An invalid configuration; its message is one line naming the value and what is allowed."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One study: a data set, the variants compared on it, and how they are all trained."""

    profile: str = "custom"
    pipeline_name: str = "resnet-ablation"
    data: str = "imagefolder:data/cifar10_smoke"
    image_size: int = 224
    normalization: str = "per_channel"  # or "per_pixel_mean" (the paper's CIFAR input)
    models: tuple[str, ...] = ("resnet34", "plain34", "resnet50", "plain50")
    seeds: int = 1  # every variant trains once per seed first_seed .. first_seed + seeds - 1
    first_seed: int = 0  # a shard of a study: e.g. seeds = 1, first_seed = 2 runs seed 2 only
    train_limit: int | None = None  # keep only this many train images (deterministic subset)
    # keep only this many images of each class (a class-balanced subset, the same images for
    # every model, seed and machine: the first of each class by a hash of the record id)
    train_per_class: int | None = None
    eval_per_class: int | None = None
    eval_fraction: float = 0.2  # for sources without an eval split
    # held out of train by id hash for per-epoch validation (the paper's 45k/5k); 0: none, and
    # the per-epoch curve is on the eval split with no best-epoch selection
    validation_fraction: float = 0.0
    shortcut: str | None = None  # "A", "B" or "C"; None: the family's (paper) default
    pipeline_root: str = "runs/resnet-ablation"
    tfds_data_dir: str | None = None
    tfds_download_dir: str | None = None
    tfds_manual_dir: str | None = None
    beam_args: tuple[str, ...] = ()
    training: TrainingConfig = TrainingConfig()

    @functools.cached_property
    def source(self) -> DataSource:
        """``data`` parsed (``resnet_ablation.data_source.parse_data``); ValueError if invalid."""
        return parse_data(self.data)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.pipeline_root, METADATA_FILE)

    @property
    def seed_list(self) -> range:
        """The seeds every variant trains with."""
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """(residual, plain) twins that are both in the study, in study order."""
        specs = [get_spec(name) for name in self.models]
        return [(s.name, s.twin) for s in specs if s.residual and s.twin in self.models]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return config_json(self.to_dict())

    def fingerprint(self) -> str:
        """A short hash of the whole configuration."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


def config_json(values: dict[str, Any]) -> str:
    """The one text form of a configuration (``PipelineConfig.to_json`` of its values): what
    its fingerprint hashes, so a configuration read back from plain JSON keeps it."""
    return json.dumps(values, indent=2, sort_keys=True)


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.toml"))


def from_dict(values: dict[str, Any], where: str = "config") -> PipelineConfig:
    """Builds a PipelineConfig from plain values (a parsed profile, or a stored config);
    raises ConfigError naming `where` and the unknown setting."""
    try:
        return contracts.from_dict(PipelineConfig, values)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def is_profile_path(name: str) -> bool:
    """Whether a ``--profile`` value names a file (``PATH.toml`` or a path with a folder)
    rather than a profile of the repository's pipeline/profiles."""
    return name.endswith(".toml") or os.sep in name


def load_profile(name: str) -> PipelineConfig:
    """Reads profile NAME: ``pipeline/profiles/NAME.toml``, or the TOML file NAME itself when
    it is a path (``is_profile_path``). Relative paths inside a repository profile are relative
    to the repository; inside a profile file elsewhere, to that file's folder. Raises
    ConfigError for an unknown profile, a missing file or invalid TOML."""
    if is_profile_path(name):
        path = pathlib.Path(name).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"profile file {name} does not exist (a profile outside "
                              f"pipeline/profiles is given as a path to a .toml file)")
        base, label = path.parent, path.stem
    else:
        path, base, label = PROFILES_DIR / f"{name}.toml", REPO_ROOT, name
        if not path.is_file():
            raise ConfigError(f"unknown profile {name!r}; available: {', '.join(profile_names())}"
                              f" (or a path to a .toml file)")
    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"profile {name} ({path}) is not valid TOML: {error}") from None
    return from_dict({"profile": label, **_anchor_paths(values, base)}, where=f"profile {name}")


def with_settings(config: PipelineConfig, settings: list[str] | tuple[str, ...]) -> PipelineConfig:
    """`config` with each ``KEY=VALUE`` of `settings` applied in order (``--set``): KEY is a
    field (``epochs`` is not one: ``training.epochs``), VALUE a TOML value (``40``, ``1e-4``,
    ``true``, ``[20, 30]``, ``"text"``) or else the text itself (``off``, ``imagefolder:/x``).
    Relative paths in ``data`` and ``pipeline_root`` are relative to the working directory.
    Raises ConfigError naming the setting: no ``=``, an unknown key, a value of the wrong type.
    """
    values = config.to_dict()
    anchored = {}
    for setting in settings:
        key, equals, text = setting.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ConfigError(f"--set {setting!r}: expected KEY=VALUE, e.g. "
                              f"--set training.epochs=40")
        *tables, field = key.split(".")
        target = values
        for depth, table in enumerate(tables):
            if not isinstance(target.get(table), dict):
                raise ConfigError(f"--set {setting!r}: {'.'.join(tables[:depth + 1])} is not a "
                                  f"table of settings (the one table is training)")
            target = target[table]
        if field not in target:
            raise ConfigError(f"--set {setting!r}: unknown setting {key}; allowed: "
                              f"{', '.join(sorted(target))}")
        target[field] = _setting_value(text.strip())
        if not tables and field in ("data", "pipeline_root"):
            anchored[field] = target[field]
    values.update(_anchor_paths(anchored, pathlib.Path.cwd()))
    return from_dict(values, where="--set")


def _setting_value(text: str) -> Any:
    """A ``--set`` value: parsed as TOML if it is a TOML value, else the text as a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _anchor_paths(values: dict[str, Any], base: pathlib.Path) -> dict[str, Any]:
    """Makes a relative pipeline_root and imagefolder path absolute, relative to `base`."""
    values = dict(values)
    root = values.get("pipeline_root")
    if isinstance(root, str) and root and not is_uri(root) and not os.path.isabs(root):
        values["pipeline_root"] = os.path.normpath(base / root)
    if isinstance(values.get("data"), str):
        try:
            values["data"] = parse_data(values["data"], base).spec
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return values


def with_overrides(config: PipelineConfig, **overrides: Any) -> PipelineConfig:
    """Returns `config` with the non-None overrides applied; keys may be TrainingConfig fields."""
    training_fields = {field.name for field in dataclasses.fields(TrainingConfig)}
    given = {key: value for key, value in overrides.items() if value is not None}
    training = {key: given.pop(key) for key in list(given) if key in training_fields}
    unknown = sorted(set(given) - {field.name for field in dataclasses.fields(PipelineConfig)})
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    return dataclasses.replace(
        config, **given, training=dataclasses.replace(config.training, **training))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: PipelineConfig) -> PipelineConfig:
    """Checks `config` before anything runs; returns it unchanged or raises ConfigError."""
    train = config.training
    unknown = [name for name in config.models if name not in MODEL_NAMES]
    _require(not unknown, f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(MODEL_NAMES)}")
    _require(len(config.models) > 0, "models: name at least one model")
    _require(len(set(config.models)) == len(config.models), f"models: duplicates in {config.models}")
    for key in ("image_size", "seeds"):
        _require(getattr(config, key) >= 1, f"{key} must be a positive integer, got {getattr(config, key)}")
    for key in ("epochs", "batch_size"):
        _require(getattr(train, key) >= 1, f"{key} must be a positive integer, got {getattr(train, key)}")
    _require(train.train_eval_examples >= 1,
             f"train_eval_examples must be a positive integer, got {train.train_eval_examples}")
    _require(train.memory_cache_mb >= 0,
             f"memory_cache_mb must be 0 (never cache) or more, got {train.memory_cache_mb}")
    _require(train.train_eval_every >= 0,
             "train_eval_every must be 0 (last epoch only) or a positive integer, "
             f"got {train.train_eval_every}")
    for key in ("steps_per_epoch", "eval_steps", "intra_op_threads"):
        value = getattr(train, key)
        _require(value is None or value >= 1, f"{key} must be a positive integer, got {value}")
    _require(config.seeds <= MAX_SEEDS,
             f"seeds {config.seeds} is above {MAX_SEEDS}: every seed adds a Trainer per model "
             f"to the pipeline; run a study in shards (--seeds N --first-seed K) and merge them")
    _require(config.first_seed >= 0, f"first_seed must be 0 or more, got {config.first_seed}")
    for key in ("train_limit", "train_per_class", "eval_per_class"):
        value = getattr(config, key)
        _require(value is None or value >= 1, f"{key} must be a positive integer, got {value}")
    _require(config.train_limit is None or config.train_per_class is None,
             "train_limit and train_per_class exclude each other: give one")
    _require(0 < config.eval_fraction < 1, f"eval_fraction must be in (0, 1), got {config.eval_fraction}")
    _require(0 <= config.validation_fraction < 1,
             f"validation_fraction must be in [0, 1), got {config.validation_fraction}")
    _require(config.shortcut is None or config.shortcut in SHORTCUT_OPTIONS,
             f"shortcut must be one of {', '.join(SHORTCUT_OPTIONS)} (or unset for the family "
             f"default), got {config.shortcut!r}")
    _require(config.normalization in NORMALIZATIONS,
             f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
             f"got {config.normalization!r}")
    _require(train.weight_decay_scope in WEIGHT_DECAY_SCOPES,
             f"weight_decay_scope must be one of {', '.join(WEIGHT_DECAY_SCOPES)}, "
             f"got {train.weight_decay_scope!r}")
    _require(train.base_learning_rate > 0,
             f"base_learning_rate must be positive, got {train.base_learning_rate}")
    _require(train.schedule in ("cosine", "step", "constant"),
             f"schedule must be cosine, step or constant, got {train.schedule!r}")
    _require(train.mixed_precision in ("auto", "on", "off", "float16"),
             "mixed_precision must be auto, on or off (or float16: mixed_float16 even on a "
             f"CPU), got {train.mixed_precision!r}")
    _require(train.replicas is None or (type(train.replicas) is int and train.replicas >= 1),
             f"replicas must be a positive integer (or unset: every GPU), got {train.replicas!r}")
    _require(train.replicas is None or train.batch_size % train.replicas == 0,
             f"batch_size {train.batch_size} must divide into replicas = {train.replicas} "
             "equal per-replica batches")
    _require(config.image_size <= MAX_IMAGE_SIZE,
             f"image_size {config.image_size} is above {MAX_IMAGE_SIZE}: every image would be "
             f"resized to {config.image_size}x{config.image_size} (use 32 for CIFAR, 224 for "
             f"ImageNet-size photos)")
    try:
        config.source.check()
    except ValueError as error:
        raise ConfigError(f"data: {error}") from None
    _check_tfds_data_dir(config)
    _check_writable(config.pipeline_root)
    return config


def _check_tfds_data_dir(config: PipelineConfig) -> None:
    """A local tfds_data_dir must be a folder that holds the set (its ``NAME`` folder), or an
    empty writable folder for tfds to prepare it in."""
    folder = config.tfds_data_dir
    if config.source.kind != "tfds" or folder is None or is_uri(folder):
        return
    path = pathlib.Path(folder).expanduser()
    _require(path.is_dir(), f"tfds_data_dir {folder} is not a folder: give the folder that "
                            f"holds prepared tfds sets (tfds' data_dir)")
    name = config.source.name.split("/")[0]
    fresh = not any(path.iterdir()) and os.access(path, os.W_OK | os.X_OK)
    _require((path / name).is_dir() or fresh,
             f"tfds_data_dir {folder} holds no prepared {name!r} (no {path / name}) and is not "
             f"an empty folder for tfds to prepare it in: give the folder that holds it")


def _check_writable(root: str) -> None:
    if is_uri(root):  # gs://, s3://: checked by the orchestrator at run time
        return
    path = pathlib.Path(root).resolve()
    _require(not any(path == tree or tree in path.parents for tree in _SYSTEM_TREES),
             f"pipeline root {root} is inside {path.parts[1] and '/' + path.parts[1]}, a kernel "
             f"file system: choose a folder on disk, e.g. --pipeline-root runs/NAME")
    existing = next(p for p in (path, *path.parents) if p.exists())
    _require(existing.is_dir() and os.access(existing, os.W_OK | os.X_OK),
             f"pipeline root {root} is not writable ({existing} is not a writable directory)")
