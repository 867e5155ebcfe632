"""Segmenter + ONNX Runtime backend on hand-built graphs, against float64 numpy references."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeseg.errors import ConfigError, DataError, ModelFileError
from edgeseg.runtime.segmenter import Segmenter

from .onnx_graphs import bilinear_upsample, random_scene, reference_logits, write_pixel_classifier

pytest.importorskip("onnxruntime")


def _agreement(mask, reference_logits_):
    """Fraction of pixels equal to the reference argmax, over pixels whose top-2 margin is not a near-tie."""
    top2 = np.sort(reference_logits_, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-3
    return np.mean(mask[clear] == reference_logits_.argmax(0)[clear])


@pytest.mark.parametrize("frame_hw", [(24, 32), (61, 47), (480, 640)])
def test_logits_model_matches_numpy(tmp_path, frame_hw):
    path = write_pixel_classifier(tmp_path / "m.onnx", input_size=(24, 32))
    frame = random_scene(np.random.default_rng(1), *frame_hw)
    with Segmenter(path) as seg:
        mask = seg.predict([frame])[0]
        assert mask.shape == (24, 32) and mask.dtype == np.uint8
        assert _agreement(mask, reference_logits(frame, (24, 32))) == 1.0
        full = seg.segment(frame)
        assert full.shape == frame_hw


def test_in_graph_argmax_model(tmp_path):
    path = write_pixel_classifier(tmp_path / "m.onnx", argmax=True)
    frame = random_scene(np.random.default_rng(2), 50, 70)
    with Segmenter(path) as seg:
        assert _agreement(seg.predict([frame])[0], reference_logits(frame, (24, 32))) == 1.0


def test_lowres_model_is_upsampled_then_argmaxed(tmp_path):
    path = write_pixel_classifier(tmp_path / "m.onnx", input_size=(32, 48), stride=8)
    frame = random_scene(np.random.default_rng(3), 64, 96)
    with Segmenter(path) as seg:
        assert seg.meta.output_stride == 8
        mask = seg.predict([frame])[0]
    ref = bilinear_upsample(reference_logits(frame, (32, 48), stride=8), 8, (32, 48))
    assert mask.shape == (32, 48)
    assert _agreement(mask, ref) == 1.0


def test_batch_gives_same_masks_as_single(tmp_path):
    path = write_pixel_classifier(tmp_path / "m.onnx")
    rng = np.random.default_rng(4)
    frames = [random_scene(rng, 40, 40 + 8 * i) for i in range(3)]
    with Segmenter(path) as seg:
        batched = seg.predict(frames)
        single = [seg.predict([f])[0] for f in frames]
    for a, b in zip(batched, single):
        np.testing.assert_array_equal(a, b)


def test_overlay_and_colorize_use_metadata_palette(tmp_path):
    path = write_pixel_classifier(tmp_path / "m.onnx")
    with Segmenter(path) as seg:
        mask = np.array([[0, 1], [2, 3]], np.uint8)
        colours = seg.colorize(mask)
        palette_rgb = np.array(seg.meta.palette, np.uint8)
        np.testing.assert_array_equal(colours[0, 1], palette_rgb[1][::-1])
        frame = np.full((4, 4, 3), 100, np.uint8)
        blended = seg.overlay(frame, mask, alpha=1.0)
        assert blended.shape == (4, 4, 3)
        np.testing.assert_array_equal(blended[3, 3], palette_rgb[3][::-1])


def test_bad_frames_and_files(tmp_path):
    path = write_pixel_classifier(tmp_path / "m.onnx")
    with Segmenter(path) as seg:
        with pytest.raises(DataError, match="BGR uint8"):
            seg.predict([np.zeros((10, 10), np.uint8)])
        with pytest.raises(DataError, match="BGR uint8"):
            seg.predict([np.zeros((10, 10, 3), np.float32)])
        with pytest.raises(ConfigError, match="takes shape"):
            seg.backend.infer(np.zeros((1, 3, 5, 5), np.float32))
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        Segmenter(truncated)
    with pytest.raises(ModelFileError, match="does not exist"):
        Segmenter(tmp_path / "missing.onnx")
    with pytest.raises(ModelFileError, match="expected a .onnx or .engine"):
        Segmenter(tmp_path / "model.bin")


def test_runtime_runs_without_torch(tmp_path):
    """The runtime must import and run on a device with no torch. In a fresh interpreter, an import hook records
    every attempt to import torch (or a submodule) and refuses it, as on a machine without torch. Segmenting must
    work and never even try: a lazy `import torch` inside a try/except would be caught here too."""
    path = write_pixel_classifier(tmp_path / "m.onnx")
    script = textwrap.dedent(
        f"""
        import importlib.abc
        import sys

        tried = []

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    tried.append(name)
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        from edgeseg.runtime import Segmenter
        with Segmenter({str(path)!r}) as seg:
            mask = seg.segment(np.full((30, 40, 3), (0, 0, 255), np.uint8))
        print("shape", mask.shape, "classes", sorted(set(mask.ravel().tolist())), "torch imports tried", tried)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "shape (30, 40) classes [0] torch imports tried []" in result.stdout  # pure red -> class 'red'
