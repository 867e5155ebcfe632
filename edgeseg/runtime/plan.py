"""The processing plan: every step a frame goes through around the graph, built once from a model's ModelMeta.

This is the one home of EdgeSeg's pre- and post-processing. A plan says what the graph takes (layout, dtype, size),
what it already does (uint8 input with in-graph normalisation, in-graph argmax, low-resolution logits) and so what
is left to do on each side:

    frame (BGR uint8, any size)
      -> resize to input_size (bilinear, cv2 INTER_LINEAR convention)
      -> [float graphs] RGB, /255, (x - mean) / std, NCHW          ([uint8 graphs] NHWC BGR, normalised in-graph)
      -> graph
      -> [logits] argmax  | [lowres logits] bilinear x stride + crop + argmax in one pass | [classmap] as is
      -> uint8 mask at input_size   (+ on request, from the same pass: uint8 confidence, round(255 * max softmax))
      -> outputs: mask at frame size (nearest), overlay (nearest inside the blend), colour mask,
         confidence at frame size (nearest, so each pixel's confidence is its mask class's) and its heat map

With test-time augmentation (`tta`, edgeseg.runtime.tta) the plan runs the graph once per view (scale, mirror) and
averages the views' softmax probabilities at input_size before the one argmax (`predict_tta`); every backend gets
it through the same `infer` call. A plan whose TTA is plain (scale 1, no mirror) runs the steps above unchanged.

The CPU executor is this module (`preprocess`, `postprocess`, `render`), running edgeseg.runtime.ops' C++ kernels.
The GPU executor (TensorRT's device path) runs the same steps with the CUDA kernels, reading the same plan. Every
consumer (Segmenter, the accuracy report, the torch predictor, calibration, `bench`) goes through a plan, so when
two paths are compared the backend is the only difference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from edgeseg.config import IGNORE_INDEX, ModelMeta
from edgeseg.errors import ConfigError, DataError
from edgeseg.runtime import ops
from edgeseg.runtime.tta import TTA, resize_chw, softmax, view_size

# The stages one inference call is timed in, everywhere (Segmenter, TensorRT device path, bench, pipeline stats).
STAGES = ("preprocess", "infer", "postprocess")
# What render() can make from a frame and its mask (the last two also need the confidence map).
OUTPUTS = ("mask", "overlay", "color", "confidence", "confidence_heatmap")
CONFIDENCE_OUTPUTS = ("confidence", "confidence_heatmap")
# The heat map's colours: dark purple where the model is unsure (p near 0), bright yellow where it is sure (p = 1).
HEATMAP_COLORMAP = cv2.COLORMAP_INFERNO


def check_frame(frame: Any, index: int = 0) -> np.ndarray:
    """A BGR uint8 (H, W, 3) non-empty array, or DataError naming the frame and what it was."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", "")
        raise DataError(f"frame {index} must be a BGR uint8 HxWx3 array, got {got}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise DataError(f"frame {index} is empty (shape {frame.shape})")
    return frame


@dataclass(frozen=True)
class ProcessingPlan:
    """What happens to a frame before and after the graph; see the module docstring."""

    input_size: tuple[int, int]  # (H, W) the graph takes
    input_dtype: np.dtype  # float32 / float16 (NCHW RGB, normalised) or uint8 (NHWC BGR, normalised in-graph)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str  # "logits" (full-res), "lowres" (logits at input_size / stride) or "classmap" (in-graph argmax)
    output_stride: int
    palette_bgr: np.ndarray  # (K, 3) uint8
    tta: TTA = TTA()  # the views averaged per frame; TTA() is plain inference

    @classmethod
    def from_meta(cls, meta: ModelMeta, input_dtype: Any = None, tta: TTA | None = None) -> "ProcessingPlan":
        """The plan for a model. `input_dtype` is the graph input's dtype when the backend knows it (fp16 I/O);
        `tta` the test-time augmentation (ConfigError for a graph that outputs a class map: it has no logits)."""
        uint8_input = meta.input_format == "uint8_nhwc_bgr"
        dtype = np.dtype(np.uint8 if uint8_input else (input_dtype if input_dtype is not None else np.float32))
        if uint8_input != (dtype == np.uint8) or dtype not in (np.uint8, np.float32, np.float16):
            raise ConfigError(f"the graph's input dtype {dtype} does not fit its metadata input_format "
                              f"{meta.input_format!r}")
        if meta.output_format == "classmap":
            output = "classmap"
        else:
            output = "lowres" if meta.output_stride > 1 else "logits"
        palette = np.ascontiguousarray(np.asarray(meta.palette, dtype=np.uint8)[:, ::-1])
        tta = tta or TTA()
        if output == "classmap" and not tta.is_plain:
            raise ConfigError(f"test-time augmentation ({tta.describe()}) averages class probabilities, but this graph "
                              "outputs class ids (exported with --argmax): use a model exported without --argmax")
        return cls(tuple(meta.input_size), dtype, tuple(meta.mean), tuple(meta.std), output,  # type: ignore[arg-type]
                   int(meta.output_stride), palette, tta)

    # ----- facts the executors read ------------------------------------------------------------------------------
    @property
    def normalize_in_graph(self) -> bool:
        return self.input_dtype == np.uint8

    @property
    def argmax_in_graph(self) -> bool:
        return self.output == "classmap"

    def check_confidence(self) -> None:
        """ConfigError unless the graph outputs logits: a graph that ends in argmax has no probabilities left."""
        if self.argmax_in_graph:
            raise ConfigError(
                "this model ends in an argmax inside its graph (exported with --argmax), so it outputs class ids "
                "only and has no per-pixel confidence; export it again without --argmax (edgeseg export "
                "CHECKPOINT --out DIR) to get logits, which give both the mask and the confidence")
        if not self.tta.is_plain:
            raise ConfigError("confidence maps are not computed with test-time augmentation yet: run without "
                              "--tta-scales/--tta-flip to get them")

    def input_shape(self, batch: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        height, width = size or self.input_size
        return (batch, height, width, 3) if self.normalize_in_graph else (batch, 3, height, width)

    # ----- CPU executor --------------------------------------------------------------------------------------------
    def preprocess(self, frames: Sequence[np.ndarray], out: np.ndarray | None = None,
                   size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames -> the graph's input batch (into `out` when given; its shape and dtype must match), resized to
        input_size, or to `size` (a TTA view's)."""
        for index, frame in enumerate(frames):
            check_frame(frame, index)
        shape = self.input_shape(len(frames), size)
        if out is None:
            out = np.empty(shape, self.input_dtype)
        elif out.shape != shape or out.dtype != self.input_dtype:
            raise ConfigError(f"preprocess out= must be {shape} {self.input_dtype}, got {out.shape} {out.dtype}")
        height, width = size or self.input_size
        for index, frame in enumerate(frames):
            if self.normalize_in_graph:  # the graph normalises: resize only
                cv2.resize(frame, (width, height), dst=out[index], interpolation=cv2.INTER_LINEAR)
            else:
                ops.preprocess(np.ascontiguousarray(frame) if not _rows_contiguous(frame) else frame,
                               (height, width), self.mean, self.std, dtype=self.input_dtype,
                               out=out[index : index + 1])
        return out

    def postprocess(self, output: np.ndarray, confidence: bool = False) -> list[Any]:
        """The graph's output batch -> uint8 masks at input_size, each a new array the caller owns.

        With `confidence`, a list of (mask, confidence) pairs instead: the confidence is each pixel's highest
        softmax probability as uint8 round(255 * p), from the same kernel pass (ops.argmax / ops.upsample_argmax);
        ConfigError for a graph that ends in argmax (check_confidence)."""
        if confidence:
            self.check_confidence()
        output = np.asarray(output)
        if self.output == "classmap":
            if output.ndim != 3:
                raise DataError(f"a classmap graph must output (N, H, W), got {output.shape}")
            self.check_class_ids(output)
            return [np.array(one, dtype=np.uint8, copy=True) for one in output]
        if output.ndim != 4:
            raise DataError(f"a logits graph must output (N, C, H, W), got {output.shape}")
        if self.output == "lowres":
            return [ops.upsample_argmax(np.ascontiguousarray(one), self.input_size, self.output_stride,
                                        confidence=confidence) for one in output]
        return [ops.argmax(np.ascontiguousarray(one), confidence=confidence) for one in output]

    @property
    def num_classes(self) -> int:
        return len(self.palette_bgr)

    def check_class_ids(self, class_map: np.ndarray) -> None:
        """A graph's in-graph argmax may give any id: one beyond the classes would be painted as no class at all and
        scored as wrong everywhere. Refuse it, as `eval --pred` does for prediction PNGs."""
        highest = int(class_map.max()) if class_map.size else 0
        if highest >= self.num_classes:
            raise DataError(f"the model's class map holds class id {highest}, but it has {self.num_classes} classes "
                            f"(0..{self.num_classes - 1}): pass --classes with the model's real class count "
                            "(more than its highest id)")

    # ----- test-time augmentation ------------------------------------------------------------------------------------
    def view_sizes(self) -> list[tuple[int, int]]:
        """The (H, W) the graph runs at, one per TTA scale."""
        return [view_size(self.input_size, scale) for scale in self.tta.scales]

    def check_tta_graph(self, graph_shape: Sequence[int], profile: Sequence[Sequence[int]] | None = None) -> None:
        """ConfigError unless a graph whose input is `graph_shape` (-1 = dynamic) takes every TTA view's size, within
        `profile` (min, opt, max (N, 3, H, W) shapes, for engines) when given. The message says how to export one."""
        sizes = [size for size in self.view_sizes() if size != tuple(self.input_size)]
        if not sizes:
            return
        height, width = self.input_size
        lo = (min(h for h, _ in sizes + [(height, width)]), min(w for _, w in sizes + [(height, width)]))
        hi = (max(h for h, _ in sizes + [(height, width)]), max(w for _, w in sizes + [(height, width)]))
        batch = int(profile[2][0]) if profile else max(int(graph_shape[0]), 1)
        export = (f"export it with dynamic height and width, e.g. `edgeseg export CKPT --dynamic 1x{lo[0]}x{lo[1]} "
                  f"1x{height}x{width} {batch}x{hi[0]}x{hi[1]}`")
        spatial = [graph_shape[i] for i in ((1, 2) if self.normalize_in_graph else (2, 3))]
        wanted = ", ".join(f"{h}x{w}" for h, w in sizes)
        if any(n != -1 for n in spatial):
            raise ConfigError(f"--tta-scales {' '.join(f'{s:g}' for s in self.tta.scales)} run the model at {wanted}, "
                              f"but its graph takes only {height}x{width} (a static shape): {export}")
        if profile:
            (_, _, min_h, min_w), (_, _, max_h, max_w) = profile[0], profile[2]
            outside = [f"{h}x{w}" for h, w in sizes if not (min_h <= h <= max_h and min_w <= w <= max_w)]
            if outside:
                raise ConfigError(f"--tta-scales need the sizes {', '.join(outside)}, outside the engine's profile "
                                  f"{min_h}x{min_w} .. {max_h}x{max_w}: {export}, and rebuild the engine")

    def tta_probabilities(self, frames: Sequence[np.ndarray], infer: Callable[[np.ndarray], np.ndarray],
                          stage_ms: dict[str, float] | None = None) -> np.ndarray:
        """(N, C, H, W) float32 class probabilities at input_size, averaged over the TTA views (one `infer` call
        per view, on the whole batch). `stage_ms`, when given, gets each stage's time added."""
        total: np.ndarray | None = None
        for view in self.tta.views:
            size = view_size(self.input_size, view.scale)
            t0 = time.perf_counter()
            batch = self.preprocess(frames, size=size)
            if view.flip:  # mirror left-right: W is axis 2 of NHWC, 3 of NCHW
                batch = np.ascontiguousarray(batch[:, :, ::-1] if self.normalize_in_graph else batch[..., ::-1])
            t1 = time.perf_counter()
            output = np.asarray(infer(batch))
            t2 = time.perf_counter()
            if output.ndim != 4 or output.shape[0] != len(frames):
                raise DataError(f"a logits graph must output (N, C, H, W) for {len(frames)} frames, got {output.shape}")
            probs = np.stack([self._view_probabilities(one.astype(np.float32), size, view.flip) for one in output])
            total = probs if total is None else total + probs
            t3 = time.perf_counter()
            if stage_ms is not None:
                for stage, ms in zip(STAGES, ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)):
                    stage_ms[stage] = stage_ms.get(stage, 0.0) + ms
        assert total is not None  # TTA has at least one view
        total /= len(self.tta.views)
        return total

    def predict_tta(self, frames: Sequence[np.ndarray], infer: Callable[[np.ndarray], np.ndarray],
                    stage_ms: dict[str, float] | None = None) -> list[np.ndarray]:
        """uint8 masks at input_size: the argmax of `tta_probabilities`, taken once."""
        probs = self.tta_probabilities(frames, infer, stage_ms)
        start = time.perf_counter()
        masks = [ops.argmax(one) for one in probs]
        if stage_ms is not None:
            stage_ms["postprocess"] = stage_ms.get("postprocess", 0.0) + (time.perf_counter() - start) * 1e3
        return masks

    def _view_probabilities(self, logits: np.ndarray, size: tuple[int, int], flip: bool) -> np.ndarray:
        """One frame's view logits -> softmax probabilities at input_size: [upsample by the stride and crop to the
        view] or [resize to the view], mirror back, resize to input_size, softmax."""
        height, width = size
        if self.output == "lowres":
            h, w = logits.shape[1:]
            if h * self.output_stride < height or w * self.output_stride < width:
                raise DataError(f"low-resolution logits {(h, w)} times output_stride {self.output_stride} do not "
                                f"cover the {height}x{width} input")
            logits = resize_chw(logits, (h * self.output_stride, w * self.output_stride))[:, :height, :width]
        else:
            logits = resize_chw(logits, size)
        if flip:
            logits = logits[:, :, ::-1]
        return softmax(resize_chw(np.ascontiguousarray(logits), tuple(self.input_size)))  # type: ignore[arg-type]

    # ----- outputs ---------------------------------------------------------------------------------------------------
    @staticmethod
    def mask_to_frame(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """The mask at a frame's (H, W), nearest neighbour (the same rule the overlay kernel uses)."""
        height, width = int(size_hw[0]), int(size_hw[1])
        if mask.shape == (height, width):
            return mask
        return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)

    @staticmethod
    def confidence_to_frame(confidence: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """The confidence map at a frame's (H, W), nearest neighbour like the mask, so that each pixel's confidence
        is that of its class in the mask."""
        return ProcessingPlan.mask_to_frame(confidence, size_hw)

    @staticmethod
    def heatmap(confidence: np.ndarray) -> np.ndarray:
        """uint8 confidence (H, W) -> BGR heat map (H, W, 3): HEATMAP_COLORMAP, dark where unsure."""
        return cv2.applyColorMap(confidence, HEATMAP_COLORMAP)

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        self._check_paintable(mask)
        return ops.colorize(mask, self.palette_bgr)

    def overlay(self, frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """Colours blended over the frame; the mask may be at model size (the kernel resizes it, nearest)."""
        self._check_paintable(mask)
        return ops.overlay(frame, mask, self.palette_bgr, alpha)

    def _check_paintable(self, mask: np.ndarray) -> None:
        """Ids 0..K-1 have colours and 255 is void (left unpainted); the kernels would paint any other id like void,
        so a mask from another model or a wrong class count would look plausible. Refuse it instead."""
        mask = np.asarray(mask)
        if mask.size == 0 or int(mask.max()) < self.num_classes:
            return
        beyond = np.unique(mask[(mask >= self.num_classes) & (mask != IGNORE_INDEX)])
        if beyond.size:
            raise DataError(f"the mask holds class ids {beyond[:8].tolist()} beyond the palette's {self.num_classes} "
                            f"colours (ids 0..{self.num_classes - 1}, 255 = void): it is not this model's mask, or "
                            "the class count (--classes) is wrong")

    def render(self, frame: np.ndarray, mask: np.ndarray, outputs: Iterable[str], alpha: float = 0.5,
               confidence: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The requested outputs at the frame's size by their cheapest correct route: the overlay blends the
        model-size mask directly (its kernel samples nearest), and the mask is resized once, only when the mask or
        the colour mask is asked for (colouring after the resize, so the colours are exactly the palette's).
        "confidence" and "confidence_heatmap" need the mask's `confidence` map (postprocess(confidence=True))."""
        wanted = set(outputs)
        unknown = wanted - set(OUTPUTS)
        if unknown:
            raise ConfigError(f"unknown output(s) {sorted(unknown)}; choose from {OUTPUTS}")
        result: dict[str, np.ndarray] = {}
        if wanted & set(CONFIDENCE_OUTPUTS):
            if confidence is None:
                raise ConfigError(f"outputs {sorted(wanted & set(CONFIDENCE_OUTPUTS))} need the confidence map: "
                                  "predict with confidence=True")
            full_confidence = self.confidence_to_frame(confidence, frame.shape[:2])
            if "confidence" in wanted:
                result["confidence"] = full_confidence
            if "confidence_heatmap" in wanted:
                result["confidence_heatmap"] = self.heatmap(full_confidence)
        if "overlay" in wanted:
            result["overlay"] = self.overlay(frame, mask, alpha)
        if wanted & {"mask", "color"}:
            full = self.mask_to_frame(mask, frame.shape[:2])
            if "mask" in wanted:
                result["mask"] = full
            if "color" in wanted:
                result["color"] = self.colorize(full)
        return result


def _rows_contiguous(frame: np.ndarray) -> bool:
    return frame.strides[2] == 1 and frame.strides[1] == 3
