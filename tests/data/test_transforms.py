import pytest
import torch
from torchvision import tv_tensors

from contextseg.data import build_dataset
from contextseg.data.transforms import (
    IMAGENET_MEAN, IMAGENET_STD, EvalTransform, PhotoMetricDistortion, RandomCropCatRatio,
    TrainTransform, denormalize, rescale_size,
)

PLAIN = dict(photometric=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def blocks(height, width, labels, block=8, seed=0):
    """A mask of square blocks with random labels from ``labels``."""
    g = torch.Generator().manual_seed(seed)
    small = torch.tensor(labels)[torch.randint(len(labels), (height // block + 1, width // block + 1), generator=g)]
    return small.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width].long()


def test_output_shapes_and_dtypes():
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    mask = blocks(40, 60, [0, 1, 2])
    for with_positions in (False, True):
        out = TrainTransform((32, 48), with_positions=with_positions)(image, mask)
        assert out["image"].shape == (3, 32, 48) and out["image"].dtype == torch.float32
        assert out["mask"].shape == (32, 48) and out["mask"].dtype == torch.int64
        assert ("positions" in out) == with_positions
        if with_positions:
            assert out["positions"].shape == (32,) and out["positions"].dtype == torch.float32
    out = TrainTransform(24)(image, mask)
    assert out["image"].shape == (3, 24, 24)


def test_rescale_follows_mmseg_keep_ratio():
    # CamVid 360x480 at its base scale (480, 360) stays; Cityscapes-like 1024x2048 at (2048, 512)
    assert rescale_size(360, 480, (480, 360)) == (360, 480)
    assert rescale_size(1024, 2048, (2048, 512)) == (512, 1024)
    assert rescale_size(375, 500, (2048, 512)) == (512, 683)
    assert rescale_size(500, 375, (520, 520)) == (520, 390)


def test_mask_resized_by_nearest():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)
    mask = blocks(64, 80, [0, 3, 7], block=5)
    transform = TrainTransform((48, 48), ratio_range=(0.5, 2.0))
    for _ in range(20):
        values = set(transform(image, mask)["mask"].unique().tolist())
        assert values <= {0, 3, 7, 255}


def test_padding_uses_zero_and_ignore():
    image = torch.randint(1, 256, (3, 20, 30), dtype=torch.uint8)
    mask = blocks(20, 30, [1, 2])
    out = TrainTransform((32, 48), ratio_range=(1.0, 1.0), flip_prob=0.0, **PLAIN)(image, mask)
    assert torch.allclose(out["image"][:, :20, :30], image.float() / 255)
    assert (out["image"][:, 20:, :] == 0).all() and (out["image"][:, :, 30:] == 0).all()
    assert (out["mask"][20:, :] == 255).all() and (out["mask"][:, 30:] == 255).all()
    assert torch.equal(out["mask"][:20, :30], mask)
    # the default normalisation is ImageNet's, for images in [0, 1]
    normed = TrainTransform((32, 48), ratio_range=(1.0, 1.0), flip_prob=0.0, photometric=False)(image, mask)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(normed["image"][:, :20, :30], (image.float() / 255 - mean) / std, atol=1e-6)
    assert torch.equal(denormalize(normed["image"][:, :20, :30]), image)


def _share_ok(mask, ratio=0.75):
    counts = torch.bincount(mask.view(-1), minlength=256)[:255]
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < ratio


def test_cat_max_ratio_redraws_crops():
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    mask = torch.zeros(100, 100, dtype=torch.long)
    mask[:40, :40] = 1  # only crops near the top-left corner are mixed enough
    rates = {}
    for ratio in (0.75, 1.0):
        transform = TrainTransform((50, 50), ratio_range=(1.0, 1.0), cat_max_ratio=ratio, **PLAIN)
        torch.manual_seed(0)
        rates[ratio] = sum(_share_ok(transform(image, mask)["mask"]) for _ in range(100)) / 100
    # one draw is mixed enough with p ~ 0.15; eleven draws with p ~ 1 - 0.85 ** 11 ~ 0.83
    assert rates[1.0] < 0.3, rates
    assert rates[0.75] > 0.65, rates
    crop = RandomCropCatRatio((50, 50), cat_max_ratio=0.75)
    torch.manual_seed(1)
    tries = [crop.make_params([tv_tensors.Image(image), tv_tensors.Mask(mask)])["tries"] for _ in range(30)]
    assert max(tries) > 1 and max(tries) <= 11


def test_flip_moves_image_and_mask_together():
    mask = blocks(40, 64, list(range(10)), block=4, seed=3)
    image = (mask * 25).to(torch.uint8).expand(3, -1, -1).clone()
    transform = TrainTransform((32, 48), ratio_range=(1.0, 1.0), cat_max_ratio=1.0, **PLAIN)
    flipped = kept = 0
    torch.manual_seed(0)
    for _ in range(30):
        out = transform(image, mask)
        decoded = torch.round(out["image"] * 255 / 25).long()
        assert torch.equal(decoded[0], out["mask"]) and torch.equal(decoded[2], out["mask"])
        # find where the crop came from in the original or its mirror image
        for source, counter in ((mask, "kept"), (mask.flip(-1), "flipped")):
            windows = source.unfold(0, 32, 1).unfold(1, 48, 1)
            if (windows == out["mask"]).flatten(2).all(-1).any():
                if counter == "kept":
                    kept += 1
                else:
                    flipped += 1
                break
        else:
            pytest.fail("the output mask is no crop of the mask or of its mirror image")
    assert flipped >= 5 and kept >= 5


def test_positions_under_scale_crop_flip():
    """Rows encode themselves in the mask (nearest) and in the image (bilinear); positions must
    name the same original rows."""
    h, w = 200, 150
    rows = torch.arange(h).view(h, 1).expand(h, w)
    mask = rows.clone().long()
    image = torch.stack([rows.to(torch.uint8), torch.zeros(h, w, dtype=torch.uint8), rows.flip(0).to(torch.uint8)])
    transform = TrainTransform((120, 100), ratio_range=(0.5, 2.0), cat_max_ratio=1.0, with_positions=True, **PLAIN)
    torch.manual_seed(0)
    saw_padding = saw_offset = False
    for _ in range(25):
        out = transform(image, mask)
        positions, source_rows = out["positions"], out["mask"][:, 0]
        valid = out["mask"][:, 0] != 255
        # nearest: exactly the row the mask came from
        assert torch.allclose(positions[valid], source_rows[valid].float() / h)
        # bilinear, independent of the position map: the image's row code agrees within a row or two
        coded = out["image"][0, valid, w // 3] * 255
        assert (positions[valid] * h - coded).abs().max() <= 2.0
        assert (positions[~valid] == 1.0).all() and (out["mask"][~valid] == 255).all()
        assert (positions[valid].diff() >= 0).all()
        saw_padding |= bool((~valid).any())
        saw_offset |= bool(positions[0] > 0.1)
    assert saw_padding and saw_offset


def test_eval_transform_keeps_mask_resolution():
    image = torch.randint(0, 256, (3, 180, 240), dtype=torch.uint8)
    mask = blocks(180, 240, [0, 1, 255])
    out = EvalTransform(base_size=(480, 360), with_positions=True)(image, mask)
    assert out["image"].shape == (3, 360, 480) and out["image"].dtype == torch.float32
    assert torch.equal(out["mask"], mask) and out["mask"].dtype == torch.int64
    assert torch.allclose(out["positions"], torch.arange(360) / 360)
    same = EvalTransform()(image, mask)
    assert same["image"].shape == (3, 180, 240) and "positions" not in same


def test_photometric_distortion_never_permutes_channels():
    distort = PhotoMetricDistortion(contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=(0.0, 0.0), p=1.0)
    red = torch.zeros(3, 8, 8)
    red[0] = 0.6
    torch.manual_seed(0)
    for _ in range(50):
        params = distort.make_params([tv_tensors.Image(red)])
        assert "channel_permutation" not in params
        out = distort(tv_tensors.Image(red))
        assert (out[0] > out[1]).all() and torch.equal(out[1], out[2])
        # brightness is additive within +-32/255
        assert (out[0] - 0.6).abs().max() <= 32 / 255 + 1e-6
    black = distort(tv_tensors.Image(torch.zeros(3, 4, 4)))
    mask = tv_tensors.Mask(torch.ones(4, 4, dtype=torch.uint8))
    assert torch.equal(distort(black, mask)[1], mask)  # masks pass through


def test_with_dataset_and_dataloader():
    transform = TrainTransform((64, 96), base_size=(256, 128), with_positions=True)
    dataset = build_dataset("synthetic", None, "train", transforms=transform, length=4)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 64, 96) and batch["mask"].shape == (2, 64, 96)
    assert batch["positions"].shape == (2, 64)


def test_eval_transform_without_antialias_is_plain_half_pixel_bilinear():
    """antialias=False (eval --mmseg-compat) resizes as mmcv's cv2 bilinear: half-pixel centres,
    no low-pass filter, rounded to uint8; the default (antialiased) differs when shrinking."""
    import torch.nn.functional as TF

    from contextseg.data.transforms import EvalTransform

    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=g)
    mask = torch.zeros(60, 80, dtype=torch.uint8)
    plain = EvalTransform(base_size=(40, 30), mean=(0, 0, 0), std=(1, 1, 1), antialias=False)(image, mask)["image"]
    want = TF.interpolate(image[None].float(), size=(30, 40), mode="bilinear", align_corners=False)[0].round().clamp(0, 255) / 255
    assert plain.shape == (3, 30, 40) and (plain - want).abs().max() <= 1 / 255 + 1e-6
    smooth = EvalTransform(base_size=(40, 30), mean=(0, 0, 0), std=(1, 1, 1))(image, mask)["image"]
    assert (smooth - want).abs().max() > 5 / 255


def test_a_tiny_base_size_resizes_to_one_pixel_instead_of_failing():
    """A base size or ratio that shrinks a side below half a pixel gives a 1-pixel side (never an
    empty one), and a uint8 photo resized to 1 x 1 has the value of the antialiased float resize,
    rounded: torch's uint8 antialiased kernel fails an internal assert for that output size."""
    assert rescale_size(360, 480, (0, 0)) == (1, 1) and rescale_size(360, 480, (1, 1)) == (1, 1)
    assert rescale_size(10, 1000, (100, 1)) == (1, 100)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 36, 48), dtype=torch.uint8, generator=g)
    out = EvalTransform(base_size=(1, 1), **{k: PLAIN[k] for k in ("mean", "std")})(image, blocks(36, 48, [0, 1]))
    reference = torch.nn.functional.interpolate(image[None].double(), size=(1, 1), mode="bilinear", antialias=True, align_corners=False)
    assert out["image"].shape == (3, 1, 1) and out["mask"].shape == (36, 48)
    assert torch.equal(out["image"] * 255, reference[0].round().float())
    for base in ((1, 1), (2, 2)):  # training: ratio 0.5 of a 1- or 2-pixel base is a 0- or 1-pixel target
        train = TrainTransform((4, 4), base_size=base, ratio_range=(0.5, 0.5), **PLAIN)(image, blocks(36, 48, [0, 1]))
        assert train["image"].shape == (3, 4, 4) and (train["mask"] == 255).sum() == 15  # one pixel, the rest padding
