"""convzoo.data.images: one decoder for training and predict (one file of each Pillow mode, written here,
must give the same uint8 tensor on both paths and follow the documented rule), and one directory walker for
reading and for the decoded cache's key."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convzoo.data.datasets as datasets
from convzoo.data import load_dataset
from convzoo.data.formats import read_image_folder
from convzoo.data.images import DECODER_VERSION, decode_image, walk_images
from convzoo.errors import DataError
from convzoo.train.inference import read_image

H, W = 5, 6  # not square, so a transposed image cannot pass for an upright one
RNG = np.random.default_rng(12)


def _chw(array: np.ndarray) -> torch.Tensor:
    """H x W or H x W x 3 uint8 as C x H x W."""
    array = np.asarray(array, dtype=np.uint8)
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())


def _over_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The documented rule, written independently: round(c * a / 255) in floats."""
    return np.rint(color.astype(np.float64) * alpha.astype(np.float64) / 255).astype(np.uint8)


PALETTE = np.array([[10, 20, 30], [200, 100, 50], [0, 255, 0], [90, 0, 200]], np.uint8)
INDICES = RNG.integers(0, 4, (H, W)).astype(np.uint8)
INDICES[0, :4] = [0, 1, 2, 3]  # every colour appears


def _palette_image() -> Image.Image:
    image = Image.frombytes("P", (W, H), INDICES.tobytes())
    image.putpalette(PALETTE.flatten().tolist())
    return image


# Each writer saves one file of its mode under ``folder`` and returns (file, the tensor the rule gives).
def _mode_1(folder: Path) -> tuple[Path, torch.Tensor]:
    bits = RNG.integers(0, 2, (H, W)).astype(bool)
    Image.fromarray(bits).save(folder / "one.png")
    return folder / "one.png", _chw(bits * 255)  # 0 / 1 -> 0 / 255


def _mode_L(folder: Path) -> tuple[Path, torch.Tensor]:
    gray = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(gray).save(folder / "gray.png")
    return folder / "gray.png", _chw(gray)


def _mode_LA(folder: Path) -> tuple[Path, torch.Tensor]:
    la = RNG.integers(0, 256, (H, W, 2), dtype=np.uint8)
    la[0, :3] = [(200, 128), (200, 0), (200, 255)]
    Image.fromarray(la).save(folder / "gray-alpha.png")
    expected = _over_black(la[..., 0], la[..., 1])
    assert expected[0, :3].tolist() == [100, 0, 200]  # 200 at alpha 128 is 100; transparent is black
    return folder / "gray-alpha.png", _chw(expected)


def _mode_P(folder: Path) -> tuple[Path, torch.Tensor]:
    _palette_image().save(folder / "palette.png")
    return folder / "palette.png", _chw(PALETTE[INDICES])


def _mode_P_transparency(folder: Path) -> tuple[Path, torch.Tensor]:
    _palette_image().save(folder / "palette-key.png", transparency=1)  # colour 1 (200, 100, 50) transparent
    expected = PALETTE[INDICES].copy()
    expected[INDICES == 1] = 0
    return folder / "palette-key.png", _chw(expected)


def _mode_PA(folder: Path) -> tuple[Path, torch.Tensor]:
    alpha = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    alpha[0, :2] = [0, 128]
    image = _palette_image().convert("PA")
    image.putalpha(Image.fromarray(alpha))
    image.save(folder / "palette-alpha.tiff")  # Pillow writes PA to TIFF only
    expected = _over_black(PALETTE[INDICES], alpha[..., None])
    assert expected[0, 0].tolist() == [0, 0, 0] and expected[0, 1].tolist() == [100, 50, 25]
    return folder / "palette-alpha.tiff", _chw(expected)


def _mode_RGB(folder: Path) -> tuple[Path, torch.Tensor]:
    rgb = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    return folder / "rgb.png", _chw(rgb)


def _mode_RGBA(folder: Path) -> tuple[Path, torch.Tensor]:
    rgba = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[0, :3] = [(200, 100, 50, 0), (200, 100, 50, 128), (200, 100, 50, 255)]
    Image.fromarray(rgba).save(folder / "rgba.png")
    expected = _over_black(rgba[..., :3], rgba[..., 3:])
    assert expected[0, :3].tolist() == [[0, 0, 0], [100, 50, 25], [200, 100, 50]]
    return folder / "rgba.png", _chw(expected)


def _mode_CMYK(folder: Path) -> tuple[Path, torch.Tensor]:
    cmyk = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    cmyk[0, :4] = [(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (0, 0, 255, 128)]
    Image.frombytes("CMYK", (W, H), cmyk.tobytes()).save(folder / "cmyk.tiff")
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    expected = np.rint((255 - c) * (255 - k) / 255).astype(np.uint8)
    assert expected[0, :4].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0], [127, 127, 0]]
    return folder / "cmyk.tiff", _chw(expected)


def _mode_I16(folder: Path) -> tuple[Path, torch.Tensor]:
    values = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    values[0, :5] = [40000, 0, 65535, 128, 129]
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    image.save(folder / "sixteen.png")
    expected = np.rint(values.astype(np.float64) * 255 / 65535)
    assert expected[0, :5].tolist() == [156, 0, 255, 0, 1]  # 40000 -> 156 (clipping made it 255)
    return folder / "sixteen.png", _chw(expected)


def _mode_I(folder: Path) -> tuple[Path, torch.Tensor]:
    values = RNG.integers(-1000, 70000, (H, W)).astype(np.int32)
    values[0, :5] = [-5, 40000, 70000, 65535, 257]
    Image.fromarray(values).save(folder / "int32.tiff")
    expected = np.rint(np.clip(values, 0, 65535) * 255 / 65535)
    assert expected[0, :5].tolist() == [0, 156, 255, 255, 1]
    return folder / "int32.tiff", _chw(expected)


def _mode_F(folder: Path) -> tuple[Path, torch.Tensor]:
    values = RNG.uniform(-0.2, 1.2, (H, W)).astype(np.float32)
    values[0, :6] = [-0.5, 0.2, 1.0, 2.0, np.nan, 0.5]
    Image.fromarray(values).save(folder / "float.tiff")
    expected = np.rint(np.clip(np.nan_to_num(values.astype(np.float64)), 0, 1) * 255)
    assert expected[0, :6].tolist() == [0, 51, 255, 255, 0, 128]  # [0, 1] scale whatever the image's max
    return folder / "float.tiff", _chw(expected)


MODES: dict[str, Callable[[Path], tuple[Path, torch.Tensor]]] = {
    "1": _mode_1, "L": _mode_L, "LA": _mode_LA, "P": _mode_P, "P with transparency": _mode_P_transparency,
    "PA": _mode_PA, "RGB": _mode_RGB, "RGBA": _mode_RGBA, "CMYK": _mode_CMYK, "I;16": _mode_I16, "I": _mode_I,
    "F": _mode_F,
}


@pytest.mark.parametrize("mode", list(MODES))
def test_training_and_predict_see_the_same_pixels(mode, tmp_path):
    folder = tmp_path / "images" / "only"
    folder.mkdir(parents=True)
    path, expected = MODES[mode](folder)
    with Image.open(path) as image:
        assert image.mode == mode.split()[0]  # the file really is of that mode
    X, y, classes = read_image_folder(tmp_path / "images")  # training: N x C x H x W
    predicted = read_image(path)  # predict: C x H x W
    assert X.dtype == predicted.dtype == torch.uint8 and X.shape == (1, *predicted.shape)
    assert torch.equal(X[0], predicted)
    assert torch.equal(predicted, expected), (mode, predicted, expected)
    assert classes == ("only",) and y.tolist() == [0]


def test_exif_orientation_is_applied_on_both_paths(tmp_path):
    folder = tmp_path / "images" / "phone"
    folder.mkdir(parents=True)
    stored = np.zeros((8, 16, 3), np.uint8)  # as the sensor stored it: 16 wide, 8 high
    stored[:, :8] = (255, 0, 0)  # left half red
    stored[:, 8:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(folder / "photo.jpg", exif=exif, quality=100, subsampling=0)
    X, _, _ = read_image_folder(tmp_path / "images")
    predicted = read_image(folder / "photo.jpg")
    assert torch.equal(X[0], predicted)
    assert predicted.shape == (3, 16, 8)  # upright: 8 wide, 16 high
    upright = np.zeros((16, 8, 3), np.uint8)
    upright[:8] = (255, 0, 0)  # the stored left half is now on top
    upright[8:] = (0, 0, 255)
    assert int((predicted.int() - _chw(upright).int()).abs().max()) <= 4  # JPEG's rounding only


def test_transparency_key_on_gray_and_rgb(tmp_path):
    gray = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    gray[0, 0] = 7
    Image.fromarray(gray).save(tmp_path / "gray.png", transparency=7)
    expected = np.where(gray == 7, 0, gray)
    assert torch.equal(decode_image(tmp_path / "gray.png"), _chw(expected))
    rgb = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(1, 2, 3))
    keyed = (rgb == (1, 2, 3)).all(axis=-1)
    assert torch.equal(decode_image(tmp_path / "rgb.png"), _chw(np.where(keyed[..., None], 0, rgb)))


def test_bytes_and_path_decode_alike(tmp_path):
    path, expected = _mode_RGBA(tmp_path)
    assert torch.equal(decode_image(path.read_bytes()), expected)
    assert torch.equal(decode_image(path), expected)


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A valid PNG header declaring ``width x height`` gray pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize(("width", "height", "needle"), [
    (9000, 9000, "declares 9000x9000 pixels, more than 64,000,000"),  # under Pillow's own limit: ours refuses
    (12000, 9000, "declares 12000x9000 pixels"),  # between Pillow's warning and its error: no warning either
    (30000, 30000, "declares more than 64,000,000 pixels"),  # past Pillow's error limit
])
def test_decompression_bombs_are_refused_on_both_paths(width, height, needle, tmp_path, recwarn):
    folder = tmp_path / "images" / "bomb"
    folder.mkdir(parents=True)
    _png_declaring(folder / "huge.png", width, height)
    for read in (lambda: read_image(folder / "huge.png"), lambda: read_image_folder(tmp_path / "images")):
        with pytest.raises(DataError, match="decompression bomb") as err:
            read()
        assert needle in str(err.value) and "huge.png" in str(err.value) and "\n" not in str(err.value)
    assert not [w for w in recwarn if "decompression" in str(w.message).lower()]


def test_max_pixels_is_checked_from_the_header(tmp_path):
    path, expected = _mode_RGB(tmp_path)
    assert torch.equal(decode_image(path, max_pixels=H * W), expected)
    with pytest.raises(DataError, match=f"declares {W}x{H} pixels, more than 29"):
        decode_image(path, max_pixels=H * W - 1)


def _truncated(path: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize(("write", "needle"), [
    (lambda p: p.write_text("not a png"), "not a readable image (not an image file"),
    (lambda p: p.write_bytes(b""), "the file is empty (0 bytes), not an image"),
    (_truncated, "could not be decoded"),
    (lambda p: p.symlink_to(p), "cannot be read"),
])
def test_bad_files_give_the_same_one_line_error_on_both_paths(write, needle, tmp_path):
    folder = tmp_path / "images" / "bad"
    folder.mkdir(parents=True)
    write(folder / "bad.png")
    messages = []
    for read in (lambda: read_image(folder / "bad.png"), lambda: read_image_folder(tmp_path / "images")):
        with pytest.raises(DataError) as err:
            read()
        messages.append(str(err.value))
    assert messages[0] == messages[1] and needle in messages[0] and "\n" not in messages[0]
    assert messages[0].startswith(str(folder / "bad.png"))


# ---- the walker and the cache key -----------------------------------------------------------------------


def _png(path: Path, value: int, size: tuple[int, int] = (H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


def test_walker_order_hidden_entries_and_extensions(tmp_path):
    for name in ("b.png", "a.PNG", "c.txt", ".hidden.png", "sub/z.jpg", "sub/deeper/y.png", ".git/x.png", "a2/w.png"):
        _png(tmp_path / name, 1) if name.lower().endswith((".png", ".jpg")) else (tmp_path / name).write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in walk_images(tmp_path)] == [
        "a.PNG", "b.png", "a2/w.png", "sub/z.jpg", "sub/deeper/y.png"]  # a folder's files, then its folders


def test_symlinked_class_folder_is_read(tmp_path):
    _png(tmp_path / "elsewhere" / "dogs" / "1.png", 200)
    _png(tmp_path / "elsewhere" / "dogs" / "2.png", 210)
    _png(tmp_path / "pets" / "cat" / "1.png", 10)
    (tmp_path / "pets" / "dog").symlink_to(tmp_path / "elsewhere" / "dogs", target_is_directory=True)
    assert [p.name for p in walk_images(tmp_path / "pets")] == ["1.png", "1.png", "2.png"]
    data = load_dataset(f"imagefolder:{tmp_path / 'pets'}", cache_dir=tmp_path / "cache")
    assert data.classes == ("cat", "dog") and data.train.labels.tolist() == [0, 1, 1]
    assert data.train.images[:, 0, 0, 0].tolist() == [10, 200, 210]


def test_symlink_loop_is_refused_but_two_links_to_one_folder_are_not_a_loop(tmp_path):
    _png(tmp_path / "shared" / "1.png", 5)
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "a" / "x").symlink_to(tmp_path / "shared")
    (tmp_path / "root" / "a" / "y").symlink_to(tmp_path / "shared")
    assert [p.relative_to(tmp_path / "root").as_posix() for p in walk_images(tmp_path / "root")] == [
        "a/x/1.png", "a/y/1.png"]
    (tmp_path / "shared" / "up").symlink_to(tmp_path / "root")  # shared/up/a/x leads back to shared
    with pytest.raises(DataError, match=r"a/x/up: symlink loop \(it leads back to .*root\); remove the link"):
        walk_images(tmp_path / "root")
    with pytest.raises(DataError, match="symlink loop"):
        load_dataset(f"imagefolder:{tmp_path / 'root'}", cache_dir=tmp_path / "cache")


def test_an_edit_inside_a_symlinked_class_folder_is_never_served_stale(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere" / "dogs" / "1.png"
    _png(target, 100)
    _png(tmp_path / "pets" / "cat" / "1.png", 10)
    (tmp_path / "pets" / "dog").symlink_to(target.parent, target_is_directory=True)
    name, cache = f"imagefolder:{tmp_path / 'pets'}", tmp_path / "cache"
    assert load_dataset(name, cache_dir=cache).train.images[1, 0, 0, 0] == 100
    _png(target, 250)  # edited in place, through no link: only the linked folder's file changed
    stat = target.stat()  # a real edit comes later than the first write; make sure the clock shows it
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_dataset(name, cache_dir=cache).train.images[1, 0, 0, 0] == 250
    assert len(list((cache / "decoded").glob("*.safetensors"))) == 2  # the edit made a new key

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(datasets, "_decode_image_root", no_decoding)
    assert load_dataset(name, cache_dir=cache).train.images[1, 0, 0, 0] == 250  # and unchanged data is cached


def test_cache_key_follows_the_decoder_version_and_the_label_path(tmp_path, monkeypatch):
    _png(tmp_path / "pets" / "cat" / "1.png", 10)
    _png(tmp_path / "elsewhere" / "1.png", 20)
    (tmp_path / "pets" / "cat" / "link.png").symlink_to(tmp_path / "elsewhere" / "1.png")
    files = tuple(walk_images(tmp_path / "pets"))
    key = datasets._cache_key("imagefolder:pets", files)
    monkeypatch.setattr(datasets, "DECODER_VERSION", DECODER_VERSION + 1)
    assert datasets._cache_key("imagefolder:pets", files) != key  # new rules: decoded again
    monkeypatch.undo()
    (tmp_path / "pets" / "dog").mkdir()
    os.rename(tmp_path / "pets" / "cat" / "link.png", tmp_path / "pets" / "dog" / "link.png")  # same file, new label
    moved = tuple(walk_images(tmp_path / "pets"))
    assert datasets._cache_key("imagefolder:pets", moved) != key


def test_a_folder_of_gray_then_colour_images_of_several_sizes_is_read_into_one_tensor(tmp_path):
    """Decoded straight into one N x C x H x W tensor, a window at a time (sizes from the headers): gray images
    read before the first colour one are repeated into its three channels, an image of another size (EXIF
    orientation applied, as displayed) is resized to the most common size."""
    folder = tmp_path / "images" / "mixed"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (6, 10), dtype=np.uint8)
    Image.fromarray(gray, "L").save(folder / "0-gray.png")
    colour = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(colour).save(folder / "1-colour.png")
    Image.fromarray(colour).save(folder / "2-colour.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed 10 wide, 6 high once rotated: the most common size, not resized
    Image.fromarray(np.ascontiguousarray(colour.transpose(1, 0, 2)[::-1])).save(folder / "3-turned.png", exif=exif)
    Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(folder / "4-large.png")
    X, y, _ = read_image_folder(tmp_path / "images")
    assert X.shape == (5, 3, 6, 10) and y.tolist() == [0] * 5
    assert torch.equal(X[0], torch.from_numpy(gray).expand(3, -1, -1))
    assert torch.equal(X[1], _chw(colour)) and torch.equal(X[2], _chw(colour))
    assert torch.equal(X[3], read_image(folder / "3-turned.png"))
