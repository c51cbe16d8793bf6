"""The train and eval presets (data/presets.py): torchvision's reference recipe, aspect ratio kept."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from convzoo.data.presets import eval_transform, train_transform


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


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "positive whole number"),
    ({"size": 32, "crop_pct": 1.5}, "crop_pct"),
    ({"size": 32, "interpolation": "lanczos9"}, "interpolation"),
    ({"size": 32, "mean": (0.5,)}, "both mean and std"),
    ({"size": 32, "mean": (0.5,), "std": (0.2, 0.2)}, "channels"),
    ({"size": 32, "resize_mode": "stretch"}, "resize_mode"),
])
def test_bad_preset_arguments_say_what_was_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        eval_transform(**kwargs)
