"""Where the pipeline's images come from: one data string, its splits and labels.

Pure Python; ``tensorflow_datasets`` is imported only inside the functions that need it. The
image checks are in ``resnet_ablation.image_checks``.

A data set is named by one string (``parse_data``):

- ``tfds:NAME[:CONFIG]``: any tensorflow-datasets image classification set, i.e. one with an
  ``Image`` and a ``ClassLabel`` feature (``tfds:cifar10``, ``tfds:cats_vs_dogs``);
- ``imagefolder:PATH``: ``PATH/<split>/<class>/<file>``, or ``PATH/<class>/<file>`` with no split
  level. Hidden entries (names starting with ``.``) are ignored; every other file in a class
  folder (at any depth) is a candidate image, whatever its extension: content decides.

Splits: the pipeline has two logical splits, ``train`` and ``eval``, and an optional third,
``validation``. ``SPLIT_NAMES`` maps source split names onto train and eval; any other source
split name is an error. Hold-outs of train are deterministic: a train record is moved by
``id_fraction(record_id)``, a stable SHA-256 hash of its id mapped to [0, 1), into one of two
disjoint bands (``SplitPlan.bands``):

- ``eval`` gets the records with id_fraction in [0, eval_fraction), only when the source has no
  eval split (an image folder without split level, or a tfds set with only ``train``);
- ``validation`` (only when ``validation_fraction`` > 0) gets those in [low, low +
  validation_fraction), where low is eval_fraction when eval is held out as above, else 0.

Every other train record stays in ``train``; a source's eval split goes to ``eval`` whole. So
validation never overlaps train or eval, and e.g. CIFAR-10 (train and test) with
validation_fraction 0.1 gives about 45,000 train / 5,000 validation / 10,000 eval (the paper's
protocol). The source of ``eval`` is named by ``eval_split_name``: ``test``, ``validation``,
``eval`` or ``held_out``. Note the two meanings of "validation": a source split of that name
feeds ``eval``; the logical split ``validation`` is always carved out of train.

Record ids are stable per record: the path relative to the image folder root with ``/``
separators (``train/cat/cat.1.jpg``), or the tfds id (``cats_vs_dogs-train.tfrecord-00000-of-
00008__12``; it depends on how the tfds set was prepared, e.g. its shard count).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Literal

TRAIN, EVAL, VALIDATION = "train", "eval", "validation"

# The contract of ImageExampleGen's output, read by Transform, SchemaCurator and the Trainer:
# tf.Example feature names, and the files written beside the splits in the Examples URI.
IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, ID_KEY = "image", "label", "label_name", "id"
LABELS_FILE, SKIPPED_FILE = "labels.json", "skipped.json"
LOGICAL_SPLITS = (TRAIN, EVAL)
SPLIT_NAMES: Mapping[str, str] = {
    "train": TRAIN, "test": EVAL, "validation": EVAL, "val": EVAL, "eval": EVAL, "valid": EVAL}
DEFAULT_EVAL_FRACTION = 0.2
# What an eval split is, by the name of the source split(s) feeding it (``eval_split_name``).
EVAL_SPLIT_NAMES: Mapping[str, str] = {
    "test": "test", "validation": "validation", "val": "validation", "valid": "validation",
    "eval": "eval"}
HELD_OUT = "held_out"  # eval_split_name of an eval split hashed out of train

_FORMS = ("'tfds:NAME[:CONFIG]' (a tensorflow-datasets image classification set, e.g. "
          "'tfds:cifar10') or 'imagefolder:PATH' (PATH/<split>/<class>/<file> or "
          "PATH/<class>/<file>)")
_TFDS_SPEC = re.compile(r"tfds:([a-z0-9_]+)(?::([A-Za-z0-9_.\-]+))?")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A parsed data string: ``name`` is set for tfds (``NAME`` or ``NAME/CONFIG``), ``path``
    (absolute) for an image folder; the other field is None."""

    kind: Literal["tfds", "imagefolder"]
    name: str | None = None
    path: str | None = None

    def check(self) -> None:
        """Raises ValueError naming the path when an image folder does not exist.

        A tfds name is checked when the data set is opened (``open_tfds``)."""
        if self.kind == "imagefolder" and not os.path.isdir(self.path):
            raise ValueError(f"image folder {self.path!r} does not exist or is not a directory")

    @property
    def spec(self) -> str:
        """The data string of this source (an image folder's path absolute)."""
        if self.kind == "imagefolder":
            return f"imagefolder:{self.path}"
        return "tfds:" + self.name.replace("/", ":")

    def relative_to(self, root: str | os.PathLike) -> str | None:
        """The data string with the image folder's path relative to `root` (``/`` separators),
        None if the folder lies outside `root`; a tfds source's ``spec``."""
        if self.kind != "imagefolder":
            return self.spec
        relative = os.path.relpath(self.path, root)
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            return None
        return f"imagefolder:{relative.replace(os.sep, '/')}"


def parse_data(spec: str, base: str | os.PathLike | None = None) -> DataSource:
    """Parses a data string (see the module docstring); raises ValueError naming it if invalid.

    An image folder's path has ``~`` expanded and, if relative, is taken relative to `base`
    (default: the working directory). Only the syntax is checked; ``DataSource.check`` checks
    that an image folder exists.
    """
    if isinstance(spec, str) and spec.startswith("imagefolder:") and spec[len("imagefolder:"):]:
        path = os.path.expanduser(spec[len("imagefolder:"):])
        return DataSource("imagefolder", path=os.path.abspath(os.path.join(base or os.getcwd(), path)))
    match = _TFDS_SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if match:
        name, config = match.groups()
        return DataSource("tfds", name=f"{name}/{config}" if config else name)
    raise ValueError(f"invalid data {spec!r}: expected {_FORMS}")


# --- splits ---------------------------------------------------------------------------------

def logical_split(source_split: str) -> str:
    """Maps a source split name onto ``train`` or ``eval``; raises ValueError naming it."""
    try:
        return SPLIT_NAMES[source_split]
    except KeyError:
        raise ValueError(f"unknown split {source_split!r}: expected one of "
                         f"{', '.join(SPLIT_NAMES)}") from None


def id_hash(record_id: str) -> int:
    """A stable 64-bit hash of a record id (SHA-256; the same on every machine and run)."""
    return int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:8], "big")


def id_fraction(record_id: str) -> float:
    """The record id's stable hash mapped to [0, 1)."""
    return id_hash(record_id) / 2.0 ** 64


def limit_key(record_id: str) -> tuple[int, str]:
    """The order ``train_limit`` keeps records in (the first N of it): the stable hash, ties
    broken by the id."""
    return id_hash(record_id), record_id


def logical_splits(validation_fraction: float = 0.0) -> tuple[str, ...]:
    """The logical splits written: train and eval, and validation when its fraction is > 0."""
    return LOGICAL_SPLITS + ((VALIDATION,) if validation_fraction > 0 else ())


def eval_split_name(source_splits) -> str:
    """What the eval split really is, for reports: ``test``, ``validation`` (from a source split
    ``validation``, ``val`` or ``valid``) or ``eval``, by the source split(s) feeding it (sorted
    and joined by ``+`` if several do, e.g. ``test+validation``); ``held_out`` when no source
    split maps to eval, i.e. eval is hashed out of train. Raises ValueError for an unknown name.
    """
    names = sorted({EVAL_SPLIT_NAMES[name] for name in source_splits
                    if logical_split(name) == EVAL})
    return "+".join(names) or HELD_OUT


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Which source splits feed each logical split, and which split a record goes to.

    Build it with ``SplitPlan.of``, which validates the source split names and the fractions.
    """

    source_splits: tuple[str, ...]
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    validation_fraction: float = 0.0

    @classmethod
    def of(cls, source_splits, eval_fraction: float = DEFAULT_EVAL_FRACTION,
           validation_fraction: float = 0.0) -> SplitPlan:
        """Raises ValueError for an unknown split name, a missing train split, a bad fraction,
        or hold-outs that would leave nothing of train (see ``bands``)."""
        check_eval_fraction(eval_fraction)
        check_validation_fraction(validation_fraction)
        names = tuple(sorted(source_splits))
        if TRAIN not in [logical_split(name) for name in names]:
            raise ValueError(f"no train split among the source splits {list(names)}")
        plan = cls(names, eval_fraction, validation_fraction)
        if sum(high - low for _, low, high in plan.bands) >= 1.0:
            raise ValueError(f"eval_fraction {eval_fraction} + validation_fraction "
                             f"{validation_fraction} leave no train records: the source splits "
                             f"{list(names)} have no eval split, so eval is held out of train "
                             "too; their sum must be below 1")
        return plan

    @functools.cached_property
    def has_eval_source(self) -> bool:
        """Whether some source split maps to eval (else eval is hashed out of train)."""
        return any(logical_split(name) == EVAL for name in self.source_splits)

    @functools.cached_property
    def eval_split_name(self) -> str:
        """What eval is: ``test``, ``validation``, ``eval``, ``held_out`` (``eval_split_name``)."""
        return eval_split_name(self.source_splits)

    @property
    def logical_splits(self) -> tuple[str, ...]:
        """The splits records are assigned to: train, eval (and validation if its fraction > 0)."""
        return logical_splits(self.validation_fraction)

    @functools.cached_property
    def bands(self) -> tuple[tuple[str, float, float], ...]:
        """(split, low, high): the non-empty, disjoint ranges of ``id_fraction`` that move a
        train record to another split (see the module docstring)."""
        eval_width = 0.0 if self.has_eval_source else self.eval_fraction
        bands = ((EVAL, 0.0, eval_width),
                 (VALIDATION, eval_width, eval_width + self.validation_fraction))
        return tuple(band for band in bands if band[1] < band[2])

    def sources_for(self, split: str) -> tuple[str, ...]:
        """The source splits whose records may land in logical split `split`."""
        wanted = TRAIN if split in [name for name, _, _ in self.bands] else split
        return tuple(name for name in self.source_splits if logical_split(name) == wanted)

    def assign(self, record_id: str, source_split: str) -> str:
        """The logical split of a record from `source_split`."""
        split = logical_split(source_split)
        if split == TRAIN and self.bands:
            fraction = id_fraction(record_id)
            for name, low, high in self.bands:
                if low <= fraction < high:
                    return name
        return split


def check_eval_fraction(eval_fraction: float) -> None:
    """Raises ValueError unless 0 < eval_fraction < 1."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")


def check_validation_fraction(validation_fraction: float) -> None:
    """Raises ValueError unless 0 <= validation_fraction < 1 (0: no validation split)."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must be at least 0 (no validation split) and "
                         f"below 1, got {validation_fraction}")


# --- image folders ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One candidate image file: its record id, absolute path, label index and source split."""

    id: str
    path: str
    label: int
    source_split: str


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """An image folder's listing: labels (sorted class names, union over splits) and its files,
    sorted by id."""

    root: str
    labels: tuple[str, ...]
    files: tuple[SourceFile, ...]

    def __repr__(self) -> str:  # Beam writes its transforms' arguments into labels: keep it short
        return f"ImageFolder(root={self.root!r}, labels={self.labels!r}, {len(self.files)} files)"

    @property
    def source_splits(self) -> tuple[str, ...]:
        return tuple(sorted({file.source_split for file in self.files}))


def _visible_dirs(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _files_under(path: str) -> Iterator[str]:
    """Every non-hidden file below `path`, in sorted order (hidden folders are not entered)."""
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(folder, name)


def _class_folders(root: str) -> dict[str, str]:
    """Maps each split folder (relative to `root`, "" without split level) to its source split."""
    top = _visible_dirs(root)
    splits = [name for name in top if name in SPLIT_NAMES]
    if not splits:
        return {"": TRAIN}
    others = sorted(set(top) - set(splits))
    if others:
        raise ValueError(f"image folder {root!r} mixes split folders {splits} with other "
                         f"folders {others}: expected split folders named one of "
                         f"{', '.join(SPLIT_NAMES)}, or class folders only")
    if TRAIN not in splits:
        raise ValueError(f"image folder {root!r} has split folders {splits} but no 'train'")
    return {name: name for name in splits}


def _printable(name: str) -> str:
    """`name` with bytes that are not UTF-8 (surrogate-escaped by ``os``) written as ``\\xNN``:
    a record id every hash, JSON file and tf.Example takes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _class_layout(root: str) -> tuple[dict[str, str], dict[str, list[str]], tuple[str, ...]]:
    """(split folder -> source split, split folder -> its class folders, labels), from folder
    names only; raises ValueError as ``list_imagefolder``."""
    DataSource("imagefolder", path=root).check()
    split_dirs = _class_folders(root)
    classes = {split_dir: _visible_dirs(os.path.join(root, split_dir)) for split_dir in split_dirs}
    labels = tuple(sorted({name for names in classes.values() for name in names}))
    if not labels:
        raise ValueError(f"image folder {root!r} has no class folders")
    return split_dirs, classes, labels


def list_imagefolder(root: str) -> ImageFolder:
    """Lists an image folder (``PATH/<split>/<class>/...`` or ``PATH/<class>/...``).

    Raises ValueError (naming the folder) if it does not exist, has no class folders, has no
    train split, or has a top-level folder that is not a known split name next to split folders.
    """
    split_dirs, classes, labels = _class_layout(root)
    index = {name: label for label, name in enumerate(labels)}
    files, prefix = [], len(os.path.join(root, ""))
    for split_dir, source_split in split_dirs.items():
        for class_name in classes[split_dir]:
            for path in _files_under(os.path.join(root, split_dir, class_name)):
                record_id = _printable(path[prefix:].replace(os.sep, "/"))
                files.append(SourceFile(record_id, path, index[class_name], source_split))
    return ImageFolder(root, labels, tuple(sorted(files, key=lambda file: file.id)))


def folder_fingerprint(folder: ImageFolder) -> str:
    """A digest of what a listed image folder holds now: every file's record id, label, size
    and modification time (followed through symlinks; a file that cannot be stat-ed counts as
    such). Adding, removing, renaming, relabelling or rewriting a file changes it; reading no
    file content keeps it cheap (``ImageExampleGen`` takes it before every run to decide
    whether its cached output still holds)."""
    digest = hashlib.sha256()
    for file in folder.files:
        try:
            status = os.stat(file.path)
            state = f"{status.st_size} {status.st_mtime_ns}"
        except OSError as error:
            state = f"unreadable {error.errno}"
        digest.update(f"{file.id}\0{file.label}\0{file.source_split}\0{state}\n".encode(
            "utf-8", "surrogateescape"))
    digest.update("\0".join(folder.labels).encode("utf-8", "surrogateescape"))
    return f"files:{len(folder.files)} sha256:{digest.hexdigest()}"


# --- tensorflow-datasets ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A prepared tfds data set: where it lies, which features hold image and label, the labels
    in ClassLabel order and the number of records per source split."""

    name: str
    builder_dir: str
    image_key: str
    label_key: str
    labels: tuple[str, ...]
    split_sizes: Mapping[str, int]


def open_tfds(name: str, data_dir: str | None = None, download_dir: str | None = None,
              manual_dir: str | None = None) -> TfdsSource:
    """Opens tfds set `name` (``NAME`` or ``NAME/CONFIG``), preparing it first if needed.

    Preparing goes through tfds' own ``download_and_prepare`` (``download_dir`` and
    ``manual_dir`` as tfds defines them); it does nothing when the set is already prepared in
    ``data_dir``. Raises ValueError naming the set if tfds does not know it or its config, or
    if it lacks an Image or a ClassLabel feature (the message lists the features it has).
    """
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    image_key, label_key = _image_and_label_keys(name, builder.info)
    if not builder.is_prepared() and manual_dir is None:
        _check_reachable(name, builder)
    builder.download_and_prepare(
        download_dir=download_dir,
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return TfdsSource(
        name=name, builder_dir=os.fspath(builder.data_dir), image_key=image_key,
        label_key=label_key, labels=tuple(builder.info.features[label_key].names),
        split_sizes={split: info.num_examples for split, info in builder.info.splits.items()})


def _check_reachable(name: str, builder, timeout: float = 5.0) -> None:
    """Raises ValueError, in seconds and before anything is written, when a server tfds would
    download set `name` from cannot be reached (offline machines: tfds itself retries for
    minutes, then fails with a traceback)."""
    for url in sorted(builder.url_infos or {}):
        host = urllib.parse.urlparse(url).hostname
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
        except OSError:
            raise ValueError(
                f"tfds data set {name!r} is not prepared in {os.fspath(builder.data_dir)!r} and "
                f"{host} cannot be reached from here: prepare it on a machine with network "
                f"(tfds build {name.split('/')[0]} --data_dir DIR), copy DIR here and set "
                f"tfds_data_dir to it, or export the images and use imagefolder:PATH") from None


def _tfds_builder(name: str, data_dir: str | None):
    """tfds' builder for `name`; raises ValueError naming the set if tfds cannot make one."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(f"unknown tfds data set {name!r}: tensorflow-datasets has no builder of "
                         f"that name, and none is prepared in data_dir {data_dir!r}") from None
    except ValueError as error:  # e.g. an unknown config
        reason = str(error).splitlines()[0]
        raise ValueError(f"cannot open tfds data set {name!r}: {reason}") from error


def tfds_fingerprint(name: str, data_dir: str | None) -> str:
    """A digest of a prepared tfds set's files (names, sizes, modification times), or
    "unprepared": what ``folder_fingerprint`` is for an image folder."""
    import tensorflow as tf

    builder = _tfds_builder(name, data_dir)
    if not builder.is_prepared():
        return "unprepared"
    digest = hashlib.sha256(str(builder.data_dir).encode())
    for path in sorted(tf.io.gfile.glob(os.path.join(str(builder.data_dir), "*"))):
        status = tf.io.gfile.stat(path)
        digest.update(f"{os.path.basename(path)} {status.length} {status.mtime_nsec}\n".encode())
    return f"tfds sha256:{digest.hexdigest()}"


def class_names(source: DataSource, tfds_data_dir: str | None = None) -> tuple[str, ...]:
    """The class names in label order, without listing, reading or preparing any image.

    For tfds they come from the builder's feature description (known without a download)."""
    if source.kind == "imagefolder":
        return _class_layout(source.path)[2]
    builder = _tfds_builder(source.name, tfds_data_dir)
    _, label_key = _image_and_label_keys(source.name, builder.info)
    return tuple(builder.info.features[label_key].names)


def _image_and_label_keys(name: str, info) -> tuple[str, str]:
    """The (image, label) feature keys: the supervised keys if they are an Image and a
    ClassLabel, else the only top-level Image and ClassLabel features."""
    import tensorflow_datasets as tfds

    features = dict(info.features.items())

    def keys_of(kind) -> list[str]:
        return [key for key, feature in features.items() if isinstance(feature, kind)]

    images, labels = keys_of(tfds.features.Image), keys_of(tfds.features.ClassLabel)
    supervised = info.supervised_keys
    if (isinstance(supervised, tuple) and len(supervised) == 2
            and supervised[0] in images and supervised[1] in labels):
        return supervised
    if len(images) == 1 and len(labels) == 1:
        return images[0], labels[0]
    described = ", ".join(f"{key}: {type(feature).__name__}" for key, feature in features.items())
    raise ValueError(f"tfds data set {name!r} is not an image classification set: it needs one "
                     f"Image and one ClassLabel feature, and has {described}")


def read_tfds_part(source: TfdsSource, part) -> Iterator[tuple[str, int, bytes]]:
    """Yields (tfds id, label, encoded image bytes exactly as stored) for one part of a split.

    `part` is anything ``as_dataset(split=...)`` takes, e.g. an element of
    ``tfds.even_splits``. Images are not decoded. Reads through ``builder_from_directory``, so
    the builder class need not be importable where this runs.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(source.builder_dir)
    dataset = builder.as_dataset(
        split=part, shuffle_files=False, read_config=tfds.ReadConfig(add_tfds_id=True),
        decoders={source.image_key: tfds.decode.SkipDecoding()})
    for record in tfds.as_numpy(dataset):
        yield (record["tfds_id"].decode("utf-8"), int(record[source.label_key]),
               bytes(record[source.image_key]))
