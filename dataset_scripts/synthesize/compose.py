"""Stage 2 of the generator: compose one scene (a background photo or surface, the logo layers, occluders,
lighting), with every logo's box measured on its visible mask, in a visual world ([`worlds`]) if asked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from dataset_scripts.voc import UNKNOWN_LOGO

from . import worlds
from .warp import _random_warp
from .worlds import BACKGROUNDS


# Scene mix. Areas are fractions of the image covered by a mark's (pre-warp) rectangle.
_PRIMARY_AREA = (0.05, 0.5)
_EXTRA_AREA = (0.03, 0.2)
_P_EXTRA_BRANDS = 0.25  # one or two logos of other brands of the set
_P_SECOND_COPY = 0.1  # the same logo twice
_P_DISTRACTOR = 0.3  # an unlabelled mark of a brand outside the set
_DISTRACTOR_BRANDS = 64
_VISIBLE = 0.5  # opacity from which a pixel counts as part of a logo


class InvisibleMarkError(ValueError):
    """[`compose_scene`] drew 20 scenes and the mark stayed visible in none: an almost transparent mark, or one that
    the drawn world hides (a dark mark in low light, say). The generator skips that image and counts it."""


@dataclass(frozen=True)
class SceneObject:
    """A logo in a scene: a brand's (`name` is its folder) or a distractor's (`name` is `UNKNOWN_LOGO`).

    `box` is `(xmin, ymin, xmax, ymax)` as in the module doc: the bounding box of `mask`, the `(H, W)` boolean mask
    of the logo's visible pixels.
    """

    name: str
    box: tuple[int, int, int, int]
    mask: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Scene:
    """A composed image, its labelled logos and the JPEG quality it is meant to be saved with."""

    image: Image.Image
    objects: list[SceneObject]
    jpeg_quality: int


# ----------------------------------------------------------------------------------------------- scene composition


@cache
def _background_images() -> tuple[Image.Image, ...]:
    """The background photos ("L" or "RGB"), at most 768 px on a side: crops are never smaller than a third."""
    import skimage.data

    images = []
    for name in BACKGROUNDS:
        pixels = getattr(skimage.data, name)()
        image = Image.fromarray(pixels if pixels.ndim == 2 else pixels[..., :3])
        image.thumbnail((768, 768), Image.BILINEAR)
        images.append(image)
    return tuple(images)


def compose_scene(
    mark: np.ndarray,
    label: str,
    rng: np.random.Generator,
    *,
    image_size: int = 320,
    extras: Sequence[tuple[np.ndarray, str]] = (),
    distractor: np.ndarray | None = None,
    photo_family: str | None = None,
    style: str = "pasted",
) -> Scene:
    """Paste `mark` (an `(H, W, 4)` uint8 RGBA array) labelled `label` into a random scene, plus `extras`.

    `extras` are more labelled `(mark, label)` pairs, `distractor` a mark of no brand of the set (its object, if it
    stays visible, is named `UNKNOWN_LOGO`). The image's long side is
    `image_size` pixels. Extra logos that find no free spot are left out. All randomness comes from `rng`, and
    none of it depends on pixel values, so recolouring a mark changes the pixels it covers and nothing else.

    `photo_family` (a name of [`~.worlds.PHOTO_FAMILIES`]) is where the background comes from; `None` is the
    original mix, a scikit-image photo (80%) or a surface. `style` is a name of [`~.worlds.COMPOSITION_STYLES`].
    """
    if photo_family is not None and photo_family not in worlds.PHOTO_FAMILIES:
        worlds.resolve_photo_families([photo_family])  # raises, listing the valid names
    worlds.resolve_styles([style])
    look = worlds.COMPOSITION_STYLES[style]
    for _ in range(20):
        scene = _compose(mark, label, rng, image_size, extras, distractor, photo_family, look)
        if scene.objects and scene.objects[0].name == label and scene.objects[0].mask.sum() >= 16:
            return scene
    raise InvisibleMarkError(f"could not make {label!r} visible in 20 scenes: is the mark almost transparent?")


def _compose(mark, label, rng, image_size, extras, distractor, family, style: worlds.Style) -> Scene:
    """One attempt of [`compose_scene`]; the first logo may come out too small or hidden."""
    long, short = image_size, round(image_size / rng.uniform(1.0, 4 / 3))
    height, width = (short, long) if rng.random() < 0.65 else (long, short)
    canvas = _background(rng, height, width, family)
    look: worlds.Look = {}  # what the style's hooks share within this scene
    if style.scene is not None:
        style.scene(canvas, rng, look)
    image_area = height * width
    objects: list[tuple[str, np.ndarray]] = []
    occupied: list[tuple[int, int, int, int]] = []
    several = len(extras) > 0
    for i, (logo, name) in enumerate([(mark, label), *extras]):
        low, high = (style.extra_area or _EXTRA_AREA) if several else (style.primary_area or _PRIMARY_AREA)
        area = math.exp(rng.uniform(math.log(low), math.log(high))) * image_area
        pasted = _paste(canvas, logo, rng, area, occupied, objects, 1 if i == 0 else 12, style, look)
        if pasted is not None:
            objects.append((name, pasted))
    unlabelled: list[tuple[str, np.ndarray]] = []
    if distractor is not None:
        low, high = style.extra_area or _EXTRA_AREA
        area = math.exp(rng.uniform(math.log(low), math.log(high))) * image_area
        pasted = _paste(canvas, distractor, rng, area, occupied, objects, 12, style, look)
        if pasted is not None:
            unlabelled.append((UNKNOWN_LOGO, pasted))
    if rng.random() < 0.15:
        _occlude(canvas, rng, objects, also_hidden=[mask for _, mask in unlabelled], family=family)
    if style.finish is not None:
        style.finish(canvas, rng, look)
    image = _finish(canvas, rng)
    scene_objects = [SceneObject(name, _box(mask), mask) for name, mask in objects + unlabelled if mask.any()]
    return Scene(image, scene_objects, int(rng.integers(40, 96)))


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _background(rng: np.random.Generator, height: int, width: int, family: str | None = None) -> np.ndarray:
    """A float32 `(height, width, 3)` RGB scene in [0, 1]: a crop of a photo of `family`, or a plain textured
    surface (family `"surfaces"`); without a family, a scikit-image photo (80%) or a surface."""
    gain = (rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, 3)).astype(np.float32)
    photo = rng.random() < 0.8
    if family is not None:
        photo = family != "surfaces"
    if photo:
        photos = _background_images() if family in (None, "scikit-image") else worlds.family_images(family)
        photo = photos[rng.integers(len(photos))]
        aspect = width / height
        crop_h = rng.uniform(0.3, 1.0) * min(photo.height, photo.width / aspect)
        crop_w = crop_h * aspect
        top, left = rng.uniform(0, photo.height - crop_h), rng.uniform(0, photo.width - crop_w)
        crop = photo.resize((width, height), Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = np.asarray(crop, dtype=np.float32)
        if pixels.ndim == 2:  # a grey photo: tint it
            pixels = pixels[..., None]
            gain *= rng.uniform(0.75, 1.0, 3).astype(np.float32)
        scene = pixels * (gain / 255)
    else:
        colours = rng.uniform(0, 1, (2, 3)).astype(np.float32)
        colours = 0.5 * colours + 0.5 * colours.mean(-1, keepdims=True)  # painted walls and card, not neon
        t = (_gradient(rng, height, width, 1.0) - 0.5).clip(0, 1)[..., None]
        blotches = Image.fromarray(rng.normal(0, 1, (4, 4)).astype(np.float32)).resize((width, height), Image.BICUBIC)
        grain = rng.standard_normal((height, width, 1), dtype=np.float32) * 0.02
        scene = (colours[0] + (colours[1] - colours[0]) * t) * (1 + 0.08 * np.asarray(blotches)[..., None]) + grain
        scene *= gain
    return np.clip(scene, 0, 1, out=scene)


def _logo_layer(
    mark: np.ndarray,
    rng: np.random.Generator,
    area: float,
    max_size: tuple[int, int],
    style: worlds.Style | None = None,
    look: worlds.Look | None = None,
) -> np.ndarray:
    """The mark resized to cover about `area` pixels, colour-jittered, restyled, maybe on a plate.

    Returns float32 `(h, w, 5)`: premultiplied RGB, opacity of the whole layer, opacity of the mark alone.
    """
    h, w = mark.shape[:2]
    largest = min(0.9 * max_size[1] / w, 0.9 * max_size[0] / h)
    scale = min(max(math.sqrt(area / (h * w)), 12 / min(h, w)), largest)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    rgba = np.asarray(Image.fromarray(mark).resize(size, Image.BICUBIC, reducing_gap=2.0), dtype=np.float32) / 255
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if rng.random() < 0.1:
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    else:  # saturation, then per-channel gain
        saturation = rng.uniform(0.6, 1.3)
        rgb = grey[..., None] + saturation * (rgb - grey[..., None])
    rgb = np.clip(rgb * (rng.uniform(0.75, 1.15) * rng.uniform(0.92, 1.08, 3)).astype(np.float32), 0, 1)
    layer = np.concatenate([rgb * alpha[..., None], alpha[..., None], alpha[..., None]], axis=-1)
    if style is not None and style.mark is not None:
        layer = style.mark(layer, rng, look)
    if rng.random() < 0.15:
        layer = _on_plate(layer, rng)
    return layer


def _on_plate(layer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put a layer on a white or coloured sticker (rounded rectangle or ellipse) with a margin around it."""
    h, w = layer.shape[:2]
    ellipse = rng.random() < 0.3
    margin = rng.uniform(0.1, 0.3) * max(h, w) + (0.25 * max(h, w) if ellipse else 0)
    pad = round(margin)
    colour = np.ones(3, np.float32) if rng.random() < 0.5 else rng.uniform(0, 1, 3).astype(np.float32)
    radius = rng.uniform(0, 0.3) * min(h, w)
    plate = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
    draw = ImageDraw.Draw(plate)
    if ellipse:
        draw.ellipse((0, 0, plate.width - 1, plate.height - 1), fill=255)
    else:
        draw.rounded_rectangle((0, 0, plate.width - 1, plate.height - 1), radius=radius, fill=255)
    plate_alpha = np.asarray(plate, dtype=np.float32)[..., None] / 255
    padded = np.pad(layer, ((pad, pad), (pad, pad), (0, 0)))
    below = 1 - padded[..., 3:4]
    padded[..., :3] += below * plate_alpha * colour
    padded[..., 3:4] += below * plate_alpha
    return padded


def _paste(
    canvas: np.ndarray,
    mark: np.ndarray,
    rng: np.random.Generator,
    area: float,
    occupied: list[tuple[int, int, int, int]],
    objects: list[tuple[str, np.ndarray]],
    tries: int,
    style: worlds.Style | None = None,
    look: worlds.Look | None = None,
) -> np.ndarray | None:
    """Warp a mark onto `canvas` in place, somewhere not in `occupied`; return its visible mask (None: no room).

    Masks in `objects` lose the pixels the new layer covers.
    """
    style = style if style is not None else worlds.COMPOSITION_STYLES["pasted"]
    height, width = canvas.shape[:2]
    layer = _logo_layer(mark, rng, area, (height, width), style, look)
    warp = _random_warp(rng, layer.shape[:2])
    corners = warp.corners()
    extent = corners.max(0) - corners.min(0)
    fit = min(1.0, 0.95 * width / extent[0], 0.95 * height / extent[1])
    corners = corners * fit
    low, high = corners.min(0), corners.max(0)
    chance, share = style.truncate
    slack = share * (high - low) if rng.random() < chance else np.zeros(2)  # sometimes cut by the image border
    room = 4 + style.margin  # for blur
    for _ in range(tries):
        offset = rng.uniform(-low - slack, (width, height) - high + slack)
        if style.border and rng.random() < style.border:  # across a border, 10-60% of it outside the image
            axis, outside = rng.integers(2), rng.uniform(0.1, 0.6) * (high - low)
            start = rng.random() < 0.5
            offset[axis] = -low[axis] - outside[axis] if start else (width, height)[axis] - high[axis] + outside[axis]
        x0, y0 = np.floor(low + offset).astype(int) - room
        x1, y1 = np.ceil(high + offset).astype(int) + room
        box = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
        if not any(_overlap(box, other) for other in occupied):
            break
    else:
        return None
    occupied.append(box)
    bx0, by0, bx1, by1 = box
    patch = warp.apply(layer, fit, offset, box)
    _light_patch(patch, rng, canvas[by0:by1, bx0:bx1])
    if style.patch is not None:
        style.patch(patch, rng, look, canvas[by0:by1, bx0:bx1], box)
    region = canvas[by0:by1, bx0:bx1]
    region *= 1 - patch[..., 3:4]
    region += patch[..., :3]
    np.clip(region, 0, 1, out=region)
    covered = patch[..., 3] >= _VISIBLE
    for _, other in objects:
        other[by0:by1, bx0:bx1] &= ~covered
    mask = np.zeros((height, width), bool)
    mask[by0:by1, bx0:bx1] = patch[..., 4] >= _VISIBLE
    return mask


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _light_patch(patch: np.ndarray, rng: np.random.Generator, surface: np.ndarray) -> None:
    """In place: glare or shadow gradient, a specular spot, print-through of the surface, blur."""
    h, w = patch.shape[:2]
    rgb, alpha = patch[..., :3], patch[..., 3:4]
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    if rng.random() < 0.4:
        angle = rng.uniform(0, 2 * math.pi)
        t = ((xs - w / 2) * math.cos(angle) + (ys - h / 2) * math.sin(angle)) / max(h, w)
        rgb *= (1 + rng.uniform(-0.8, 0.8) * t)[..., None].clip(0.3, 1.6)
    if rng.random() < 0.2:
        cx, cy, sigma = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.4) * max(h, w)
        spot = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
        rgb += alpha * (rng.uniform(0.3, 0.8) * spot)[..., None]
    if rng.random() < 0.3:
        luminance = surface.mean(-1, keepdims=True)
        rgb *= 1 - rng.uniform(0.2, 0.6) * (1 - luminance / max(float(luminance.mean()), 0.05)).clip(-1, 1)
    np.minimum(rgb, alpha, out=rgb)
    np.maximum(rgb, 0, out=rgb)
    if rng.random() < 0.25:
        sigma = rng.uniform(0.4, 1.5)
        patch[:] = ndimage.gaussian_filter(patch, (sigma, sigma, 0), mode="constant")


def _occlude(
    canvas: np.ndarray,
    rng: np.random.Generator,
    objects: list[tuple[str, np.ndarray]],
    also_hidden: Sequence[np.ndarray] = (),
    family: str | None = None,
) -> None:
    """Cover part of the first logo with an ellipse of flat colour or photo texture, unless it would hide too much
    of a labelled logo; the masks in `also_hidden` (the distractor's) lose the covered pixels too."""
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = _box(objects[0][1]) if objects[0][1].any() else (0, 0, width, height)
    side = rng.integers(4)
    cx = rng.uniform(x0, x1) if side < 2 else (x0, x1)[side - 2]
    cy = (y0, y1)[side] if side < 2 else rng.uniform(y0, y1)
    rx, ry = rng.uniform(0.15, 0.4) * max(x1 - x0, 8), rng.uniform(0.15, 0.4) * max(y1 - y0, 8)
    ys, xs = np.ogrid[0:height, 0:width]
    inside = ((xs + 0.5 - cx) / rx) ** 2 + ((ys + 0.5 - cy) / ry) ** 2
    cover = np.clip((1.15 - inside) / 0.3, 0, 1).astype(np.float32)  # soft edge
    colour = rng.uniform(0, 1, 3).astype(np.float32)
    texture = _background(rng, height, width, family) if rng.random() < 0.5 else colour
    hidden = cover >= _VISIBLE
    if any((mask & ~hidden).sum() < 0.6 * mask.sum() for _, mask in objects):
        return
    canvas[:] = canvas * (1 - cover[..., None]) + texture * cover[..., None]
    for mask in [mask for _, mask in objects] + list(also_hidden):
        mask &= ~hidden


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Whole-image lighting, colour cast (or grey), blur and sensor noise; returns an RGB image."""
    height, width = canvas.shape[:2]
    canvas *= rng.uniform(0.93, 1.07, 3).astype(np.float32)
    if rng.random() < 0.05:
        canvas[:] = canvas.mean(-1, keepdims=True)
    if rng.random() < 0.3:
        canvas *= _gradient(rng, height, width, rng.uniform(-0.6, 0.6))[..., None]
    image = Image.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8))
    if rng.random() < 0.25:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.5:
        sigma = rng.uniform(1, 7)
        noise = rng.standard_normal((height, width, 1 if rng.random() < 0.5 else 3), dtype=np.float32) * sigma
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
    return image


def _gradient(rng: np.random.Generator, height: int, width: int, strength: float) -> np.ndarray:
    """A float32 `(height, width)` linear ramp in a random direction: 1 at the centre, 1 ± strength/2 at the ends."""
    angle = rng.uniform(0, 2 * math.pi)
    xs = (np.arange(width, dtype=np.float32) - width / 2) * (math.cos(angle) / max(height, width))
    ys = (np.arange(height, dtype=np.float32) - height / 2) * (math.sin(angle) / max(height, width))
    return 1 + strength * (xs[None, :] + ys[:, None])
