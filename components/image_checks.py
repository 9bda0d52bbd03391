"""Whether an encoded image is one TensorFlow decodes: checks by content, never by file name.

Pure Python, zlib and PIL (no TensorFlow): ImageExampleGen's Beam workers call ``check_image``
on every file or tfds record and skip, with the reason counted, what it rejects.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

SKIP_REASONS = ("empty", "not_an_image", "unsupported_format", "truncated", "undecodable")
# The formats tf.io.decode_image decodes. PIL calls JPEGs carrying an MP (multi-picture)
# extension, as many cameras write them, "MPO"; TensorFlow decodes them as JPEG.
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "GIF", "BMP"})


def check_image(data: bytes) -> str | None:
    """Returns why an encoded image must be skipped (one of ``SKIP_REASONS``), or None to keep it.

    "empty": zero bytes; "not_an_image": not a format PIL identifies; "unsupported_format": not
    PNG, JPEG, GIF or BMP (what ``tf.io.decode_image`` reads); "truncated": the data ends early;
    "undecodable": any other decoding failure. Content decides, never a file name. Grayscale,
    CMYK, palette and alpha images are kept: TensorFlow decodes them to 3 channels.

    PNGs are checked by ``check_png`` (their pixel data is inflated, not unfiltered: the
    verdict of TensorFlow's decoder in the tests, in a third of PIL's time); every other format
    is decoded with PIL.
    """
    if not data:
        return "empty"
    if data.startswith(PNG_SIGNATURE):
        return check_png(data)
    return decode_with_pil(data)


def decode_with_pil(data: bytes) -> str | None:
    """``check_image``'s verdict from a full decode with PIL.

    Relies on PIL's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` (never set it).
    """
    try:
        image = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        return "not_an_image"
    except Exception:  # noqa: BLE001  (a header PIL recognises but cannot parse, a huge image)
        return "undecodable"
    with image:
        if image.format not in SUPPORTED_FORMATS:
            return "unsupported_format"
        try:
            image.load()
        except Exception as error:  # noqa: BLE001  (PIL raises OSError, SyntaxError, ...)
            truncated = isinstance(error, EOFError) or "truncated" in str(error)
            return "truncated" if truncated else "undecodable"
    return None


EXIF_ORIENTATION_TAG = 0x0112
LARGE_PIXELS = 4096 * 4096  # above this, decoding an image costs more than training on it


def is_large(data: bytes) -> bool:
    """Whether a kept image has more than ``LARGE_PIXELS`` pixels (read from its header only):
    each is decoded whole every epoch before being resized, so a few slow training down."""
    if data.startswith(PNG_SIGNATURE):
        width, height = struct.unpack(">II", data[16:24])
    else:
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:  # noqa: BLE001  (check_image has kept it: nothing more to learn)
            return False
    return width * height > LARGE_PIXELS



def exif_rotated(data: bytes) -> bool:
    """Whether a JPEG's EXIF orientation says it is displayed rotated or mirrored (not 1).

    Such images are trained on as stored: ``tf.io.decode_image`` (Transform, and the serving
    signature, which gets the same bytes) ignores EXIF, so training and serving agree, but a
    viewer shows them turned. ImageExampleGen counts them per split for the data report."""
    if not data.startswith(b"\xff\xd8"):
        return False
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.getexif().get(EXIF_ORIENTATION_TAG, 1) not in (0, 1)
    except Exception:  # noqa: BLE001  (EXIF that PIL cannot parse: nothing to apply)
        return False


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> (channels, allowed bit depths)
_PNG_COLOR_TYPES = {0: (1, {1, 2, 4, 8, 16}), 2: (3, {8, 16}), 3: (1, {1, 2, 4, 8}),
                    4: (2, {8, 16}), 6: (4, {8, 16})}
# Adam7 interlacing: (first column, first row, column step, row step) of each pass
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def check_png(data: bytes) -> str | None:
    """``check_image``'s verdict on PNG data, checked the way libpng reads it.

    The chunks must be complete ("truncated" otherwise) with a valid IHDR first, a PLTE in a
    palette image, and correct CRCs on the critical chunks (IHDR, PLTE,
    IDAT, IEND; libpng ignores bad ancillary ones). The IDAT stream is inflated: it must be valid
    zlib ("undecodable") holding exactly one filter byte (0-4) plus the packed pixels of every
    row ("truncated" if shorter), and IEND must end the image ("truncated" without it). Data
    after IEND is ignored.
    """
    view, position = memoryview(data), len(PNG_SIGNATURE)
    header, palette, pixel_data = None, False, []
    while True:
        if position + 12 > len(data):
            return "truncated"  # also when IEND is missing
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            return "truncated"
        critical = not kind[0] & 0x20
        if critical and zlib.crc32(view[position + 4:end - 4]) != struct.unpack_from(
                ">I", data, end - 4)[0]:
            return "undecodable"
        body = view[position + 8:end - 4]
        if (header is None) != (kind == b"IHDR"):
            return "undecodable"  # IHDR must come first, and only once
        if kind == b"IHDR":
            header = bytes(body)
        elif kind == b"PLTE":
            palette = True
        elif kind == b"IDAT":
            pixel_data.append(body)
        elif kind == b"IEND":
            break
        position = end
    return _check_png_pixels(header, palette, pixel_data)


def _check_png_pixels(header: bytes, palette: bool, pixel_data: list) -> str | None:
    if len(header) != 13:
        return "undecodable"
    width, height, depth, color, compression, filtering, interlace = struct.unpack(">IIBBBBB",
                                                                                   header)
    channels, depths = _PNG_COLOR_TYPES.get(color, (0, ()))
    if (not width or not height or depth not in depths or compression or filtering
            or interlace > 1 or (color == 3 and not palette)
            or width * height > 2 * Image.MAX_IMAGE_PIXELS):
        return "undecodable"
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    rows = [(-(-(height - y0) // dy), 1 + (-(-(width - x0) // dx) * channels * depth + 7) // 8)
            for x0, y0, dx, dy in passes if width > x0 and height > y0]
    expected = sum(count * size for count, size in rows)
    inflater = zlib.decompressobj()
    try:
        pixels = inflater.decompress(b"".join(pixel_data), expected)
    except zlib.error:
        return "undecodable"
    if len(pixels) < expected:
        return "truncated"
    start = 0
    for count, size in rows:
        if max(pixels[start:start + count * size:size]) > 4:
            return "undecodable"  # a row's filter type is not one PNG defines
        start += count * size
    return None
