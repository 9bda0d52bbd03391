"""The per-record work ImageExampleGen's Beam workers do: check each image, encode it as a
serialized tf.Example, count what was kept and why the rest was skipped.

Imports neither TensorFlow nor TFX (only Beam, PIL and ``components.data_source``): a
multi-processing Beam worker imports this module when it unpickles these functions, and
importing TensorFlow would add seconds to every worker's start. Reading a tfds set still
imports ``tensorflow_datasets`` (and with it TensorFlow) in the workers that read one.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components import data_source as ds

KEPT = "kept"
OUTCOME = "outcome"  # the tagged output of ``to_examples`` that carries (outcome, where) pairs
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


def read_tfds_part(part: tuple[str, Any], source: ds.TfdsSource, plan: ds.SplitPlan,
                   split: str) -> Iterator[Candidate]:
    """The candidates of one (source split, read instruction) part that belong to `split`."""
    source_split, read_instruction = part
    for record_id, label, data in ds.read_tfds_part(source, read_instruction):
        if plan.assign(record_id, source_split) == split:
            yield Candidate(record_id, label, record_id, data)


def unchunk(chunk: Iterable[Candidate]) -> Iterable[Candidate]:
    return chunk


# --- listing files ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ListingChunk:
    """Bytes [offset, offset + size) of listing file `path`: whole lines, one candidate each."""

    path: str
    offset: int
    size: int


def write_listing(candidates: Sequence[Candidate], path: str,
                  per_chunk: int) -> list[ListingChunk]:
    """Writes file candidates (``data`` None) to `path` as JSON lines [id, label, where] and
    returns the chunks of `per_chunk` lines (the last may be shorter) for ``read_chunk``.

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
            chunks.append(ListingChunk(path, offset, len(lines)))
            offset += len(lines)
    return chunks


def read_chunk(chunk: ListingChunk) -> Iterator[Candidate]:
    """The candidates of one chunk that ``write_listing`` wrote."""
    with FileSystems.open(chunk.path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
        file.seek(chunk.offset)
        lines = file.read(chunk.size).decode("utf-8").splitlines()
    for line in lines:
        record_id, label, where = json.loads(line)
        yield Candidate(record_id, label, where)


# --- tf.Example encoding ---------------------------------------------------------------------

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # protobuf encodes a negative int64 as its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def serialize_example(image: bytes, label: int, label_name: str, record_id: str) -> bytes:
    """The serialized tf.train.Example of one image, with the features ``IMAGE_KEY`` (bytes),
    ``LABEL_KEY`` (int64), ``LABEL_NAME_KEY`` and ``ID_KEY`` (UTF-8 bytes).

    Written without TensorFlow's protos, in protobuf's wire format (map entries in key order,
    the int64 list packed): it parses to the same message as the tf.train.Example built with
    TensorFlow and has the same size.
    """
    features = {
        ds.IMAGE_KEY: _field(1, _field(1, image)),  # Feature.bytes_list = 1, BytesList.value = 1
        ds.LABEL_KEY: _field(3, _field(1, _varint(label))),  # Feature.int64_list = 3, packed
        ds.LABEL_NAME_KEY: _field(1, _field(1, label_name.encode("utf-8"))),
        ds.ID_KEY: _field(1, _field(1, record_id.encode("utf-8"))),
    }
    entries = b"".join(_field(1, _field(1, key.encode("utf-8")) + _field(2, feature))
                       for key, feature in sorted(features.items()))
    return _field(1, entries)  # Example.features = 1, Features.feature (a map) = 1


# --- check and summarize ---------------------------------------------------------------------

def to_examples(candidate: Candidate, labels: tuple[str, ...]):
    """Checks one candidate; yields its serialized tf.Example if kept, and always an
    (outcome, where) pair on the ``OUTCOME`` output, the outcome being ``KEPT`` or the skip
    reason. Raises ValueError for a label outside `labels`."""
    if not 0 <= candidate.label < len(labels):
        raise ValueError(f"record {candidate.where!r} has label {candidate.label}, outside the "
                         f"{len(labels)} labels")
    data = candidate.data
    if data is None:
        with open(candidate.where, "rb") as file:
            data = file.read()
    reason = ds.check_image(data)
    yield beam.pvalue.TaggedOutput(OUTCOME, (reason or KEPT, candidate.where))
    if reason is None:
        yield serialize_example(data, candidate.label, labels[candidate.label], candidate.id)


class SummarizeOutcomes(beam.CombineFn):
    """(outcome, where) pairs -> {"kept": n, "skipped": {reason: n for every reason},
    "first_skipped": [[where, reason], ...]} (the ``FIRST_SKIPPED`` smallest `where`s)."""

    def create_accumulator(self):
        return collections.Counter(), []

    def add_input(self, accumulator, outcome):
        counts, skipped = accumulator
        counts[outcome[0]] += 1
        if outcome[0] != KEPT:
            skipped = sorted(skipped + [(outcome[1], outcome[0])])[:FIRST_SKIPPED]
        return counts, skipped

    def merge_accumulators(self, accumulators):
        counts, skipped = collections.Counter(), []
        for more_counts, more_skipped in accumulators:
            counts.update(more_counts)
            skipped.extend(more_skipped)
        return counts, sorted(skipped)[:FIRST_SKIPPED]

    def extract_output(self, accumulator):
        counts, skipped = accumulator
        return {"kept": counts[KEPT], "skipped": {r: counts[r] for r in ds.SKIP_REASONS},
                "first_skipped": [list(entry) for entry in skipped]}
