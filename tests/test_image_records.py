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

from components import image_records
from resnet_ablation import data_source as ds, image_checks

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


@pytest.mark.slow
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


# --- BMPs and GIFs: kept only if TensorFlow decodes them as PIL does ---------------------------

def cifar_rgb() -> Image.Image:
    return Image.open(sorted(CIFAR_FLAT.glob("cat/*.png"))[0]).convert("RGB")


def bmp_file(width: int, height: int, bits: int, rows: bytes, header_size: int = 40,
             compression: int = 0, colors: int = 0, palette: bytes = b"",
             masks: bytes = b"") -> bytes:
    """A BMP written field by field, with any header size, depth and compression; ``masks``
    inside the info header when it has room for them (52 bytes or more), else after it."""
    if header_size == 12:  # OS/2 1.x BITMAPCOREHEADER: 16-bit width and height, no more
        info = struct.pack("<IHHHH", 12, width, height, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", header_size, width, height, 1, bits, compression,
                           len(rows), 2835, 2835, colors, 0)
        inside = masks if header_size >= 52 else b""
        info += inside + bytes(header_size - 40 - len(inside)) + (b"" if inside else masks)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


def bmp_rows(pixels: np.ndarray, top_down: bool = False) -> bytes:
    """[H, W, bytes per pixel] as BMP rows, each padded to 4 bytes, bottom-up by default."""
    rows = [row.tobytes() for row in (pixels if top_down else pixels[::-1])]
    return b"".join(row + bytes(-len(row) % 4) for row in rows)


def rle_rows(indices: np.ndarray, rle4: bool) -> bytes:
    """Palette indices RLE8- or RLE4-encoded: an encoded run of 1 pixel each, bottom-up."""
    runs = bytearray()
    for row in indices[::-1]:
        for index in row.tolist():
            runs += bytes((1, index * 17 if rle4 else index))  # RLE4: the index in both nibbles
        runs += b"\x00\x00"  # end of line
    return bytes(runs + b"\x00\x01")  # end of bitmap


def pil_bmp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "BMP")
    return buffer.getvalue()


def bmp_cases() -> dict[str, tuple[bytes, str | None]]:
    """A BMP of every kind (PIL decodes each) and check_image's verdict on it."""
    rgb = cifar_rgb()
    bgr = np.asarray(rgb)[:, :, ::-1]
    opaque = np.full((32, 32, 1), 255, np.uint8)
    quantized = rgb.quantize(16)
    indices = np.asarray(quantized)
    palette = b"".join(bytes((b, g, r, 0)) for r, g, b in
                       np.asarray(quantized.getpalette()[:48]).reshape(16, 3).tolist())
    red, green, blue = (bgr[:, :, channel].astype(np.uint16) for channel in (2, 1, 0))
    rgb555 = (red >> 3 << 10 | green >> 3 << 5 | blue >> 3).astype("<u2").view(np.uint8)
    rgb565 = (red >> 3 << 11 | green >> 2 << 5 | blue >> 3).astype("<u2").view(np.uint8)
    return {
        "1-bit (PIL mode 1)": (pil_bmp(rgb.convert("1")), "unsupported_format"),
        "4-bit palette": (bmp_file(32, 32, 4, bmp_rows(indices[:, 0::2] * 16 + indices[:, 1::2]),
                                   colors=16, palette=palette), "unsupported_format"),
        "8-bit palette (PIL mode P)": (pil_bmp(rgb.convert("P")), "unsupported_format"),
        "8-bit grey ramp (PIL mode L)": (pil_bmp(rgb.convert("L")), None),
        "8-bit grey ramp, odd width": (pil_bmp(rgb.convert("L").crop((0, 0, 13, 7))), None),
        "RLE8": (bmp_file(32, 32, 8, rle_rows(indices, rle4=False), compression=1, colors=16,
                          palette=palette), "unsupported_format"),
        "RLE4": (bmp_file(32, 32, 4, rle_rows(indices, rle4=True), compression=2, colors=16,
                          palette=palette), "unsupported_format"),
        "16-bit RGB555": (bmp_file(32, 32, 16, bmp_rows(rgb555)), "unsupported_format"),
        "16-bit RGB565 bit fields": (bmp_file(32, 32, 16, bmp_rows(rgb565), compression=3,
                                              masks=struct.pack("<3I", 0xF800, 0x7E0, 0x1F)),
                                     "unsupported_format"),
        "24-bit (PIL mode RGB)": (pil_bmp(rgb), None),
        "24-bit, odd width": (bmp_file(13, 7, 24, bmp_rows(bgr[:7, :13])), None),
        "24-bit, top-down": (bmp_file(32, -32, 24, bmp_rows(bgr, top_down=True)), None),
        "24-bit, V4 header": (bmp_file(32, 32, 24, bmp_rows(bgr), header_size=108), None),
        "24-bit, V5 header": (bmp_file(32, 32, 24, bmp_rows(bgr), header_size=124), None),
        "24-bit, OS/2 1.x header": (bmp_file(32, 32, 24, bmp_rows(bgr), header_size=12),
                                    "unsupported_format"),
        "24-bit, bytes after the pixels": (pil_bmp(rgb) + b"\x00\x00", "unsupported_format"),
        "32-bit (PIL mode RGBA)": (pil_bmp(rgb.convert("RGBA")), None),
        "32-bit BGRX bit fields": (
            bmp_file(32, 32, 32, bmp_rows(np.concatenate([bgr, opaque], axis=2)), compression=3,
                     masks=struct.pack("<3I", 0xFF0000, 0xFF00, 0xFF)), None),
        "32-bit RGBA bit fields, V4 header": (
            bmp_file(32, 32, 32, bmp_rows(np.concatenate([bgr[:, :, ::-1], opaque], axis=2)),
                     header_size=108, compression=3,
                     masks=struct.pack("<4I", 0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
            "unsupported_format"),
    }


def gif_file(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "GIF", **options)
    return buffer.getvalue()


def with_frame(gif: bytes, frame: Image.Image) -> bytes:
    """``gif`` with ``frame`` appended as a second frame at (0, 0), its colours as a local table:
    a GIF whose frame may be larger than the logical screen, which PIL cannot write."""
    single = gif_file(frame, interlace=False)
    table = 3 * (2 << (single[10] & 7))
    start = single.index(b"\x2c", 13 + table)  # PIL writes no extension before a lone frame
    descriptor = single[start:start + 9] + bytes((0x80 | single[10] & 7,))
    return gif[:-1] + descriptor + single[13:13 + table] + single[start + 10:-1] + b"\x3b"


def gif_cases() -> dict[str, tuple[bytes, str | None]]:
    """GIFs PIL writes, and some edited: their bytes and check_image's verdict on each."""
    rgb = cifar_rgb()
    four = gif_file(rgb.quantize(4))  # a global colour table of 4 entries, bytes 13-24
    assert four[10] & 0x87 == 0x81
    two = four[:10] + bytes((four[10] & ~7,)) + four[11:19] + four[25:]  # the table cut to 2
    no_table = four[:10] + bytes((four[10] & 0x78,)) + four[11:13] + four[25:]
    red, green = rgb.copy(), rgb.copy()
    red.paste((255, 0, 0), (5, 5, 10, 10))
    green.paste((0, 255, 0), (20, 20, 25, 25))
    animated = gif_file(rgb, save_all=True, append_images=[red, green])
    first = 13 + 3 * (2 << (animated[10] & 7))  # the first image descriptor, after the table
    assert animated[first] == 0x2C
    return {
        "PIL's GIF (interlaced)": (gif_file(rgb), None),
        "not interlaced": (gif_file(rgb, interlace=False), None),
        "4 colours": (four, None),
        "transparent (TensorFlow paints it black)": (gif_file(rgb.quantize(4), transparency=0),
                                                     None),
        "animated": (animated, None),
        "animated, cut in its last frame": (animated[:-20], None),
        "pixels outside the colour table": (two, "unsupported_format"),
        "no colour table": (no_table, "unsupported_format"),
        "logical screen larger than the frame": (
            four[:6] + struct.pack("<HH", 40, 40) + four[10:], "unsupported_format"),
        "first frame moved right": (
            animated[:first + 1] + struct.pack("<H", 1) + animated[first + 3:],
            "unsupported_format"),
        "a later frame wider than the screen": (
            with_frame(gif_file(rgb), Image.new("RGB", (40, 2), (255, 0, 0))),
            "unsupported_format"),
        "cut before the frame's terminator": (gif_file(rgb)[:-2], "truncated"),
    }


def tensorflow_pixels(data: bytes) -> np.ndarray | None:
    try:
        return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return None


def pil_pixels(data: bytes) -> np.ndarray | None:
    """PIL's RGB decoding (None if PIL fails), a GIF's transparent pixels painted black as
    TensorFlow paints them (PIL gives their palette colour)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.array(image.convert("RGB"))
            transparent = image.info.get("transparency")
            if image.format == "GIF" and transparent is not None:
                pixels[np.asarray(image) == transparent] = 0
            return pixels
    except Exception:  # noqa: BLE001  (anything PIL cannot decode)
        return None


def decoded_alike(data: bytes) -> bool:
    tensorflow, pil = tensorflow_pixels(data), pil_pixels(data)
    return (tensorflow is not None and pil is not None and tensorflow.shape == pil.shape
            and bool((tensorflow == pil).all()))


@pytest.mark.parametrize("kind", [*bmp_cases(), *gif_cases()])
def test_bmps_and_gifs_are_kept_only_if_tensorflow_decodes_them_as_pil_does(kind):
    data, verdict = {**bmp_cases(), **gif_cases()}[kind]
    assert pil_pixels(data) is not None  # a valid image: the verdict is about TensorFlow
    assert image_checks.check_image(data) == verdict
    assert decoded_alike(data) == (verdict is None)  # refused: TensorFlow fails or errs


def test_damaged_bmps_and_gifs_that_are_kept_decode_right_in_tensorflow():
    cases = {**bmp_cases(), **gif_cases()}
    rng, refused = random.Random(0), 0
    for kind, (data, verdict) in cases.items():
        if verdict is not None:
            continue
        damaged = {f"cut at {n}": data[:n] for n in range(2, len(data), max(1, len(data) // 30))}
        for _ in range(60):  # about half of them in the headers
            flipped, limit = bytearray(data), min(len(data), rng.choice((128, len(data))))
            offset = rng.randrange(2, limit)
            flipped[offset] ^= 1 << rng.randrange(8)
            damaged[f"bit flipped at {offset}"] = bytes(flipped)
        kept = {what for what, variant in damaged.items()
                if image_checks.check_image(variant) is None}
        assert not {what for what in kept if not decoded_alike(damaged[what])}, kind
        refused += len(damaged) - len(kept)
    assert refused > 300


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
