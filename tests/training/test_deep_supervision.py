"""Deep supervision (--aux-weight): the auxiliary heads' outputs and loss against hand computations with torch's
functional ops, and the heads staying out of the model (best.pt, export) while --resume keeps training them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgeseg.cli import main
from edgeseg.errors import ConfigError
from edgeseg.models import build_model
from edgeseg.training.checkpoint import read_checkpoint
from edgeseg.training.deep_supervision import DeepSupervision, DeepSupervisionLoss
from tests.training.test_generalisation_wiring import argv, write_folder


@pytest.mark.parametrize("model_name", ["fcn8s_resnet18", "fcn32s_mobilenetv3", "unet_mobilenetv3"])
def test_aux_outputs_are_score_convs_on_the_stride_features_upsampled_and_cropped(model_name):
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=5).eval()
    wrapped = DeepSupervision(model).eval()
    x = torch.randn(2, 3, 45, 70)  # not a multiple of 32: padding and cropping matter
    with torch.no_grad():
        main_logits, aux8, aux16 = wrapped(x)
        assert torch.equal(main_logits, model(x))  # the FCN's own output, untouched
        feats = model.backbone(F.pad(x, (0, 96 - 70, 0, 64 - 45)))
        for stride, aux in ((8, aux8), (16, aux16)):
            head = wrapped.aux_heads[str(stride)]
            scores = F.conv2d(feats[stride], head.weight, head.bias)
            full = F.interpolate(scores, size=(64, 96), mode="bilinear", align_corners=False)
            assert aux.shape == (2, 5, 45, 70)
            torch.testing.assert_close(aux, full[:, :, :45, :70], rtol=1e-5, atol=1e-5)


def test_loss_is_main_plus_weight_times_mean_of_aux():
    torch.manual_seed(1)
    outputs = [torch.randn(2, 4, 6, 7) for _ in range(3)]
    target = torch.randint(0, 4, (2, 6, 7))
    target[0, 0, :3] = 255  # void pixels are ignored by every term
    loss = DeepSupervisionLoss(torch.nn.CrossEntropyLoss(ignore_index=255), aux_weight=0.4)(outputs, target)
    ce = [F.cross_entropy(o.double(), target, ignore_index=255).item() for o in outputs]
    assert loss.item() == pytest.approx(ce[0] + 0.4 * (ce[1] + ce[2]) / 2, rel=1e-6)
    with pytest.raises(ConfigError, match="aux-weight"):
        DeepSupervisionLoss(torch.nn.CrossEntropyLoss(), aux_weight=0.0)


def test_aux_heads_stay_out_of_best_pt_and_resume_restores_them(tmp_path):
    data = write_folder(tmp_path / "data")
    out = tmp_path / "run"
    assert main(argv(data, out, "--aux-weight", "0.4")) == 0
    reference = build_model("fcn8s_mobilenetv3", num_classes=3)
    best = read_checkpoint(out / "best.pt")
    assert set(best["state_dict"]) == set(reference.state_dict())  # no auxiliary weights in the exported model
    last = read_checkpoint(out / "last.pt")
    assert set(last["aux_heads"]) == {"8.weight", "8.bias", "16.weight", "16.bias"}
    saved = {k: v.clone() for k, v in last["aux_heads"].items()}
    assert any(v.abs().sum() > 0 for k, v in saved.items() if k.endswith("bias"))  # they trained (biases start at 0)

    # --resume: the heads go on from last.pt's values (checked through the trainer's own restore)
    from edgeseg.training.trainer import TrainConfig, _with_aux_heads
    core = build_model("fcn8s_mobilenetv3", num_classes=3)
    restored = _with_aux_heads(TrainConfig(aux_weight=0.4), core, last)
    for key, value in saved.items():
        assert torch.equal(restored.aux_heads.state_dict()[key], value)
    assert main(argv(data, out, "--aux-weight", "0.4", "--epochs", "2", "--resume")) == 0


def test_resume_refuses_to_toggle_aux_heads(tmp_path, capsys):
    """last.pt's optimizer state covers the heads or not: switching --aux-weight on resume is exit 2, named, and
    leaves the run folder as it was."""
    data = write_folder(tmp_path / "data")
    plain, with_heads = tmp_path / "plain", tmp_path / "heads"
    assert main(argv(data, plain)) == 0
    assert main(argv(data, with_heads, "--aux-weight", "0.4")) == 0
    for out, extra, was in ((plain, ["--aux-weight", "0.4"], "without"), (with_heads, [], "with")):
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        capsys.readouterr()
        assert main(argv(data, out, "--epochs", "2", "--resume", *extra)) == 2
        err = capsys.readouterr().err
        assert f"trained {was} auxiliary heads (--aux-weight)" in err and "Traceback" not in err
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize("value", ["-0.1", "nan"])
def test_bad_aux_weight_is_refused_before_training(tmp_path, capsys, value):
    data = write_folder(tmp_path / "data")
    if value == "nan":  # not a finite number: refused while the command line is parsed (edgeseg.cli.numbers)
        with pytest.raises(SystemExit) as exit_info:
            main(argv(data, tmp_path / "run", "--aux-weight", value))
        assert exit_info.value.code == 2
    else:
        assert main(argv(data, tmp_path / "run", "--aux-weight", value)) == 2
    assert "--aux-weight" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
