"""The one image decoder and the one directory walker: training, the decoded cache and predict all use them.

:func:`decode_image` turns an image file (or its bytes) into a uint8 tensor ``C x H x W``, C = 1 for the
gray modes and 3 for the others, with one fixed rule per Pillow mode. The rules never look at the pixel
values of the image at hand, so a value means the same pixel in every image, and a file gives the same
tensor to ``convzoo train`` (image folders) as to ``convzoo predict`` (no train/serve skew).

=================================  ==  ================================================================
Pillow mode                        C   rule
=================================  ==  ================================================================
``1`` (1-bit)                      1   0 -> 0, 1 -> 255
``L``                              1   as stored
``LA``                             1   composited over black: ``round(L * A / 255)``
``P`` without transparency         3   the palette's RGB colour
``P`` with transparency            3   the palette's RGBA colour, composited over black
``PA``                             3   the palette's colour with the A band, composited over black
``RGB``                            3   as stored
``RGBA``                           3   composited over black: ``round(c * A / 255)`` per channel
``CMYK``                           3   Pillow's conversion: ``c' = (255 - c)(255 - K) / 255`` (no ICC)
``I;16``, ``I;16B``, ``I;16L``     1   16-bit: ``round(v * 255 / 65535)`` (40000 -> 156)
``I`` (32-bit integer)             1   clipped to 0..65535, then as 16-bit
``F`` (32-bit float)               1   clipped to [0, 1] (NaN -> 0), then ``round(v * 255)``
any other mode                     3   Pillow's ``convert("RGB")`` (YCbCr, LAB, HSV, RGBX, ...)
=================================  ==  ================================================================

Why these rules:

- Transparent pixels become black (alpha composited over black) rather than keeping the colour that
  happens to be stored under alpha 0: what a transparent pixel stores is arbitrary (editors write
  anything there), black is what the zero padding of the network sees too. A transparency key (PNG
  ``tRNS`` on a ``1``, ``L`` or ``RGB`` image) counts as alpha: keyed pixels become black, C unchanged.
- 16-bit values are scaled, not clipped: clipping sends every value above 255 to white (a 16-bit photo
  became all white). ``I`` is how Pillow opens some 16-bit files (and 32-bit integer TIFFs), so it gets
  the 16-bit rule.
- ``F`` images hold intensities on the [0, 1] scale, as float images do in torchvision
  (``ToTensor``/``to_pil_image``) and scikit-image; a fixed scale maps one value to one pixel in every
  image, where scaling each image by its own maximum would not. Store 0..255 data as 8-bit images.
- 16-bit-per-channel RGB(A) and LA PNGs are opened by Pillow as the 8-bit ``RGB``/``RGBA``/``LA`` modes
  (its own conversion); the rows above then apply. Rounding is to the nearest integer (none of the
  integer rules can tie; ``F`` ties go to even).
- EXIF orientation is applied (``ImageOps.exif_transpose``) before any rule, in every path: a phone photo
  stores its pixels sideways with an orientation tag, and a model must see it upright as people do.
  Images with several frames (GIF, multi-page TIFF) give their first frame.
- JPEGs (and MPO files, JPEGs with more pictures after the first) that Pillow opens as ``L`` or ``RGB``
  are decoded by simplejpeg when it is installed (convzoo's ``fastjpeg`` extra): libjpeg-turbo with
  Pillow's own settings (accurate integer DCT, fancy upsampling), so the pixels are Pillow's exactly, and
  decode_image runs 1.2-1.85x faster on photos (``benchmarks/decode.py``, docs/benchmarks.md). The header
  is still read by Pillow (mode, size, the bomb check, EXIF orientation). CMYK JPEGs, and every JPEG that
  makes libjpeg warn (damaged or truncated data: simplejpeg's strict mode raises), are decoded by Pillow as
  before, so a bad file gives the same error or the same tensor with or without simplejpeg. Without it
  Pillow decodes every file: torchvision.io.decode_jpeg, faster than Pillow too, is deprecated since
  torchvision 0.29 (to be removed, superseded by TorchCodec), so the fallback is the decoder that stays.
- Decompression bombs: an image declaring more than ``max_pixels`` pixels (:data:`MAX_PIXELS` unless
  told) is refused from its header, before any pixel is decoded.

:data:`DECODER_VERSION` changes whenever a rule changes; the decoded cache is keyed by it, so a cache
decoded under older rules is never served.

:func:`walk_images` lists the image files under a folder, the same way for reading an image folder and for
the decoded cache's key (so an edit anywhere that is read changes the key).
"""

from __future__ import annotations

import functools
import io
import os
import stat
import struct
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from convzoo.errors import DataError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["DECODER_VERSION", "IMAGE_EXTENSIONS", "MAX_PIXELS", "decode_image", "displayed_size", "pil_to_tensor",
           "read_file", "walk_images"]

DECODER_VERSION = 1  # bump whenever a rule of the table above changes: it is part of the decoded cache's key
MAX_PIXELS = 64_000_000  # images declaring more pixels are refused before decoding (decompression bombs)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif")

_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_GRAY = frozenset({"1", "L", "LA", "I", "F"}) | _SIXTEEN_BIT
_KEYED = {"1": "LA", "L": "LA", "RGB": "RGBA", "P": "RGBA"}  # mode with a transparency key -> mode with alpha
# Image.open is serialised: it is where Pillow may warn about a large image, and the warning filter that
# silences that warning (convzoo refuses such images itself, below) is process-wide state.
_OPEN_LOCK = threading.Lock()
_JPEG_COLORSPACES = {"L": "GRAY", "RGB": "RGB"}  # the Pillow modes of the JPEGs simplejpeg decodes
# MPO: a camera's JPEG with more pictures after the first (Pillow's frame 0), which libjpeg decodes and stops at
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_SIMPLEJPEG_AT_LEAST = (1, 9)  # pyproject's fastjpeg extra: strict mode, tested with 1.9.0
_ORIENTATION = 0x0112  # the EXIF orientation tag


def decode_image(source: str | os.PathLike[str] | bytes, *, name: str | None = None,
                 max_pixels: int = MAX_PIXELS) -> Tensor:
    """An image file (a path, or the file's bytes) as uint8 ``C x H x W``: C = 1 for the gray modes, 3 for
    the others, by the rules of this module's table; EXIF orientation applied.

    ``name`` names the image in error messages (default: the path, or ``<bytes>``). Every problem (missing,
    unreadable, not an image, corrupt, larger than ``max_pixels``) is a one-line :class:`DataError` naming
    the file and the fix.
    """
    if isinstance(source, bytes | bytearray):
        label = name or "<bytes>"
        data = bytes(source)
        if not data:
            raise DataError(f"{label}: empty (0 bytes), not an image; give the bytes of an image file")
    else:
        label = name or str(source)
        data = read_file(Path(source), label)
    image = _open(data, label, max_pixels)
    fast = _fast_jpeg(image, data)
    if fast is not None:
        return fast
    try:
        image = _canonical(image)
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # truncated or corrupt data, odd modes
        raise DataError(f"{label}: not a readable image: could not be decoded ({err}); replace it or remove "
                        "it") from None
    return _to_tensor(image)


def displayed_size(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(height, width) of an image file as :func:`decode_image` will give it (EXIF orientation applied), read
    from its header without decoding the pixels; the same one-line DataError as decoding it for a file that is
    missing, no image or larger than ``max_pixels``."""
    image = _open(read_file(Path(path)), str(path), max_pixels)
    width, height = image.size
    try:
        turned = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)  # EXIF orientation swaps the sides
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):  # corrupt past the header: decoding says so
        H, W = decode_image(path, max_pixels=max_pixels).shape[-2:]
        return int(H), int(W)
    return (width, height) if turned else (height, width)


def pil_to_tensor(image: PILImage.Image) -> Tensor:
    """A PIL image already open (a user's, not a file) as uint8 ``C x H x W`` by the rules of this module's
    table, as :func:`decode_image` reads its file: EXIF orientation, transparency, palettes and 16-bit modes
    alike. The caller's image is left as it is (the rules work on a copy)."""
    try:
        return _to_tensor(_canonical(image.copy()))
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # a lazily opened image whose data is corrupt
        raise DataError(f"<PIL image>: not a readable image: could not be decoded ({err})") from None


def read_file(path: Path, label: str | None = None, *, folder: str = "is a folder; give an image file",
              empty: str = "the file is empty (0 bytes), not an image; replace it or remove it") -> bytes:
    """The bytes of a data file (an image, an IDX file, a CIFAR batch), or a DataError naming it (as
    ``label``, default the path) and saying why they cannot be had; ``folder`` and ``empty`` are what to
    say when it is a folder or has no bytes."""
    label = str(path) if label is None else label
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{label}: {folder}") from None
    except PermissionError:
        raise DataError(f"{label}: permission denied; make it readable (chmod a+r)") from None
    except OSError as err:  # e.g. ELOOP for a symlink loop
        raise DataError(f"{label}: cannot be read: {err.strerror or err}") from None
    if not data:
        raise DataError(f"{label}: {empty}")
    return data


def _open(data: bytes, label: str, max_pixels: int) -> PILImage.Image:
    """Pillow's lazily decoded image, refused from its header when it declares more than ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused just below instead
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # past Pillow's own limit (twice its warning size): refused too
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise _bomb(label, f"more than {limit:,} pixels") from None
    except UnidentifiedImageError:
        raise DataError(f"{label}: not a readable image (not an image file Pillow recognises); replace it or "
                        "remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # a recognised but corrupt header
        raise DataError(f"{label}: not a readable image: could not be decoded ({err}); replace it or remove "
                        "it") from None
    width, height = image.size
    if width * height > max_pixels:
        raise _bomb(label, f"{width}x{height} pixels, more than {max_pixels:,}")
    return image


def _bomb(label: str, declared: str) -> DataError:
    return DataError(f"{label}: declares {declared}: refused before decoding (a decompression bomb?); "
                     "shrink the image or remove it")


def _fast_jpeg(image: PILImage.Image, data: bytes) -> Tensor | None:
    """A JPEG that Pillow opened as ``L`` or ``RGB``, decoded by simplejpeg (the same pixels as Pillow's, see
    the module's notes) with its EXIF orientation applied, as :func:`_to_tensor` would give it; None, for
    Pillow to decode, for any other file, without simplejpeg, or when simplejpeg or the EXIF data refuse it."""
    colorspace = _JPEG_COLORSPACES.get(image.mode)
    decode = _simplejpeg() if image.format in _JPEG_FORMATS and colorspace else None
    if decode is None:
        return None
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)  # what ImageOps.exif_transpose reads (EXIF or XMP)
        # accurate DCT, fancy upsampling: Pillow's settings; strict: a libjpeg warning raises (Pillow decides)
        pixels = decode(data, colorspace=colorspace, fastdct=False, fastupsample=False, strict=True)  # H x W x C
    except (OSError, SyntaxError, ValueError, EOFError):
        return None
    if pixels.shape != (image.height, image.width, 3 if colorspace == "RGB" else 1):
        return None
    pixels = _transposed(pixels, orientation)  # H' x W' x C, upright
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # C x H' x W'


def _transposed(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``H x W x C`` pixels turned upright by an EXIF orientation, as ``ImageOps.exif_transpose`` turns them
    (2 mirrored, 3 upside down, 4 flipped, 5 transposed, 6 turned left, 7 transversed, 8 turned right;
    anything else as stored)."""
    if orientation == 2:
        return pixels[:, ::-1]  # FLIP_LEFT_RIGHT
    if orientation == 3:
        return pixels[::-1, ::-1]  # ROTATE_180
    if orientation == 4:
        return pixels[::-1]  # FLIP_TOP_BOTTOM
    if orientation == 5:
        return pixels.transpose(1, 0, 2)  # TRANSPOSE: W x H x C
    if orientation == 6:
        return np.rot90(pixels, -1)  # ROTATE_270 (90 degrees clockwise)
    if orientation == 7:
        return pixels[::-1, ::-1].transpose(1, 0, 2)  # TRANSVERSE
    if orientation == 8:
        return np.rot90(pixels, 1)  # ROTATE_90 (counter-clockwise)
    return pixels


@functools.cache
def _simplejpeg() -> Callable[..., np.ndarray] | None:
    """simplejpeg's ``decode_jpeg``, or None when the ``fastjpeg`` extra is not installed or the simplejpeg
    found is older than it asks for (looked up once): older ones have no ``strict`` mode, and would decode a
    truncated file that Pillow refuses."""
    try:
        import simplejpeg
    except ImportError:
        return None
    if _version(getattr(simplejpeg, "__version__", "")) < _SIMPLEJPEG_AT_LEAST:
        return None
    return simplejpeg.decode_jpeg  # type: ignore[no-any-return]


def _version(text: str) -> tuple[int, ...]:
    """``"1.9.0"`` -> ``(1, 9, 0)``; the leading numeric parts only, ``()`` for none."""
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def _canonical(image: PILImage.Image) -> PILImage.Image:
    """Decoded, EXIF orientation applied, and in one of the modes :func:`_to_tensor` reads: ``1``, ``L``,
    ``LA``, ``RGB``, ``RGBA``, 16-bit, ``I`` or ``F``. Pillow calls only: its errors are the file's fault."""
    from PIL import ImageOps

    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    mode = image.mode
    if mode in _KEYED and "transparency" in image.info:  # a transparency key (PNG tRNS, GIF) is alpha
        return image.convert(_KEYED[mode])
    if mode == "PA":
        return image.convert("RGBA")
    if mode in _GRAY or mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGB")  # P without transparency, CMYK and every other mode


def _to_tensor(image: PILImage.Image) -> Tensor:
    """A canonical image (see :func:`_canonical`) as uint8 ``C x H x W`` by the module's rules."""
    mode = image.mode
    pixels = np.array(image)  # H x W or H x W x bands, a copy of Pillow's buffer
    if mode == "1":
        gray = pixels.astype(np.uint8) * 255  # bool -> 0 / 255
    elif mode == "L":
        gray = pixels
    elif mode == "LA":
        gray = _over_black(pixels[..., 0], pixels[..., 1])
    elif mode in _SIXTEEN_BIT or mode == "I":
        values = np.clip(pixels.astype(np.int64), 0, 65535)
        gray = ((values + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535), exact in integers
    elif mode == "F":
        values = np.nan_to_num(pixels.astype(np.float64), nan=0.0)
        gray = np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    elif mode == "RGBA":
        rgb = _over_black(pixels[..., :3], pixels[..., 3:])
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # 3 x H x W
    else:  # RGB
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # 3 x H x W
    return torch.from_numpy(np.ascontiguousarray(gray, dtype=np.uint8))[None]  # 1 x H x W


def _over_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``round(color * alpha / 255)``: uint8 colour composited over black (``+ 127`` rounds; no ties)."""
    return ((color.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def walk_images(root: str | os.PathLike[str]) -> list[Path]:
    """The image files under ``root`` (by extension, case-insensitive), in a fixed order: a folder's files
    sorted by name, then its subfolders', each sorted by name, depth first.

    Symlinked folders are followed (a class folder may be a link to where the images live); a folder that
    leads back to one of its own parents is a symlink loop and refused. Hidden entries (``.name``) are
    skipped. Symlinked files are listed as found, broken ones included, so reading them says what is wrong.
    Used both to read image folders and to key the decoded cache: what is read is what the key is made of.
    """
    top = Path(root)
    found: list[Path] = []
    stack: list[tuple[Path, tuple[tuple[int, int], ...]]] = [(top, (_identity(top),))]
    while stack:
        folder, parents = stack.pop()  # parents: the identities of folder and every folder above it
        files, folders = _list(folder)
        found += files
        children = []
        for sub in folders:
            identity = _identity(sub)
            if identity in parents:
                raise DataError(f"{sub}: symlink loop (it leads back to {os.path.realpath(sub)}); remove the link")
            children.append((sub, (*parents, identity)))
        stack += reversed(children)  # popped in name order
    return found


def _list(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, subfolders) of one folder, each sorted by name, hidden entries skipped."""
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        raise DataError(f"{folder}: cannot be listed: {err.strerror or err}") from None
    files, folders = [], []
    for e in entries:
        if _is_dir(e):
            folders.append(folder / e.name)
        elif e.name.lower().endswith(IMAGE_EXTENSIONS):
            files.append(folder / e.name)
    return files, folders


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Through symlinks; False for a broken or looping link, which is then listed as a file (if its name is an
    image's) so that reading it says what is wrong, as ``os.walk`` does."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _identity(folder: Path) -> tuple[int, int]:
    """(device, inode) of a folder, through symlinks: equal for two paths to the same folder."""
    try:
        st = os.stat(folder)
    except OSError as err:
        raise DataError(f"{folder}: cannot be listed: {err.strerror or err}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DataError(f"{folder}: not a folder")
    return st.st_dev, st.st_ino
