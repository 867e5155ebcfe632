from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.errors import ConfigError
from edgeseg.training.losses import SegmentationLoss, build_loss, ohem_mask, pixel_losses, prob_threshold

IGNORE = 255


def batch(seed: int, n=2, c=5, h=7, w=9, ignore_fraction=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g) * 3
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < ignore_fraction] = IGNORE
    return logits, target


def numpy_pixel_losses(logits, target, eps=0.0):
    """float64 reference: -log softmax at the true class, smoothed toward the mean over classes."""
    x = logits.double().numpy()
    x = x - x.max(1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(1, keepdims=True))
    t = target.numpy()
    valid = t != IGNORE
    nll = -np.take_along_axis(log_p, np.where(valid, t, 0)[:, None], 1)[:, 0]
    return (1 - eps) * nll + eps * (-log_p.mean(1)), valid


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_kept", [1, 17, 40])
def test_ohem_top_k_keeps_exactly_the_hardest_pixels(seed, min_kept):
    logits, target = batch(seed)
    ref, valid = numpy_pixel_losses(logits, target)
    n_keep = min(min_kept * 2, int(valid.sum()))
    order = np.argsort(-np.where(valid, ref, -np.inf).ravel(), kind="stable")  # float64 sort, hardest first
    expected = np.zeros(ref.size, bool)
    expected[order[:n_keep]] = True
    losses, valid_t = pixel_losses(logits, target)
    keep = ohem_mask(losses, valid_t, threshold=None, min_kept=min_kept).numpy().ravel()
    np.testing.assert_array_equal(keep, expected)
    value = SegmentationLoss(ohem_min_kept=min_kept)(logits, target)
    assert value.item() == pytest.approx(ref.ravel()[expected].mean(), rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_ohem_threshold_keeps_everything_above_it_but_at_least_min_kept(seed):
    logits, target = batch(seed, h=12, w=12)
    ref, valid = numpy_pixel_losses(logits, target)
    threshold = float(np.median(ref[valid]))
    above = valid & (ref > threshold)
    keep = ohem_mask(*pixel_losses(logits, target), threshold=threshold, min_kept=1).numpy()
    np.testing.assert_array_equal(keep, above)  # min_kept 1 per image is below the count above the median
    # a large minimum tops up with the next-hardest pixels
    keep = ohem_mask(*pixel_losses(logits, target), threshold=threshold, min_kept=100).numpy()
    assert keep.sum() == min(200, valid.sum()) and (keep >= above).all() and not (keep & ~valid).any()
    assert ref[keep].min() >= ref[valid & ~keep].max()
    loss = SegmentationLoss(ohem_threshold=threshold, ohem_min_kept=1)(logits, target)
    assert loss.item() == pytest.approx(ref[above].mean(), rel=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_keep_all_equals_plain_cross_entropy_with_and_without_class_weights(seed):
    logits, target = batch(seed)
    weight = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25])
    n = int((target != IGNORE).sum())
    for w in (None, weight):
        expected = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE)
        for loss in (SegmentationLoss(w), SegmentationLoss(w, ohem_min_kept=10_000),
                     SegmentationLoss(w, ohem_threshold=0.0, ohem_min_kept=n // 2),
                     build_loss("ce", weight=w)):
            torch.testing.assert_close(loss(logits, target), expected, rtol=1e-5, atol=1e-6)


def test_gradient_flows_only_through_kept_pixels():
    logits, target = batch(0)
    logits.requires_grad_(True)
    loss_fn = SegmentationLoss(ohem_min_kept=5)
    loss_fn(logits, target).backward()
    keep = ohem_mask(*pixel_losses(logits.detach(), target), threshold=None, min_kept=5)
    touched = logits.grad.abs().sum(1) > 0
    assert torch.equal(touched, keep)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch_and_the_hand_formula(eps):
    logits, target = batch(3)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE, label_smoothing=eps)
    got = SegmentationLoss(label_smoothing=eps)(logits, target)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    ref, valid = numpy_pixel_losses(logits, target, eps)
    assert got.item() == pytest.approx(ref[valid].mean(), rel=1e-5)


def test_hand_computed_two_pixel_case():
    # logits (0, ln 3) -> p = (1/4, 3/4); pixel 1 true class 0, pixel 2 true class 1, pixel 3 ignored
    logits = torch.tensor([[0.0, 0.0, 5.0], [np.log(3), np.log(3), -5.0]]).view(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, IGNORE]]])
    assert SegmentationLoss()(logits, target).item() == pytest.approx((np.log(4) + np.log(4 / 3)) / 2, rel=1e-6)
    assert SegmentationLoss(ohem_min_kept=1)(logits, target).item() == pytest.approx(np.log(4), rel=1e-6)
    smooth = 0.2 * (np.log(4) + np.log(4 / 3)) / 2  # eps * mean_c(-log p_c), the same for both pixels
    assert SegmentationLoss(label_smoothing=0.2)(logits, target).item() == pytest.approx(
        0.8 * np.log(4) / 2 + 0.8 * np.log(4 / 3) / 2 + smooth, rel=1e-6)


def test_all_ignored_gives_zero_with_a_graph_and_bad_options_raise():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), IGNORE)
    for loss_fn in (SegmentationLoss(), SegmentationLoss(ohem_min_kept=3)):
        value = loss_fn(logits, target)
        assert value.item() == 0.0
        value.backward()
    with pytest.raises(ConfigError, match="--label-smoothing"):
        SegmentationLoss(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="--ohem-min-kept"):
        SegmentationLoss(ohem_min_kept=0)
    with pytest.raises(ConfigError, match="--ohem-threshold needs --ohem-min-kept"):
        SegmentationLoss(ohem_threshold=0.3)
    with pytest.raises(ConfigError, match="--loss must be one of"):
        build_loss("focal")
    with pytest.raises(ConfigError, match="--loss ohem needs --ohem-min-kept"):
        build_loss("ohem")
    with pytest.raises(ConfigError, match="N x C x H x W"):
        SegmentationLoss()(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))
    assert prob_threshold(0.7) == pytest.approx(0.35667, abs=1e-5)
