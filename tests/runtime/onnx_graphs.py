"""Tiny hand-built ONNX segmentation 'models' (a 1x1 conv per pixel) with EdgeSeg metadata, and their numpy reference.

They let runtime tests run without torch and compare against an independent float64 computation.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeseg.config import META_KEY, make_meta

CLASSES = ("red", "green", "blue", "dark")


def pixel_classifier_weights() -> tuple[np.ndarray, np.ndarray]:
    """1x1 conv weights over normalised RGB: classes respond to red, green, blue and darkness."""
    weight = np.array([[2, -1, -1], [-1, 2, -1], [-1, -1, 2], [-1, -1, -1]], np.float32).reshape(4, 3, 1, 1)
    bias = np.array([0.0, 0.0, 0.0, -0.5], np.float32)
    return weight, bias


def write_pixel_classifier(path: Path, input_size=(24, 32), *, argmax=False, stride=1, batch=-1,
                           dynamic_hw=False) -> Path:
    """An ONNX graph: [AveragePool stride s] -> Conv1x1 -> [ArgMax]. Input 'input' (N,3,H,W) float32, H and W
    fixed at input_size unless `dynamic_hw` (the metadata's input_size is then the size frames are resized to)."""
    weight, bias = pixel_classifier_weights()
    n = "N" if batch == -1 else batch
    nodes, inits = [], [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
    head = "input"
    if stride > 1:
        nodes.append(helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[stride, stride], strides=[stride, stride]))
        head = "pooled"
    nodes.append(helper.make_node("Conv", [head, "W", "B"], ["logits"]))
    out_name, out_type, out_shape = "logits", TensorProto.FLOAT, [n, 4, "h", "w"]
    if argmax:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["idx"], axis=1, keepdims=0))
        nodes.append(helper.make_node("Cast", ["idx"], ["classmap"], to=TensorProto.UINT8))
        out_name, out_type, out_shape = "classmap", TensorProto.UINT8, [n, "h", "w"]
    graph = helper.make_graph(
        nodes,
        "pixel_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       [n, 3, "H", "W"] if dynamic_hw else [n, 3, input_size[0], input_size[1]])],
        [helper.make_tensor_value_info(out_name, out_type, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = make_meta(
        "pixel_classifier", CLASSES, input_size, output_stride=stride, output_format="classmap" if argmax else "logits"
    )
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference_logits(frame_bgr: np.ndarray, input_size, stride=1) -> np.ndarray:
    """float64 numpy: cv2 resize, RGB, ImageNet normalisation, [average pool], 1x1 conv."""
    meta = make_meta("x", CLASSES, input_size)
    resized = cv2.resize(frame_bgr, (input_size[1], input_size[0]), interpolation=cv2.INTER_LINEAR)
    rgb = resized[:, :, ::-1].astype(np.float64) / 255.0
    x = ((rgb - np.array(meta.mean)) / np.array(meta.std)).transpose(2, 0, 1)
    if stride > 1:
        c, h, w = x.shape
        x = x.reshape(c, h // stride, stride, w // stride, stride).mean(axis=(2, 4))
    weight, bias = pixel_classifier_weights()
    return np.einsum("kc,chw->khw", weight[:, :, 0, 0].astype(np.float64), x) + bias[:, None, None]


def bilinear_upsample(logits: np.ndarray, stride: int, out_hw) -> np.ndarray:
    """Half-pixel bilinear upsampling by an integer stride, clamped at the borders (torch align_corners=False)."""
    return bilinear_resize(logits, out_hw, (1.0 / stride, 1.0 / stride))


def bilinear_resize(logits: np.ndarray, out_hw, ratio=None) -> np.ndarray:
    """(C, h, w) -> (C, H, W): half-pixel bilinear, clamped at the borders, source step `ratio` (in/out per axis;
    default h/H and w/W, i.e. cv2.resize INTER_LINEAR and torch align_corners=False)."""
    c, h, w = logits.shape
    ratio = ratio or (h / out_hw[0], w / out_hw[1])

    def axis(n_out, n_in, step):
        src = np.maximum((np.arange(n_out) + 0.5) * step - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = axis(out_hw[0], h, ratio[0])
    x0, x1, fx = axis(out_hw[1], w, ratio[1])
    top = logits[:, y0][:, :, x0] * (1 - fx) + logits[:, y0][:, :, x1] * fx
    bottom = logits[:, y1][:, :, x0] * (1 - fx) + logits[:, y1][:, :, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def random_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Blocky coloured BGR frame: large uniform regions so argmax margins are wide."""
    small = rng.integers(0, 256, (max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
