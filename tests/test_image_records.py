"""The per-record work of ImageExampleGen's workers: the tf.Example encoding and the PNG check,
each against TensorFlow itself, and the promise that workers need not import TensorFlow."""

from __future__ import annotations

import gzip
import io
import pathlib
import random
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components import data_source as ds, image_checks, image_records

CIFAR_FLAT = pathlib.Path(__file__).resolve().parent / "fixtures" / "cifar_flat"
PETS = CIFAR_FLAT.parent / "pets"
REPO = pathlib.Path(__file__).resolve().parents[1]


def tf_example(image: bytes, label: int, label_name: str, record_id: str) -> tf.train.Example:
    def bytes_feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        ds.IMAGE_KEY: bytes_feature(image),
        ds.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        ds.LABEL_NAME_KEY: bytes_feature(label_name.encode()),
        ds.ID_KEY: bytes_feature(record_id.encode())}))


@pytest.mark.parametrize("image, label, label_name, record_id", [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3, 3, "cat", "train/cat/1.png"),
    (b"", 0, "", ""),
    (b"x" * 300_000, 2 ** 40, "chat noir é", "validation/ünï/ß.jpg"),
    (b"\x00", -1, "a", "b"),
])
def test_serialized_example_is_what_tensorflow_serializes(image, label, label_name, record_id):
    serialized = image_records.serialize_example(image, label, label_name, record_id)
    expected = tf_example(image, label, label_name, record_id)
    assert tf.train.Example.FromString(serialized) == expected
    assert len(serialized) == expected.ByteSize()
    parsed = tf.io.parse_single_example(serialized, {
        ds.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        ds.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        ds.LABEL_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
        ds.ID_KEY: tf.io.FixedLenFeature([], tf.string)})
    assert parsed[ds.IMAGE_KEY].numpy() == image and parsed[ds.LABEL_KEY].numpy() == label
    assert parsed[ds.LABEL_NAME_KEY].numpy().decode() == label_name
    assert parsed[ds.ID_KEY].numpy().decode() == record_id


def test_workers_module_imports_no_tensorflow():
    code = ("import sys; import components.image_records; "
            "print(sorted(m for m in ('tensorflow', 'tfx') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- the PNG check against TensorFlow's PNG decoder ------------------------------------------

def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def interlaced_png(pixels: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (PIL cannot write one), every row with filter 0."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y, x0::dx].tobytes()
                    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                                           (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
                    if x0 < width for y in range(y0, height, dy))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (image_checks.PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def encoded_pngs() -> dict[str, bytes]:
    """One original CIFAR PNG, the same image in every PNG colour type and depth, interlaced."""
    original = sorted(CIFAR_FLAT.glob("cat/*.png"))[0].read_bytes()
    rgb = Image.open(io.BytesIO(original)).convert("RGB")
    pngs = {"original": original, "interlaced": interlaced_png(np.asarray(rgb)[:13, :11])}
    for mode in ("RGBA", "L", "LA", "P", "1", "I;16"):
        buffer = io.BytesIO()
        rgb.convert(mode).save(buffer, "PNG")
        pngs[mode] = buffer.getvalue()
    return pngs


def tensorflow_decodes(data: bytes) -> bool:
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
        return True
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False


@pytest.mark.parametrize("name", list(encoded_pngs()))
def test_png_check_agrees_with_tensorflows_decoder_on_damaged_pngs(name):
    data = encoded_pngs()[name]
    assert image_checks.check_png(data) is None and image_checks.check_image(data) is None
    assert tensorflow_decodes(data)
    rng = random.Random(name)
    damaged = {f"cut at {n}": data[:n] for n in range(8, len(data), max(1, len(data) // 40))}
    for _ in range(60):
        flipped, offset = bytearray(data), rng.randrange(8, len(data))
        flipped[offset] ^= 1 << rng.randrange(8)
        damaged[f"bit flipped at {offset}"] = bytes(flipped)
    damaged["IEND missing"] = data[:data.rindex(b"IEND") - 4]
    damaged["bytes after IEND"] = data + b"trailing"

    verdicts = {what: image_checks.check_png(damage) for what, damage in damaged.items()}
    disagree = {what: verdict for what, verdict in verdicts.items()
                if (verdict is None) != tensorflow_decodes(damaged[what])}
    assert not disagree
    assert set(verdicts.values()) <= {None, "truncated", "undecodable"}
    assert verdicts["cut at 8"] == "truncated"
    assert verdicts["IEND missing"] == "truncated" and verdicts["bytes after IEND"] is None


def test_jpeg_check_agrees_with_tensorflows_decoder_on_damaged_jpegs():
    # JPEGs get a full PIL decode; on cats_vs_dogs (40 images, 1,234 variants) it agreed with
    # TensorFlow on every one. Here: the committed pets fixture.
    rng, verdicts = random.Random(0), {}
    for path in sorted(PETS.glob("*/*/*.jpg"))[:3]:
        data = path.read_bytes()
        assert image_checks.check_image(data) is None and tensorflow_decodes(data)
        for n in range(2, len(data), max(1, len(data) // 12)):
            verdicts[f"{path.name} cut at {n}"] = data[:n]
        for _ in range(12):
            flipped, offset = bytearray(data), rng.randrange(2, len(data))
            flipped[offset] ^= 1 << rng.randrange(8)
            verdicts[f"{path.name} bit flipped at {offset}"] = bytes(flipped)
    disagree = [what for what, damaged in verdicts.items()
                if (image_checks.check_image(damaged) is None) != tensorflow_decodes(damaged)]
    assert not disagree
    assert sum(image_checks.check_image(damaged) is not None for damaged in verdicts.values()) > 10


def test_png_check_reasons():
    data = encoded_pngs()["original"]
    idat = data.index(b"IDAT")
    garbled = bytearray(data)
    garbled[idat + 10:idat + 42] = bytes(b ^ 0xFF for b in garbled[idat + 10:idat + 42])
    assert image_checks.check_png(data[:idat + 20]) == "truncated"  # ends inside the pixel data
    assert image_checks.check_png(bytes(garbled)) == "undecodable"  # IDAT's CRC no longer matches
    header = struct.pack(">IIBBBBB", 4, 4, 8, 3, 0, 0, 0)  # a palette image ...
    no_palette = (image_checks.PNG_SIGNATURE + png_chunk(b"IHDR", header)
                  + png_chunk(b"IDAT", zlib.compress(b"\x00" * 20)) + png_chunk(b"IEND", b""))
    assert image_checks.check_png(no_palette) == "undecodable"  # ... without its PLTE
    assert not tensorflow_decodes(no_palette)


# --- TFRecord framing and the executor's Beam arguments --------------------------------------

def test_tfrecords_are_read_back_by_tensorflow_which_checks_their_crcs(tmp_path):
    records = [b"", b"x", bytes(range(256)) * 40]
    path = tmp_path / "data.tfrecord"
    path.write_bytes(b"".join(image_records.tfrecord(record) for record in records))
    assert list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()) == records

    damaged = bytearray(path.read_bytes())
    damaged[-3] ^= 1  # inside the last record's data CRC
    path.write_bytes(bytes(damaged))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())


def test_each_unit_is_written_to_its_numbered_gzip_file_tensorflow_reads_back(tmp_path):
    records = [bytes(range(256)) * 40, b"", b"x" * 100_000]  # one spans several deflate blocks
    prefix = str(tmp_path / "data_tfrecord")
    assert image_records.write_unit((3, 12, records), prefix) == f"{prefix}-00003-of-00012.gz"
    assert image_records.write_unit((4, 12, []), prefix) == f"{prefix}-00004-of-00012.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temporary file left
        "data_tfrecord-00003-of-00012.gz", "data_tfrecord-00004-of-00012.gz"]
    written = (tmp_path / "data_tfrecord-00003-of-00012.gz").read_bytes()
    assert gzip.decompress(written) == b"".join(image_records.tfrecord(r) for r in records)
    assert len(written) > sum(map(len, records))  # stored, not deflated: see GZIP_LEVEL
    dataset = tf.data.TFRecordDataset(sorted(str(p) for p in tmp_path.iterdir()), "GZIP")
    assert list(dataset.as_numpy_iterator()) == records  # the empty unit's file reads as none
    image_records.write_unit((3, 12, records[:1]), prefix)  # a retried unit replaces its file
    assert list(tf.data.TFRecordDataset(f"{prefix}-00003-of-00012.gz", "GZIP")
                .as_numpy_iterator()) == records[:1]


def test_listing_chunks_give_back_every_candidate_whatever_its_name(tmp_path):
    names = ["plain.png", "line\nbreak.png", "sep\u2028arator.png", "é ü.jpg", "tab\t.png",
             "quote\".png"] * 3
    candidates = [image_records.Candidate(f"train/cat/{i}-{name}", i % 3, f"/data/{i}-{name}")
                  for i, name in enumerate(names)]
    chunks = image_records.write_listing(candidates, str(tmp_path / "listing.jsonl"), 4)
    assert [len(list(chunk.candidates())) for chunk in chunks] == [4, 4, 4, 4, 2]
    assert [c for chunk in chunks for c in chunk.candidates()] == candidates


def test_is_large_reads_the_size_from_the_header_only():
    from PIL import Image

    def png_header(width: int, height: int) -> bytes:
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return image_checks.PNG_SIGNATURE + png_chunk(b"IHDR", header)  # no pixel data at all

    assert image_checks.is_large(png_header(12_000, 12_000))
    assert not image_checks.is_large(png_header(4096, 4096))  # exactly the limit: not above
    big = io.BytesIO()
    Image.new("RGB", (4100, 4100)).save(big, "JPEG")
    small = io.BytesIO()
    Image.new("RGB", (640, 480)).save(small, "JPEG")
    assert image_checks.is_large(big.getvalue()) and not image_checks.is_large(small.getvalue())


def test_read_file_resolves_symlinked_folders_once_per_unit_and_keeps_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "cat").mkdir(parents=True)
    outside.mkdir()
    (root / "cat" / "a.png").write_bytes(b"a" * 70_000)  # above any read-buffer size
    (outside / "b.png").write_bytes(b"b")
    (root / "dog").symlink_to(outside)  # a class folder that leads out of the root
    (root / "also-cat").symlink_to(root / "cat")  # one that stays inside
    (root / "cat" / "link.png").symlink_to(outside / "b.png")
    real_root, real_dirs = str(root.resolve()), {}

    def read(*parts: str) -> tuple[bytes | None, str | None]:
        return image_records.read_file(str(root.joinpath(*parts)), real_root, real_dirs)

    assert read("cat", "a.png") == (b"a" * 70_000, None)
    assert read("also-cat", "a.png") == (b"a" * 70_000, None)
    assert read("dog", "b.png") == (None, "outside_root")
    assert read("cat", "link.png") == (None, "outside_root")
    assert read("cat", "gone.png") == (None, "unreadable")
    assert real_dirs == {str(root / "cat"): str(root / "cat"),
                         str(root / "also-cat"): str(root / "cat"),
                         str(root / "dog"): str(outside)}
    # without the root every file is read, and without the cache the answers are the same
    assert image_records.read_file(str(root / "dog" / "b.png")) == (b"b", None)
    assert image_records.read_file(str(root / "also-cat" / "a.png"), real_root)[1] is None


def test_read_file_resolves_relative_paths_and_parent_links_as_realpath_does(tmp_path, monkeypatch):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "elsewhere" / "cat").mkdir(parents=True)
    (tmp_path / "elsewhere" / "cat" / "x.png").write_bytes(b"far")
    (tmp_path / "data" / "cat" / "x.png").write_bytes(b"near")
    (tmp_path / "data" / "link").symlink_to(tmp_path / "elsewhere" / "cat")
    monkeypatch.chdir(tmp_path / "data")
    real_dirs = {}
    assert image_records.read_file("cat/x.png", None, real_dirs) == (b"near", None)
    # link/.. is elsewhere/, not data/: resolved as the file system does, not lexically
    assert image_records.read_file("link/../cat/x.png", None, real_dirs) == (b"far", None)
    assert image_records.read_file("link/../cat/x.png", str(tmp_path / "data"), real_dirs) == (
        None, "outside_root")
