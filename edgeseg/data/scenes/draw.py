"""Drawing the elements of one synthetic street scene: perspective geometry, primitives, sky, buildings, ground,
trees, poles, cars and people. Every drawer paints the RGB float image and the label map together."""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.data.scenes.classes import BUILDING, CAR, PERSON, POLE, ROAD, SIDEWALK, VEGETATION


def random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """An RGB colour (float 0..255) from a random hue with saturation and value in the given ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def fill(image: np.ndarray, label: np.ndarray, pts: np.ndarray, colour, cls: int) -> None:
    pts = [np.round(pts).astype(np.int32)]
    cv2.fillPoly(image, pts, [float(c) for c in colour])
    cv2.fillPoly(label, pts, int(cls))


def rect(image: np.ndarray, label: np.ndarray, x0, y0, x1, y1, colour, cls: int | None) -> None:
    p0, p1 = (int(round(x0)), int(round(y0))), (int(round(x1)) - 1, int(round(y1)) - 1)
    if p1[0] < p0[0] or p1[1] < p0[1]:
        return
    cv2.rectangle(image, p0, p1, [float(c) for c in colour], -1)
    if cls is not None:
        cv2.rectangle(label, p0, p1, int(cls), -1)


def circle(image: np.ndarray, label: np.ndarray, x, y, r, colour, cls: int | None) -> None:
    centre, radius = (int(round(x)), int(round(y))), max(1, int(round(r)))
    cv2.circle(image, centre, radius, [float(c) for c in colour], -1)
    if cls is not None:
        cv2.circle(label, centre, radius, int(cls), -1)


class Scene:
    """The geometry shared by every element: horizon, vanishing point, road edges, size at a ground row."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.horizon = h * rng.uniform(0.36, 0.52)
        self.vx = w * rng.uniform(0.35, 0.65)
        half_bottom = h * rng.uniform(0.45, 0.8)
        self.road_left = (self.vx - h * 0.02, self.vx - half_bottom)  # x at horizon, x at bottom row
        self.road_right = (self.vx + h * 0.02, self.vx + half_bottom)

    def depth(self, y: float) -> float:
        """0 at the horizon, 1 at the bottom row: how large things standing at ground row y appear."""
        return max(0.02, (y - self.horizon) / (self.h - self.horizon))

    def road_x(self, y: float) -> tuple[float, float]:
        t = self.depth(y)
        return (
            self.road_left[0] + t * (self.road_left[1] - self.road_left[0]),
            self.road_right[0] + t * (self.road_right[1] - self.road_right[0]),
        )


def draw_sky(rng, image, scene: Scene) -> None:
    kind = rng.integers(3)
    if kind == 0:  # clear
        top, bottom = np.array([40, 90, 200]), np.array([150, 190, 235])
    elif kind == 1:  # overcast
        g = rng.uniform(150, 220)
        top, bottom = np.array([g, g, g + 8]), np.array([g + 20, g + 20, g + 22])
    else:  # dusk
        top, bottom = np.array([70, 60, 140]), np.array([240, 150, 90])
    top = top * rng.uniform(0.8, 1.1, 3)
    bottom = bottom * rng.uniform(0.8, 1.1, 3)
    rows = int(np.ceil(scene.horizon)) + 1
    t = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
    image[:rows] = top * (1 - t) + bottom * t


def draw_buildings(rng, image, label, scene: Scene) -> None:
    x, base = 0.0, scene.horizon + 1
    while x < scene.w:
        bw = scene.h * rng.uniform(0.15, 0.5)
        if rng.random() < 0.12:  # a gap showing the sky
            x += bw * 0.5
            continue
        top = rng.uniform(0.02, 0.75) * scene.horizon
        wall = random_colour(rng, (0.0, 0.6), (0.3, 0.95))
        rect(image, label, x, top, x + bw, base, wall, BUILDING)
        x0, y0, x1, y1 = int(round(x)), int(round(top)), int(round(x + bw)), int(round(base))
        x1, y1 = min(x1, scene.w), min(y1, scene.h)
        if x1 - x0 > 4 and y1 - y0 > 4 and rng.random() < 0.9:  # window grid
            px, py = rng.integers(4, 10), rng.integers(5, 11)
            wx, wy = max(1, int(px * rng.uniform(0.3, 0.7))), max(1, int(py * rng.uniform(0.3, 0.7)))
            yy, xx = np.ogrid[0 : y1 - y0, 0 : x1 - x0]
            windows = ((yy % py) >= py - wy) & ((xx % px) >= px - wx)
            glass = (
                wall * rng.uniform(0.2, 0.5)
                if rng.random() < 0.7
                else np.array([200, 215, 230]) * rng.uniform(0.7, 1.0)
            )
            image[y0:y1, x0:x1][windows] = glass
            if rng.random() < 0.5:  # floor ledges
                ledge = (yy % py) == 0
                image[y0:y1, x0:x1][np.broadcast_to(ledge, windows.shape)] = wall * 1.15
        x += bw


def draw_ground(rng, image, label, scene: Scene) -> None:
    h, w, hz = scene.h, scene.w, scene.horizon
    y0 = int(np.floor(hz))
    paving = random_colour(rng, (0.0, 0.35), (0.45, 0.85))
    rect(image, label, 0, y0, w, h, paving, SIDEWALK)
    # Tile joints: rows spaced in perspective, lines radiating from the vanishing point.
    joints = np.zeros((h, w), np.uint8)
    for k in range(1, 12):
        y = int(hz + (h - hz) * (k / 11) ** 1.8)
        cv2.line(joints, (0, y), (w - 1, y), 1, 1)
    for k in range(-14, 15):
        cv2.line(joints, (int(scene.vx), int(hz)), (int(scene.vx + k * h * 0.25), h + h), 1, 1)
    if rng.random() < 0.5:  # a grass verge at the far side
        side = rng.choice([-1, 1])
        edge_bottom = scene.vx + side * h * rng.uniform(1.0, 1.6)
        far = -w if side < 0 else 2 * w
        fill(
            image,
            label,
            np.array([[scene.vx, hz], [edge_bottom, h * 2], [far, h * 2], [far, hz]]),
            grass(rng),
            VEGETATION,
        )
    (lt, lb), (rt, rb) = scene.road_left, scene.road_right
    asphalt = rng.uniform(50, 120) * rng.uniform(0.9, 1.1, 3)
    fill(image, label, np.array([[lt, hz], [rt, hz], [rb, h], [lb, h]]), asphalt, ROAD)
    pavement = label == SIDEWALK
    image[(joints > 0) & pavement] *= 0.6
    # Dashed lane marks in perspective (label stays road), sometimes solid edge lines.
    paint = np.array([235, 235, 225]) if rng.random() < 0.8 else np.array([230, 200, 60])
    phase = rng.uniform(0, 1)
    for k in range(8):
        t0, t1 = ((k + phase) / 8) ** 2, ((k + phase + 0.45) / 8) ** 2
        ya, yb = hz + t0 * (h - hz), hz + min(t1, 1.2) * (h - hz)
        half_a, half_b = 0.2 + 2.5 * t0, 0.2 + 2.5 * min(t1, 1.2)
        fill(
            image,
            label,
            np.array(
                [[scene.vx - half_a, ya], [scene.vx + half_a, ya], [scene.vx + half_b, yb], [scene.vx - half_b, yb]]
            ),
            paint,
            ROAD,
        )
    if rng.random() < 0.5:
        for (top, bottom), sign in ((scene.road_left, 1), (scene.road_right, -1)):
            inset = sign * h * 0.05
            line = np.array([[top, hz], [top + sign * 0.5, hz], [bottom + inset + sign * 2, h], [bottom + inset, h]])
            fill(image, label, line, paint, ROAD)


def grass(rng) -> np.ndarray:
    if rng.random() < 0.75:
        return np.array([rng.uniform(40, 100), rng.uniform(90, 160), rng.uniform(20, 60)])
    return np.array([rng.uniform(150, 210), rng.uniform(90, 150), rng.uniform(20, 50)])  # autumn / dry


def draw_tree(rng, image, label, scene: Scene, x: float, y: float) -> None:
    s = scene.depth(y)
    trunk_h, crown_r = scene.h * s * rng.uniform(0.5, 0.9), scene.h * s * rng.uniform(0.18, 0.35)
    trunk_w = max(1.0, crown_r * 0.18)
    rect(
        image,
        label,
        x - trunk_w / 2,
        y - trunk_h,
        x + trunk_w / 2,
        y,
        np.array([80, 60, 40]) * rng.uniform(0.7, 1.2),
        VEGETATION,
    )
    leaves = grass(rng)
    cy = y - trunk_h
    for _ in range(5):
        circle(
            image,
            label,
            x + rng.normal(0, crown_r * 0.45),
            cy + rng.normal(0, crown_r * 0.35),
            crown_r * rng.uniform(0.5, 0.85),
            leaves * rng.uniform(0.8, 1.15),
            VEGETATION,
        )


def draw_pole(rng, image, label, scene: Scene, x: float, y: float) -> None:
    s = scene.depth(y)
    height, width = scene.h * s * rng.uniform(1.1, 1.8), max(1.0, scene.h * s * rng.uniform(0.02, 0.04))
    colour = np.array([110, 110, 115]) * rng.uniform(0.6, 1.3) if rng.random() < 0.7 else np.array([40, 70, 50])
    rect(image, label, x - width / 2, y - height, x + width / 2, y, colour, POLE)
    if rng.random() < 0.4:  # a sign plate (part of the pole class here)
        size = max(2.0, width * 4)
        rect(
            image,
            label,
            x - size / 2,
            y - height * 0.75,
            x + size / 2,
            y - height * 0.75 + size,
            random_colour(rng, (0.6, 1.0), (0.6, 1.0)),
            POLE,
        )


def draw_car(rng, image, label, scene: Scene, x: float, y: float) -> None:
    s = scene.depth(y)
    cw = scene.h * s * rng.uniform(0.4, 0.65)
    body_h, cabin_h = cw * rng.uniform(0.28, 0.36), cw * rng.uniform(0.2, 0.28)
    paint = random_colour(rng, (0.0, 0.9), (0.1, 0.95))
    wheel_r = body_h * 0.35
    top = y - wheel_r - body_h
    rect(image, label, x - cw / 2, top, x + cw / 2, y - wheel_r, paint, CAR)
    inset = cw * rng.uniform(0.12, 0.2)
    cabin = np.array(
        [
            [x - cw / 2 + inset, top],
            [x + cw / 2 - inset, top],
            [x + cw / 2 - inset * 1.6, top - cabin_h],
            [x - cw / 2 + inset * 1.6, top - cabin_h],
        ]
    )
    fill(image, label, cabin, paint, CAR)
    glass = np.array([40, 50, 60]) * rng.uniform(0.7, 1.6)
    g = cabin_h * 0.18
    fill(image, label, cabin + np.array([[g, -g], [-g, -g], [-g, g], [g, g]]), glass, CAR)
    for side in (-1, 1):
        circle(image, label, x + side * cw * 0.3, y - wheel_r, wheel_r, (20, 20, 20), CAR)
        lamp = (255, 240, 200) if rng.random() < 0.5 else (200, 20, 20)
        rect(
            image,
            label,
            x + side * cw * 0.4 - cw * 0.05,
            top + body_h * 0.2,
            x + side * cw * 0.4 + cw * 0.05,
            top + body_h * 0.4,
            lamp,
            CAR,
        )
    rect(image, label, x - cw * 0.12, top + body_h * 0.55, x + cw * 0.12, top + body_h * 0.75, (230, 230, 230), CAR)


def draw_person(rng, image, label, scene: Scene, x: float, y: float) -> None:
    s = scene.depth(y)
    ph = scene.h * s * rng.uniform(0.4, 0.6)
    head, torso_w = ph * 0.09, ph * 0.24
    skin = np.array([rng.uniform(90, 240), rng.uniform(60, 190), rng.uniform(40, 160)])
    shirt, trousers = random_colour(rng, (0.0, 1.0), (0.15, 1.0)), random_colour(rng, (0.0, 0.7), (0.1, 0.7))
    stride = ph * rng.uniform(0.0, 0.1)
    for side in (-1, 1):
        leg = np.array(
            [
                [x + side * torso_w * 0.05, y - ph * 0.48],
                [x + side * torso_w * 0.45, y - ph * 0.48],
                [x + side * (torso_w * 0.3 + stride), y],
                [x + side * stride, y],
            ]
        )
        fill(image, label, leg, trousers, PERSON)
    rect(image, label, x - torso_w / 2, y - ph * 0.8, x + torso_w / 2, y - ph * 0.45, shirt, PERSON)
    for side in (-1, 1):
        rect(
            image,
            label,
            x + side * torso_w / 2 - (torso_w * 0.22 if side > 0 else 0),
            y - ph * 0.78,
            x + side * torso_w / 2 + (torso_w * 0.22 if side < 0 else 0),
            y - ph * 0.5,
            shirt * 0.9,
            PERSON,
        )
    circle(image, label, x, y - ph * 0.8 - head, head, skin, PERSON)


def place_objects(rng, scene: Scene) -> list[tuple[float, int, float]]:
    """(ground row y, kind, x) of every object, sorted far to near."""
    h, w = scene.h, scene.w
    objects = []
    scale = w / h  # wider images get more objects
    for _ in range(rng.poisson(2.0 * scale) + 1):
        y = scene.horizon + (h - scene.horizon) * rng.uniform(0.15, 1.1)
        left, right = scene.road_x(y)
        objects.append((y, CAR, rng.uniform(left, right)))
    for kind, mean, at_curb in ((PERSON, 2.5, False), (POLE, 1.5, True), (VEGETATION, 1.5, True)):
        for _ in range(rng.poisson(mean * scale)):
            y = scene.horizon + (h - scene.horizon) * rng.uniform(0.1, 1.0)
            left, right = scene.road_x(y)
            margin = scene.h * scene.depth(y) * (rng.uniform(0.05, 0.15) if at_curb else rng.uniform(0.1, 0.8))
            x = left - margin if rng.random() < 0.5 else right + margin
            objects.append((y, kind, x))
    objects.sort(key=lambda o: o[0])
    return objects


DRAWERS = {CAR: draw_car, PERSON: draw_person, POLE: draw_pole, VEGETATION: draw_tree}
