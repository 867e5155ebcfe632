from __future__ import annotations

import pytest
import torch

from edgeseg.errors import ConfigError
from edgeseg.training.ema import ModelEma


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1, bias=True)
        self.bn = torch.nn.BatchNorm2d(1)

    def forward(self, x):
        return self.bn(self.conv(x))


def set_weights(model: Tiny, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


@pytest.mark.parametrize("warmup, expected", [
    # decay 0.5 throughout: e1 = .5*1 + .5*2, e2 = .5*e1 + .5*4, e3 = .5*e2 + .5*8
    (False, [1.5, 2.75, 5.375]),
    # decay 0.9 capped by (1+n)/(10+n) = 2/11, 3/12, 4/13: e1 = 2/11*1 + 9/11*2 = 20/11,
    # e2 = 1/4*20/11 + 3/4*4 = 38/11, e3 = 4/13*38/11 + 9/13*8 = 944/143
    (True, [20 / 11, 38 / 11, 944 / 143]),
])
def test_three_updates_by_hand(warmup, expected):
    model = Tiny()
    set_weights(model, 1.0)
    ema = ModelEma(model, decay=0.9 if warmup else 0.5, warmup=warmup)
    for step, value in enumerate((2.0, 4.0, 8.0)):
        set_weights(model, value)
        with torch.no_grad():  # a train-mode forward moves the BatchNorm statistics, which must be copied
            model(torch.randn(4, 1, 3, 3) * (step + 1) + step)
        ema.update(model)
        for p in ema.module.parameters():
            assert p.item() == pytest.approx(expected[step], rel=1e-6)
        for (name, b), (_, ref) in zip(ema.module.named_buffers(), model.named_buffers()):
            assert torch.equal(b, ref), name
    assert ema.updates == 3 and int(ema.module.bn.num_batches_tracked) == 3
    assert [ema.decay_at(n) for n in (1, 2, 3, 100)] == (
        [2 / 11, 3 / 12, 4 / 13, 0.9] if warmup else [0.5] * 4)


def test_copy_is_frozen_independent_and_resumable():
    model = Tiny()
    set_weights(model, 1.0)
    ema = ModelEma(model, decay=0.5, warmup=False)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    set_weights(model, 3.0)
    assert all(p.item() == 1.0 for p in ema.module.parameters())  # not shared with the live model
    ema.update(model)
    state = ema.state_dict()
    other = ModelEma(Tiny(), decay=0.5, warmup=False)
    other.load_state_dict(state)
    assert other.updates == 1 and all(p.item() == 2.0 for p in other.module.parameters())


def test_bad_decay():
    with pytest.raises(ConfigError, match="--ema-decay must be in"):
        ModelEma(Tiny(), decay=1.0)
