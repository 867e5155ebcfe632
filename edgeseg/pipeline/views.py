"""What `edgeseg run` shows and writes for each frame: the view (overlay, colour mask, frame and overlay side
by side, or the confidence heat map), with an optional legend (class names in their palette colours, or for the heat
map its colour scale) and an optional FPS text.

The pixels come from the model's ProcessingPlan (`Segmenter.render`); this module only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import ConfigError

VIEWS = ("overlay", "mask", "side-by-side", "confidence")
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class View:
    """How a frame is presented. `classes` and `palette_bgr` are needed for the legend only."""

    kind: str = "overlay"
    legend: bool = False
    show_fps: bool = False
    classes: tuple[str, ...] = ()
    palette_bgr: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in VIEWS:
            raise ConfigError(f"--view must be one of {VIEWS}, got {self.kind!r}")
        if self.legend and not self.needs_confidence and (not self.classes or self.palette_bgr is None):
            raise ConfigError("a legend needs the model's class names and palette")

    @property
    def needs_confidence(self) -> bool:
        """True when the picture needs the per-pixel confidence (predict(confidence=True))."""
        return self.kind == "confidence"

    @property
    def renders(self) -> list[str]:
        """What the plan must render for this view (ProcessingPlan.OUTPUTS)."""
        return {"mask": ["color"], "confidence": ["confidence_heatmap"]}.get(self.kind, ["overlay"])

    def compose(self, frame: np.ndarray, rendered: dict[str, np.ndarray], fps: float | None = None) -> np.ndarray:
        """The picture for one frame, from the plan's rendered outputs (never modifies them)."""
        if self.kind == "mask":
            image = rendered["color"].copy()
        elif self.kind == "side-by-side":
            image = np.hstack([frame, rendered["overlay"]])
        elif self.kind == "confidence":
            image = rendered["confidence_heatmap"].copy()
        else:
            image = rendered["overlay"].copy()
        if self.legend and self.kind == "confidence":
            draw_confidence_scale(image)
        elif self.legend:
            draw_legend(image, self.classes, self.palette_bgr)  # type: ignore[arg-type]
        if self.show_fps and fps is not None:
            draw_label(image, f"{fps:.1f} FPS", (8, 8))
        return image


def draw_label(image: np.ndarray, text: str, top_left: tuple[int, int], scale: float = 0.5) -> None:
    """White text on a black box, in place, clipped to the image."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = top_left
    cv2.rectangle(image, (x - 3, y - 3), (x + width + 3, y + height + baseline + 3), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x, y + height), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_legend(image: np.ndarray, classes: Sequence[str], palette_bgr: np.ndarray, scale: float = 0.45) -> None:
    """A column of colour swatches with class names at the image's top right, in place."""
    (_, text_h), baseline = cv2.getTextSize("Ag", _FONT, scale, 1)
    row = text_h + baseline + 6
    widest = max(cv2.getTextSize(name, _FONT, scale, 1)[0][0] for name in classes)
    box_w = row + widest + 12
    x0 = max(image.shape[1] - box_w - 8, 0)
    for index, name in enumerate(classes):
        y = 8 + index * row
        if y + row > image.shape[0]:
            break  # more classes than rows: the legend stops at the bottom edge
        colour = tuple(int(c) for c in palette_bgr[index])
        cv2.rectangle(image, (x0, y), (x0 + box_w, y + row), (0, 0, 0), cv2.FILLED)
        cv2.rectangle(image, (x0 + 3, y + 3), (x0 + row - 3, y + row - 3), colour, cv2.FILLED)
        cv2.putText(image, name, (x0 + row + 4, y + text_h + 3), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_confidence_scale(image: np.ndarray, height: int = 120, scale: float = 0.45) -> None:
    """The heat map's colour scale at the image's top right, in place: 100 % at the top, 0 % at the bottom."""
    from edgeseg.runtime.plan import ProcessingPlan

    height = max(min(height, image.shape[0] - 16), 2)
    ramp = np.linspace(255, 0, height).round().astype(np.uint8)[:, None].repeat(14, axis=1)
    bar = ProcessingPlan.heatmap(ramp)
    (text_w, text_h), _ = cv2.getTextSize("100%", _FONT, scale, 1)
    x0 = image.shape[1] - bar.shape[1] - text_w - 16
    if x0 < 0:
        return  # too narrow for a scale
    image[8 : 8 + height, x0 : x0 + bar.shape[1]] = bar
    draw_label(image, "100%", (x0 + bar.shape[1] + 6, 8), scale)
    draw_label(image, "0%", (x0 + bar.shape[1] + 6, 8 + height - text_h - 2), scale)
