"""The per-record work ImageExampleGen's Beam workers do: check each image, encode it as a
serialized tf.Example, count what was kept and why the rest was skipped.

Work is handed to workers in units, each a few hundred records that the worker reads itself: a
``ListingChunk`` (a byte range of a listing file of image paths), a ``TfdsPart`` (a part of a
tfds split) or a ``CandidateBatch`` (records already read, e.g. chosen by a train limit).
Each is numbered (``NumberedUnit``: its place among the split's units) and has
``candidates()``; ``to_examples`` turns a unit into one batch of serialized tf.Examples plus
one ``Outcomes`` count, and ``write_unit`` writes each batch to the file of the unit's number:
Beam handles a few elements per unit of a few hundred images, not one or more per image, and
a split's record order depends on its units alone, not on which worker took which.

Imports neither TensorFlow nor TFX (only Beam, PIL and ``resnet_ablation.data_source``): a
multi-processing Beam worker imports this module when it unpickles these functions, and
importing TensorFlow would add seconds to every worker's start. Reading a tfds set still
imports ``tensorflow_datasets`` (and with it TensorFlow) in the workers that read one.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import os
import stat
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import google_crc32c
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from resnet_ablation import data_source as ds, image_checks

KEPT = "kept"
EXIF_ROTATED = "exif_rotated"  # kept JPEGs with an EXIF orientation other than 1
LARGE = "large"  # kept images above image_checks.LARGE_PIXELS
# Why a candidate file is skipped before its content is looked at (``read_file``):
# "not_a_file": a FIFO, device, socket or folder; "too_large": above MAX_FILE_BYTES;
# "unreadable": a dangling symlink, a symlink loop, no permission; "outside_root": a symlink
# that leads out of the image folder.
FILE_SKIP_REASONS = ("not_a_file", "too_large", "unreadable", "outside_root")
SKIP_REASONS = image_checks.SKIP_REASONS + FILE_SKIP_REASONS  # every reason, in summary order
MAX_FILE_BYTES = 64 * 2**20  # no photo a ResNet is trained on comes near; larger files are not read
OUTCOME = "outcome"  # the tagged output of ``to_examples`` that carries each unit's Outcomes
FIRST_SKIPPED = 10  # skipped records listed in the summary (and logged by the executor)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A record before the image check. `where` names it in reports: the file path, or the tfds
    id. `data` holds the encoded image; None means: read the file at `where`."""

    id: str
    label: int
    where: str
    data: bytes | None = None


def candidate_limit_key(candidate: Candidate) -> tuple[int, str]:
    return ds.limit_key(candidate.id)


@dataclasses.dataclass(frozen=True)
class CandidateBatch:
    """Records already read."""

    records: tuple[Candidate, ...]

    def candidates(self) -> Iterator[Candidate]:
        return iter(self.records)


def batches(candidates: Sequence[Candidate], size: int) -> list[NumberedUnit]:
    """`candidates` in order, as numbered units of `size` (the last may be shorter)."""
    return numbered([CandidateBatch(tuple(candidates[start:start + size]))
                     for start in range(0, len(candidates), size)])


@dataclasses.dataclass(frozen=True)
class TfdsPart:
    """One part of source split `source_split` of a tfds set (`instruction`: anything tfds'
    ``as_dataset(split=...)`` takes); its candidates are the records that belong to `split`."""

    source: ds.TfdsSource
    plan: ds.SplitPlan
    split: str
    source_split: str
    instruction: Any

    def candidates(self) -> Iterator[Candidate]:
        for record_id, label, data in ds.read_tfds_part(self.source, self.instruction):
            if self.plan.assign(record_id, self.source_split) == self.split:
                yield Candidate(record_id, label, record_id, data)


@dataclasses.dataclass(frozen=True)
class ListingChunk:
    """Bytes [offset, offset + size) of listing file `path`: whole lines, one candidate each;
    their files lie in image folder `root` (a real path), and are read only if they resolve
    inside it."""

    path: str
    offset: int
    size: int
    root: str | None = None

    def candidates(self) -> Iterator[Candidate]:
        with FileSystems.open(self.path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
            file.seek(self.offset)
            lines = file.read(self.size).splitlines()  # json.dumps wrote ASCII, "\n"-ended
        for line in lines:
            record_id, label, where = json.loads(line)
            yield Candidate(record_id, label, where)


def write_listing(candidates: Sequence[Candidate], path: str, per_chunk: int,
                  root: str | None = None) -> list[ListingChunk]:
    """Writes file candidates (``data`` None) to `path` as JSON lines [id, label, where] and
    returns its chunks of `per_chunk` lines (the last may be shorter).

    A listing travels to Beam's workers as a file, not inside the pipeline: Beam pickles and
    bz2-compresses every value given to ``beam.Create``, about 2 s per 100,000 files, once
    for every runner that looks at the pipeline.
    """
    chunks, offset = [], 0
    with FileSystems.create(path) as file:
        for start in range(0, len(candidates), per_chunk):
            lines = "".join(json.dumps([c.id, c.label, c.where]) + "\n"
                            for c in candidates[start:start + per_chunk]).encode("utf-8")
            file.write(lines)
            chunks.append(ListingChunk(path, offset, len(lines), root and os.path.realpath(root)))
            offset += len(lines)
    return chunks


@dataclasses.dataclass(frozen=True)
class NumberedUnit:
    """Work unit `index` (from 0) of the `count` units of a split; ``write_unit`` writes its
    records to the file of that number."""

    index: int
    count: int
    unit: ListingChunk | TfdsPart | CandidateBatch

    def candidates(self) -> Iterator[Candidate]:
        return self.unit.candidates()


def numbered(units: Sequence[ListingChunk | TfdsPart | CandidateBatch]) -> list[NumberedUnit]:
    return [NumberedUnit(index, len(units), unit) for index, unit in enumerate(units)]


def candidates_of(unit: NumberedUnit) -> Iterator[Candidate]:
    return unit.candidates()


# --- tf.Example encoding ---------------------------------------------------------------------

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # protobuf encodes a negative int64 as its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field; `tag` is (field number << 3) | 2, under 128."""
    size = len(payload)
    return (bytes((tag, size)) if size < 0x80 else bytes((tag,)) + _varint(size)) + payload


# tags of the length-delimited fields used, (field number << 3) | 2:
_FIELD_1 = 0x0A  # Example.features, Features.feature (map entry), entry key, Feature.bytes_list,
#                  BytesList.value, Int64List.value (packed)
_FIELD_2 = 0x12  # map entry value
_FIELD_3 = 0x1A  # Feature.int64_list
_ENTRY_KEYS = {key: _delimited(_FIELD_1, key.encode("utf-8"))
               for key in (ds.IMAGE_KEY, ds.LABEL_KEY, ds.LABEL_NAME_KEY, ds.ID_KEY)}


def _entry(key: str, feature: bytes) -> bytes:
    return _delimited(_FIELD_1, _ENTRY_KEYS[key] + _delimited(_FIELD_2, feature))


def _bytes_feature(value: bytes) -> bytes:
    return _delimited(_FIELD_1, _delimited(_FIELD_1, value))


def serialize_example(image: bytes, label: int, label_name: str, record_id: str) -> bytes:
    """The serialized tf.train.Example of one image, with the features ``IMAGE_KEY`` (bytes),
    ``LABEL_KEY`` (int64), ``LABEL_NAME_KEY`` and ``ID_KEY`` (UTF-8 bytes).

    Written without TensorFlow's protos, in protobuf's wire format (map entries in key order,
    the int64 list packed): it parses to the same message as the tf.train.Example built with
    TensorFlow and has the same size.
    """
    features = {
        ds.IMAGE_KEY: _entry(ds.IMAGE_KEY, _bytes_feature(image)),
        ds.ID_KEY: _entry(ds.ID_KEY, _bytes_feature(record_id.encode("utf-8"))),
        **_label_entries(label, label_name),
    }
    return _delimited(_FIELD_1, b"".join(features[key] for key in sorted(features)))


@functools.lru_cache(maxsize=4096)
def _label_entries(label: int, label_name: str) -> dict[str, bytes]:
    """The map entries of ``LABEL_KEY`` and ``LABEL_NAME_KEY``: the same for every image of a
    class, so encoded once per class."""
    return {ds.LABEL_KEY: _entry(ds.LABEL_KEY,
                                 _delimited(_FIELD_3, _delimited(_FIELD_1, _varint(label)))),
            ds.LABEL_NAME_KEY: _entry(ds.LABEL_NAME_KEY, _bytes_feature(label_name.encode("utf-8")))}


# --- check and summarize ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Outcomes:
    """How many records were kept and skipped (per reason), with the ``FIRST_SKIPPED``
    skipped ones of smallest `where` as sorted (where, reason) pairs, and the content digests
    (``digest``) of the kept images."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    first_skipped: tuple[tuple[str, str], ...] = ()
    digests: frozenset[str] = frozenset()
    per_label: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def merge(self, *others: Outcomes) -> Outcomes:
        counts = sum((other.counts for other in others), collections.Counter(self.counts))
        skipped = sorted(self.first_skipped + sum((o.first_skipped for o in others), ()))
        digests = self.digests.union(*(other.digests for other in others))
        per_label = sum((other.per_label for other in others), collections.Counter(self.per_label))
        return Outcomes(counts, tuple(skipped[:FIRST_SKIPPED]), frozenset(digests), per_label)

    def summary(self) -> dict[str, Any]:
        """{"kept": n, "skipped": {reason: n for every reason}, "first_skipped": [[where,
        reason], ...], "digests": [sorted content digests of the kept images], "per_label":
        {label index: kept images}, "exif_rotated": kept JPEGs displayed rotated, "large": kept
        images above image_checks.LARGE_PIXELS}."""
        return {"kept": self.counts[KEPT], "per_label": dict(sorted(self.per_label.items())),
                EXIF_ROTATED: self.counts[EXIF_ROTATED], LARGE: self.counts[LARGE],
                "skipped": {reason: self.counts[reason] for reason in SKIP_REASONS},
                "first_skipped": [list(entry) for entry in self.first_skipped],
                "digests": sorted(self.digests)}


def digest(data: bytes) -> str:
    """A 64-bit content digest of an image's bytes (BLAKE2b), to find byte-identical images
    across splits; collisions are negligible below billions of images."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def read_file(path: str, root: str | None = None,
              real_dirs: dict[str, str] | None = None) -> tuple[bytes | None, str | None]:
    """(the bytes of file `path`, None), or (None, the ``FILE_SKIP_REASONS`` reason it is not
    read). Only a regular file of at most ``MAX_FILE_BYTES`` is opened, so a FIFO, a device or
    a huge stray file never blocks or fills memory; with `root` (a real path), only a file that
    resolves inside it.

    `real_dirs` ({folder: its real path}, filled as files are read) saves resolving the same
    folders again for every file of a unit: only a file that is itself a symlink is resolved
    whole (``os.path.realpath`` walks every component of a path: a fifth of the per-image work
    on CIFAR-10's folders otherwise).
    """
    try:
        real, info = _resolve(path, {} if real_dirs is None else real_dirs)
    except (OSError, RuntimeError):  # dangling link, loop, no permission
        return None, "unreadable"
    if root is not None and not _inside(real, root):
        return None, "outside_root"
    if not stat.S_ISREG(info.st_mode):
        return None, "not_a_file"
    if info.st_size > MAX_FILE_BYTES:
        return None, "too_large"
    try:
        with open(real, "rb") as file:
            # read() allocates what it is asked for: the file's size, not the limit, unless
            # the file has grown since os.stat
            data = file.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += file.read(MAX_FILE_BYTES + 1 - len(data))
    except OSError:
        return None, "unreadable"
    return (None, "too_large") if len(data) > MAX_FILE_BYTES else (data, None)


def _resolve(path: str, real_dirs: dict[str, str]) -> tuple[str, os.stat_result]:
    """(``os.path.realpath(path, strict=True)``, its ``os.stat``), resolving `path`'s folder
    through `real_dirs` unless `path` is a symlink itself (whose ``os.lstat`` is then its
    stat)."""
    folder, name = os.path.split(path)
    info = os.lstat(path)
    if name in ("", os.curdir, os.pardir) or stat.S_ISLNK(info.st_mode):
        real = os.path.realpath(path, strict=True)
        return real, os.stat(real)
    if folder not in real_dirs:
        real_dirs[folder] = os.path.realpath(folder or os.curdir, strict=True)
    return os.path.join(real_dirs[folder], name), info


def _inside(real: str, root: str) -> bool:
    """Whether real path `real` lies in real path `root` (or is it)."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def to_examples(unit: NumberedUnit, labels: tuple[str, ...]):
    """Checks the unit's candidates; yields (the unit's index, the split's unit count, the
    serialized tf.Examples of those kept, possibly none), and the unit's ``Outcomes`` on the
    ``OUTCOME`` output. Raises ValueError for a label outside `labels`."""
    counts, skipped, examples, digests = collections.Counter(), [], [], set()
    per_label, real_dirs = collections.Counter(), {}
    for candidate in unit.candidates():
        if not 0 <= candidate.label < len(labels):
            raise ValueError(f"record {candidate.where!r} has label {candidate.label}, outside "
                             f"the {len(labels)} labels")
        data, reason = candidate.data, None
        if data is None:
            data, reason = read_file(candidate.where, getattr(unit.unit, "root", None), real_dirs)
        reason = reason or image_checks.check_image(data)
        counts[reason or KEPT] += 1
        if reason is None:
            examples.append(serialize_example(data, candidate.label, labels[candidate.label],
                                              candidate.id))
            digests.add(digest(data))
            per_label[candidate.label] += 1
            counts[EXIF_ROTATED] += image_checks.exif_rotated(data)
            counts[LARGE] += image_checks.is_large(data)
        else:
            skipped.append((candidate.where, reason))
    yield unit.index, unit.count, examples
    first_skipped = tuple(sorted(skipped)[:FIRST_SKIPPED])
    yield beam.pvalue.TaggedOutput(OUTCOME, Outcomes(counts, first_skipped, frozenset(digests),
                                                     per_label))


# --- TFRecord files --------------------------------------------------------------------------

def _masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(record: bytes) -> bytes:
    """One TFRecord: the length (uint64), its masked CRC-32C, the data, the data's masked CRC-32C
    (little-endian), the framing ``tf.io.TFRecordWriter`` writes."""
    length = struct.pack("<Q", len(record))
    return (length + struct.pack("<I", _masked_crc32c(length)) + record
            + struct.pack("<I", _masked_crc32c(record)))


# Deflate level of the gzipped TFRecords. Encoded images (PNG, JPEG) do not compress: on CIFAR-10
# PNGs, zlib's default level 6 saves 2.2 % of the bytes at 58 us of CPU per image, level 1 the
# same at 56 us, level 0 (stored blocks, still a gzip file every reader opens) costs 1.7 us.
GZIP_LEVEL = 0


class GzipWriter:
    """A gzip stream at `level` written into `raw`, an open binary file; ``close()`` finishes the
    stream and closes `raw`."""

    def __init__(self, raw, level: int = GZIP_LEVEL):
        self._raw = raw
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def write(self, data: bytes) -> None:
        self._raw.write(self._compressor.compress(data))

    def close(self) -> None:
        self._raw.write(self._compressor.flush())
        self._raw.close()


def unit_file(prefix: str, index: int, count: int) -> str:
    """``<prefix>-IIIII-of-NNNNN.gz``, the name of unit `index` of `count` (the shard names
    Beam's ``WriteToTFRecord`` gives its gzipped files)."""
    return f"{prefix}-{index:05d}-of-{count:05d}.gz"


def write_unit(unit_examples: tuple[int, int, Sequence[bytes]], prefix: str) -> str:
    """Writes one unit's serialized records, (index, count, records) as ``to_examples`` yields
    them, as TFRecords to the gzipped file ``unit_file(prefix, index, count)`` (deflate level
    ``GZIP_LEVEL``; no records: an empty file readers accept) and returns its path. It writes a
    temporary file and renames it into place: a retried unit replaces the file whole."""
    index, count, records = unit_examples
    path = unit_file(prefix, index, count)
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    writer = GzipWriter(FileSystems.create(temporary,
                                           compression_type=CompressionTypes.UNCOMPRESSED))
    writer.write(b"".join(tfrecord(record) for record in records))
    writer.close()
    FileSystems.rename([temporary], [path])
    return path


class MergeOutcomes(beam.CombineFn):
    """Outcomes of units -> the split's ``Outcomes.summary()``. Accumulates in place (a list
    of unit outcomes merged once), so the digest sets are not copied per unit."""

    def create_accumulator(self) -> list[Outcomes]:
        return []

    def add_input(self, accumulator: list[Outcomes], outcomes: Outcomes) -> list[Outcomes]:
        accumulator.append(outcomes)
        return accumulator

    def merge_accumulators(self, accumulators) -> list[Outcomes]:
        return [Outcomes().merge(*(o for accumulator in accumulators for o in accumulator))]

    def extract_output(self, accumulator: list[Outcomes]) -> dict[str, Any]:
        return Outcomes().merge(*accumulator).summary()


def write_json(value: Any, path: str) -> None:
    """Writes `value` as indented JSON to `path` (through Beam's file systems: any URI Beam
    writes)."""
    with FileSystems.create(path) as file:
        file.write((json.dumps(value, indent=1) + "\n").encode("utf-8"))
