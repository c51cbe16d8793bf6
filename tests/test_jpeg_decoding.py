"""decode_image's fast JPEG path (simplejpeg, the ``fastjpeg`` extra): Pillow's pixels exactly, EXIF orientation
applied alike, and Pillow for every JPEG it cannot do (CMYK, corrupt, truncated) and for all of them when
simplejpeg is not installed."""

from __future__ import annotations

import io
import sys
import tarfile
import types
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

import convzoo.data.images as images
from convzoo.data.images import decode_image
from convzoo.errors import DataError
from train_fixtures import SHARED_DATA

RNG = np.random.default_rng(29)


@pytest.fixture
def pillow_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """simplejpeg made unimportable (as when the extra is not installed) for the test's duration."""
    monkeypatch.setitem(sys.modules, "simplejpeg", None)
    images._simplejpeg.cache_clear()
    yield
    images._simplejpeg.cache_clear()


@pytest.fixture
def fast() -> None:
    pytest.importorskip("simplejpeg", reason="the fastjpeg extra is not installed: pip install 'convzoo[fastjpeg]'")
    images._simplejpeg.cache_clear()


def _photo(width: int, height: int) -> np.ndarray:
    """A photo-like H x W x 3 image: smooth colours with grain (noise alone would be no JPEG's content)."""
    coarse = RNG.integers(0, 256, (height // 6 + 2, width // 6 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float64)
    return np.clip(smooth + RNG.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _pillow(data: bytes) -> torch.Tensor:
    """Pillow's own pixels, written independently of convzoo: C x H x W."""
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    return torch.from_numpy((pixels[..., None] if pixels.ndim == 2 else pixels).transpose(2, 0, 1).copy())


def _takes_fast_path(data: bytes) -> bool:
    return images._fast_jpeg(Image.open(io.BytesIO(data)), data) is not None


JPEGS = {
    "4:2:0": lambda: _jpeg(Image.fromarray(_photo(64, 48)), quality=90),
    "4:4:4": lambda: _jpeg(Image.fromarray(_photo(64, 48)), quality=95, subsampling=0),
    "4:2:2": lambda: _jpeg(Image.fromarray(_photo(64, 48)), quality=75, subsampling=1),
    "progressive": lambda: _jpeg(Image.fromarray(_photo(64, 48)), progressive=True),
    "odd size 17x9": lambda: _jpeg(Image.fromarray(_photo(17, 9)), quality=20),
    "gray": lambda: _jpeg(Image.fromarray(_photo(40, 30)).convert("L")),
    "gray progressive": lambda: _jpeg(Image.fromarray(_photo(40, 30)).convert("L"), progressive=True),
}


@pytest.mark.parametrize("kind", list(JPEGS))
def test_fast_path_gives_pillows_pixels(kind, fast, tmp_path):
    data = JPEGS[kind]()
    assert _takes_fast_path(data)
    expected = _pillow(data)
    assert expected.shape[0] == (1 if kind.startswith("gray") else 3)  # gray stays one channel
    (tmp_path / "a.jpg").write_bytes(data)
    for decoded in (decode_image(data), decode_image(tmp_path / "a.jpg")):
        assert decoded.dtype == torch.uint8 and decoded.is_contiguous()
        assert torch.equal(decoded, expected), int((decoded.int() - expected.int()).abs().max())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pillow_applies_it(orientation, fast, monkeypatch):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _jpeg(Image.fromarray(_photo(24, 16)), exif=exif, quality=90)
    assert _takes_fast_path(data)
    decoded = decode_image(data)
    monkeypatch.setitem(sys.modules, "simplejpeg", None)
    images._simplejpeg.cache_clear()
    try:
        reference = decode_image(data)  # Pillow's ImageOps.exif_transpose
    finally:
        images._simplejpeg.cache_clear()
    assert reference.shape == ((3, 24, 16) if orientation >= 5 else (3, 16, 24))
    assert torch.equal(decoded, reference)


def test_xmp_orientation_is_read_too(fast, monkeypatch):
    data = _jpeg(Image.fromarray(_photo(24, 16)), xmp=b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/>'
                 b"</x:xmpmeta>")
    decoded = decode_image(data)
    assert decoded.shape == (3, 24, 16)  # turned as Pillow turns it
    assert torch.equal(decoded, torch.from_numpy(np.rot90(_pillow(data).permute(1, 2, 0).numpy(), -1).copy())
                       .permute(2, 0, 1))


def test_cmyk_jpeg_falls_back_to_pillow(fast):
    cmyk = Image.fromarray(_photo(32, 24)).convert("CMYK")
    data = _jpeg(cmyk)
    assert Image.open(io.BytesIO(data)).mode == "CMYK" and not _takes_fast_path(data)
    decoded = decode_image(data)
    with Image.open(io.BytesIO(data)) as image:
        expected = torch.from_numpy(np.asarray(image.convert("RGB")).transpose(2, 0, 1).copy())
    assert decoded.shape == (3, 24, 32) and torch.equal(decoded, expected)


def test_truncated_jpeg_is_named_in_the_error(fast, tmp_path):
    data = _jpeg(Image.fromarray(_photo(64, 48)), quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert not _takes_fast_path(path.read_bytes())  # simplejpeg refuses it; Pillow says why
    with pytest.raises(DataError) as err:
        decode_image(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a readable image: could not be decoded") and "\n" not in message


def test_damaged_jpegs_decode_as_pillow_decodes_them(fast):
    clean = _jpeg(Image.fromarray(_photo(200, 150)), quality=90)
    refused = 0
    for at in (len(clean) // 3, len(clean) // 2, 2 * len(clean) // 3):
        for damage in (b"\x13\x37\xaa\x55", b"\xff\x00\x13\x37\xaa\x55\x01\x02"):
            data = bytearray(clean)
            data[at: at + len(damage)] = damage  # entropy-coded data damaged: Pillow decodes what it can
            refused += not _takes_fast_path(bytes(data))  # where libjpeg warns, strict simplejpeg leaves it
            assert torch.equal(decode_image(bytes(data)), _pillow(bytes(data))), (at, damage)
    assert refused > 0  # some of the damage made libjpeg warn, and Pillow decoded those


def test_without_simplejpeg_pillow_decodes_every_jpeg(pillow_only, tmp_path):
    assert images._simplejpeg() is None
    for kind in ("4:2:0", "gray", "progressive"):
        data = JPEGS[kind]()
        assert not _takes_fast_path(data)
        assert torch.equal(decode_image(data), _pillow(data))
    path = tmp_path / "cut.jpg"
    path.write_bytes(JPEGS["4:2:0"]()[:200])
    with pytest.raises(DataError, match=f"^{path}: not a readable image: could not be decoded"):
        decode_image(path)


@pytest.mark.parametrize("version", ["1.6.6", "", "dev"])
def test_a_simplejpeg_without_strict_mode_is_not_used(version, monkeypatch):
    old = types.ModuleType("simplejpeg")
    old.__version__ = version  # type: ignore[attr-defined]
    old.decode_jpeg = lambda *args, **kwargs: pytest.fail("an old simplejpeg was called")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "simplejpeg", old)
    images._simplejpeg.cache_clear()
    try:
        data = JPEGS["4:2:0"]()
        assert images._simplejpeg() is None and torch.equal(decode_image(data), _pillow(data))
    finally:
        images._simplejpeg.cache_clear()


@pytest.mark.data
def test_real_photos_decode_as_pillow_decodes_them(fast):
    archive = SHARED_DATA / "photos" / "caltech101-top10.tar.gz"
    if not archive.exists():
        pytest.skip(f"{archive} not found (../shared/data beside the repository)")
    gray = 0
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".jpg")), key=lambda m: m.name)
        for member in members[::61] + [m for m in members if "car_side" in m.name][:8]:  # car_side: gray
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert _takes_fast_path(data), member.name
            decoded = decode_image(data, name=member.name)
            gray += decoded.shape[0] == 1
            assert torch.equal(decoded, _pillow(data)), member.name
    assert gray > 0  # the grayscale photos were among them


def test_mpo_gives_its_first_picture(fast):
    first, second = Image.fromarray(_photo(40, 30)), Image.fromarray(_photo(24, 20))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO" and _takes_fast_path(data)
    decoded = decode_image(data)
    assert decoded.shape == (3, 30, 40) and torch.equal(decoded, _pillow(data))  # Pillow's frame 0


def test_fast_path_is_never_taken_for_other_formats(fast):
    buffer = io.BytesIO()
    Image.fromarray(_photo(8, 6)).save(buffer, "PNG")
    assert not _takes_fast_path(buffer.getvalue())


def test_orientation_table_matches_pillow_transposes():
    """_transposed against Image.transpose, orientation by orientation, on a non-square image."""
    pixels = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    methods = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
    for orientation, method in methods.items():
        expected = np.asarray(Image.fromarray(pixels).transpose(method))
        assert np.array_equal(images._transposed(pixels, orientation), expected), orientation
    assert np.array_equal(images._transposed(pixels, 1), pixels) and np.array_equal(images._transposed(pixels, 9),
                                                                                   pixels)
