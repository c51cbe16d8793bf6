"""The train and eval presets (data/presets.py): torchvision's reference recipe, aspect ratio kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from convzoo.data.presets import convert_channels, eval_transform, train_transform
from convzoo.errors import ConvzooError


def _photo(h: int = 300, w: int = 400) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def test_eval_preset_is_resize_of_the_shorter_side_then_centre_crop():
    img = _photo()
    out = eval_transform(224)(img)
    assert out.dtype == torch.uint8 and out.shape == (3, 224, 224)
    # the reference: shorter side to round(224 / 0.875) = 256, aspect ratio kept, the centre 224 square
    expected = F.center_crop(F.resize(img, 256, antialias=True), 224)
    assert F.get_size(F.resize(img, 256, antialias=True)) == [256, 341]
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_eval_preset_normalises_when_given_mean_and_std():
    img = _photo(32, 32)
    out = eval_transform(32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize_mode="squash")(img)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, (img.float() / 255 - 0.5) / 0.25)


def test_squash_of_an_image_already_at_size_is_the_identity():
    img = _photo(28, 28)[:1]
    torch.testing.assert_close(eval_transform(28, resize_mode="squash")(img), img, atol=0, rtol=0)


def test_train_preset_draws_from_the_global_generator():
    img = _photo()
    t = train_transform(160)
    torch.manual_seed(7)
    a = t(img)
    torch.manual_seed(7)
    b = t(img)
    torch.manual_seed(8)
    c = t(img)
    assert a.shape == (3, 160, 160) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_train_preset_takes_pil_images():
    pil = F.to_pil_image(_photo(120, 90))
    out = train_transform(64, mean=(0.0,) * 3, std=(1.0,) * 3)(pil)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert isinstance(train_transform(64).transforms[1], v2.RandomResizedCrop)


def test_squash_with_normalisation_resizes_in_float_as_the_in_memory_path():
    """No rounding to uint8 between the resize and the normalisation (train.pipeline.Preprocess's batches)."""
    img = _photo(28, 28)[:1]
    out = eval_transform(32, mean=(0.5,), std=(0.25,), resize_mode="squash")(img)
    in_float = torch.nn.functional.interpolate(img[None].float(), size=(32, 32), mode="bilinear")[0]
    torch.testing.assert_close(out, (in_float / 255 - 0.5) / 0.25, atol=1e-5, rtol=0)
    rounded = (F.resize(img, [32, 32], antialias=True).float() / 255 - 0.5) / 0.25  # the uint8 order
    assert float((out - rounded).abs().max()) > 1e-3
    assert eval_transform(32, resize_mode="squash")(img).dtype == torch.uint8  # no mean: uint8 out, as before


def test_squash_takes_a_height_and_a_width():
    img = _photo(30, 50)
    out = eval_transform((24, 40), mean=(0.0,) * 3, std=(1.0,) * 3, resize_mode="squash")(img)
    expected = torch.nn.functional.interpolate(img[None].float() / 255, size=(24, 40), mode="bilinear",
                                               antialias=True)[0]
    assert out.shape == (3, 24, 40)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_pil_images_are_read_by_the_decoders_rules():
    """A palette image gives its colours (v2.ToImage would give the palette's indices, one channel)."""
    from PIL import Image

    rgb = _photo(20, 30).permute(1, 2, 0).numpy()
    palette = Image.fromarray(rgb).convert("P")
    out = eval_transform(20, resize_mode="squash")(palette)
    expected = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1)
    assert out.shape == (3, 20, 20)
    torch.testing.assert_close(out, F.resize(expected, [20, 20], antialias=True), atol=0, rtol=0)
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 4), np.uint8), "RGBA")
    assert eval_transform(20, resize_mode="squash")(rgba).shape == (3, 20, 20)  # alpha composited, not a channel


def test_channels_are_converted_as_pil_and_the_in_memory_path_do():
    img = _photo(8, 8)
    gray = convert_channels(img.float(), 1)
    torch.testing.assert_close(gray[0], 0.299 * img[0].float() + 0.587 * img[1].float() + 0.114 * img[2].float())
    assert torch.equal(convert_channels(img, 1), gray.round().to(torch.uint8))  # uint8 rounded back
    assert torch.equal(convert_channels(img[:1], 3), img[:1].expand(3, -1, -1))
    assert convert_channels(img[None], 1).shape == (1, 1, 8, 8)  # a batch too
    with pytest.raises(ConvzooError, match="cannot convert 2-channel images to 3"):
        convert_channels(img[:2], 3)
    out = eval_transform(8, mean=(0.0,), std=(1.0,), resize_mode="squash", channels=1)(img)
    torch.testing.assert_close(out, gray / 255)


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "positive whole number"),
    ({"size": 32, "crop_pct": 1.5}, "crop_pct"),
    ({"size": 32, "interpolation": "lanczos9"}, "interpolation"),
    ({"size": 32, "mean": (0.5,)}, "both mean and std"),
    ({"size": 32, "mean": (0.5,), "std": (0.2, 0.2)}, "channels"),
    ({"size": 32, "resize_mode": "stretch"}, "resize_mode"),
    ({"size": (32, 48)}, "the crop mode cuts a square"),
    ({"size": 32, "mean": (0.5,), "std": (0.2,), "channels": 3}, "the output 3"),
])
def test_bad_preset_arguments_say_what_was_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        eval_transform(**kwargs)
