"""Stage 3 of the generator: the geometric warps of a logo layer (scale, rotation, perspective tilt, cylinder
and cloth), applied to its pixels and to its mask alike."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Warp:
    """Perspective view of a mark, optionally wrapped round a cylinder or rippled like cloth.

    `homography` maps the mark's centred pixel coordinates to the scene (before `fit` and `offset`); the cylinder
    (`cylinder` radians of arc on each side of the centre, about a vertical axis, or horizontal if `cylinder_axis`
    is 1) and the ripples (`ripple`: amplitude, frequency and phase per axis, in half-sizes) bend the mark first.
    """

    homography: np.ndarray
    size: tuple[int, int]
    cylinder: float
    cylinder_axis: int
    ripple: np.ndarray | None

    def margin(self) -> float:
        return 0.0 if self.ripple is None else float(self.ripple[:, 0].max())

    def corners(self) -> np.ndarray:
        h, w = self.size
        grow = 1 + self.margin()
        local = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) / 2 * grow
        projected = np.c_[local, np.ones(4)] @ self.homography.T
        return projected[:, :2] / projected[:, 2:]

    def apply(self, layer: np.ndarray, fit: float, offset: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """Sample `layer` (bilinear, premultiplied) at the scene pixels of `box`; also shades cylinders and cloth."""
        x0, y0, x1, y1 = box
        h, w = self.size
        xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - offset[0]) / fit)[None, :]
        ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - offset[1]) / fit)[:, None]
        m = np.linalg.inv(self.homography).astype(np.float32)
        depth = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
        depth[depth <= 0] = np.nan  # nothing behind the camera
        u = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / (depth * (w / 2))
        v = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / (depth * (h / 2))
        shade = None
        if self.cylinder:
            along = (u, v)[self.cylinder_axis]
            angle = np.arcsin(np.clip(along * math.sin(self.cylinder), -1, 1))
            shade = 0.55 + 0.45 * np.cos(angle - 0.3 * self.cylinder)
            if self.cylinder_axis == 0:
                u = angle / self.cylinder
            else:
                v = angle / self.cylinder
        if self.ripple is not None:
            (au, fu, pu), (av, fv, pv) = self.ripple.astype(np.float32)
            phase_u, phase_v = fu * math.pi * v + pu, fv * math.pi * u + pv
            u, v = u + au * np.sin(phase_u), v + av * np.sin(phase_v)
            folds = 1 + 2.5 * au * np.cos(phase_u)
            shade = folds if shade is None else shade * folds
        patch = _bilinear(layer, u * (w / 2) + (w / 2 - 0.5), v * (h / 2) + (h / 2 - 0.5))
        if shade is not None:  # NaN behind the camera, where the patch is empty: 0 × NaN would poison the scene
            patch[..., :3] *= np.nan_to_num(shade, nan=1.0)[..., None]
        return patch


def _random_warp(rng: np.random.Generator, size: tuple[int, int]) -> _Warp:
    h, w = size
    roll = rng.normal(0, math.radians(10)) if rng.random() < 0.8 else rng.uniform(-math.radians(40), math.radians(40))
    tilt_x, tilt_y = np.clip(rng.normal(0, math.radians(20), 2), -math.radians(55), math.radians(55))
    distance = max(h, w) * rng.uniform(1.5, 4.0)
    cz, sz = math.cos(roll), math.sin(roll)
    cx, sx = math.cos(tilt_x), math.sin(tilt_x)
    cy, sy = math.cos(tilt_y), math.sin(tilt_y)
    rotation = (
        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    )
    # A plane through (0, 0, distance) seen by a pinhole camera with focal length `distance`: about 1:1 at the centre.
    homography = np.diag([distance, distance, 1.0]) @ np.c_[rotation[:, :2], [0, 0, distance]]
    cylinder = rng.uniform(0.5, 1.2) if rng.random() < 0.2 else 0.0
    cylinder_axis = int(rng.random() < 0.2)
    ripple = None
    if rng.random() < 0.2:
        ripple = np.stack(
            [rng.uniform(0.02, 0.07, 2), rng.uniform(1.0, 3.0, 2), rng.uniform(0, 2 * math.pi, 2)], axis=1
        )
    return _Warp(homography, (h, w), cylinder, cylinder_axis, ripple)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample `image` `(h, w, c)` at float pixel coordinates (centres at integers, NaN allowed); zero outside."""
    h, w, channels = image.shape
    out = np.zeros((*x.shape, channels), np.float32)
    inside = (x > -1) & (x < w) & (y > -1) & (y < h)  # only these touch the image (NaN compares False)
    x, y = x[inside] + 1, y[inside] + 1  # coordinates in the zero-padded image, in (0, w + 1) x (0, h + 1)
    x0, y0 = x.astype(np.intp), y.astype(np.intp)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    flat = np.pad(image, ((1, 1), (1, 1), (0, 0))).reshape(-1, channels)
    corners = [np.take(flat, y0 * (w + 2) + x0 + step, axis=0) for step in (0, 1, w + 2, w + 3)]
    top = corners[0] + (corners[1] - corners[0]) * fx
    bottom = corners[2] + (corners[3] - corners[2]) * fx
    out[inside] = top + (bottom - top) * fy
    return out
