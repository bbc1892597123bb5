"""Generate the default logo benchmark: real brand marks pasted into CC0 photos, in LogoDet-3K's on-disk layout.

LogoDet-3K cannot be downloaded everywhere, so this script builds a stand-in from real brand marks
([`dataset_scripts.logo_sources`]) that the same builder reads:

```
<out>/<Category>/<BrandFolder>/1.jpg, 1.xml, 2.jpg, 2.xml, ...
<out>/LICENSES.md
```

- `Category` is one of LogoDet-3K's nine ([`CATEGORIES`]), fixed per brand by a SHA-256 of the brand's slug.
- `BrandFolder` is the brand's title, kept readable ([`~dataset_scripts.logo_sources.folder_name`]: `AT&T`,
  `McDonald's`, `Café`). A brand with several genuinely different designs gets `Brand` for the first design and
  `Brand-1`, `Brand-2` for the others, as LogoDet-3K does; each folder only shows its own design.
- Each `<n>.xml` is Pascal VOC (UTF-8): `folder`, `filename`, `size` and one `object` (`name`, `bndbox`) per
  labelled logo. Most images hold one logo of the folder's design; some add one or two logos of other brands of
  the set (labelled with *their* folder names) or a second copy of the same logo, and some add a distractor mark
  from a brand outside the set, boxed as [`~dataset_scripts.voc.UNKNOWN_LOGO`]: a logo of no brand of the set, which
  a logo localiser must find and a gallery must call unknown.

**Boxes** are 0-based pixel coordinates, `xmin`/`ymin` the first column/row of the logo and `xmax`/`ymax` the last
column/row + 1 (so `xmax - xmin` is the width), clipped to the image. A box is the bounding box of the logo's
*visible* mask: the pixels where the mark's opacity is at least 0.5 after every geometric warp (scale, rotation,
perspective tilt, cylinder and cloth warps), minus pixels hidden by an occluder or another logo. A plate or
sticker behind a mark is not part of its box.

**Scenes** are crops of the CC0 / public-domain photos bundled with scikit-image ([`BACKGROUNDS`]) or plain
textured surfaces, with colour shifts and flips. Logos get colour jitter, plates, perspective, cylinder and cloth
warps, glare and shadow gradients, print-through of the surface, blur and partial occlusion; whole images get
lighting, blur, noise and JPEG compression at quality 40-95.

**Reproducibility**: each image has its own random generator seeded from `(seed, folder, n)`, so the files are
byte-identical for the same arguments whatever the number of worker processes (given the same package versions).

**Licences**: marks are used only if CC0-1.0 (see `logo_sources`); `LICENSES.md` in the output lists the sources,
their versions and licences, and every mark used. The marks are trademarks of their owners, used here only to
benchmark logo recognition; the generated images must not suggest any endorsement.

```bash
python -m dataset_scripts.synthesize --out data/synthetic-logos --brands 300 --images-per-brand 12 --seed 0 \\
    --preview data/synthetic-logos-preview.png
```
"""

import argparse
import hashlib
import math
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage
from tqdm.auto import tqdm

from dataset_scripts.logo_sources import (
    ICONIFY_LOGOS,
    SIMPLE_ICONS,
    Brand,
    MarkSourceError,
    Source,
    default_cache_dir,
    load_mark,
    load_marks,
    render_brand,
)
from dataset_scripts.voc import CATEGORIES, UNKNOWN_LOGO, read_voc, write_voc


#: Background photos: `skimage.data` images that ship with scikit-image (no download), with their licences.
BACKGROUNDS = {
    "astronaut": "public domain (NASA)",
    "brick": "CC0 (CC0Textures)",
    "camera": "CC0 (Lav Varshney)",
    "cell": "CC0",
    "chelsea": "CC0 (Stefan van der Walt)",
    "clock": "public domain (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 (Häggström, Mikael)",
    "rocket": "public domain (SpaceX)",
    "text": "public domain",
}

# Scene mix. Areas are fractions of the image covered by a mark's (pre-warp) rectangle.
_PRIMARY_AREA = (0.05, 0.5)
_EXTRA_AREA = (0.03, 0.2)
_P_EXTRA_BRANDS = 0.25  # one or two logos of other brands of the set
_P_SECOND_COPY = 0.1  # the same logo twice
_P_DISTRACTOR = 0.3  # an unlabelled mark of a brand outside the set
_DISTRACTOR_BRANDS = 64
_VISIBLE = 0.5  # opacity from which a pixel counts as part of a logo


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


@dataclass(frozen=True)
class DesignPlan:
    """One output folder: a design of a selected brand, where it goes and how many images it gets."""

    brand: str
    title: str
    folder: str
    category: str
    source: str
    name: str
    package: str
    licence: str
    mark: Path
    num_images: int


@dataclass
class SynthesisSummary:
    """What [`synthesize`] wrote, how long it took and what it skipped, by reason.

    `seconds` is the whole run; `image_seconds` the image generation alone (without loading and rendering marks).
    """

    out_dir: Path
    brands: int
    designs: int
    brands_with_several_designs: int
    images: int
    objects: int
    seconds: float
    image_seconds: float
    skipped: dict[str, int]

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.image_seconds, 1e-9)

    def __str__(self) -> str:
        licences = {reason: n for reason, n in self.skipped.items() if reason.startswith("licence ")}
        other = sorted((n, reason) for reason, n in self.skipped.items() if reason not in licences)
        skipped = [f"{sum(licences.values())} icons not under CC0-1.0"] * bool(licences)
        skipped += [f"{n} × {reason}" for n, reason in reversed(other)]
        lines = [
            f"Wrote {self.images} images ({self.objects} labelled logos) of {self.designs} designs of {self.brands} "
            f"brands ({self.brands_with_several_designs} with several designs) to {self.out_dir}",
            f"in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s once the marks were ready).",
        ]
        if skipped:
            lines.append("Skipped: " + ", ".join(skipped) + ".")
        return "\n".join(lines)


def stable_hash(text: str) -> int:
    """A 64-bit hash of `text` that, unlike `hash()`, is the same in every process and run."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def category_of(slug: str) -> str:
    """The LogoDet-3K category a brand is filed under."""
    return CATEGORIES[stable_hash(slug) % len(CATEGORIES)]


def split_images(total: int, designs: int) -> list[int]:
    """Spread `total` images over at most `designs` designs, earlier designs first, each design at least one."""
    used = max(1, min(designs, total))
    return [total // used + (i < total % used) for i in range(used)]


def plan_designs(
    brands: Sequence[Brand],
    num_brands: int,
    images_per_brand: int,
    seed: int,
    cache_dir: str | Path | None = None,
    skipped: Counter | None = None,
    pool: Pool | None = None,
    allow_fewer: bool = False,
) -> tuple[list[DesignPlan], list[Path]]:
    """Pick `num_brands` brands (a `seed`-shuffle of `brands`) and render their designs; plan one folder per design.

    Brands whose designs all fail to render are skipped (counted in `skipped`) and the next ones taken; running out
    of brands is an error unless `allow_fewer`. Also returns rendered marks of up to 64 further brands, the
    distractors.
    """
    skipped = skipped if skipped is not None else Counter()
    order = [brands[i] for i in np.random.default_rng(seed).permutation(len(brands))]
    wanted_distractors = min(_DISTRACTOR_BRANDS, max(0, len(order) - num_brands))
    plans: list[DesignPlan] = []
    distractors: list[Path] = []
    chosen = position = 0
    map_ = pool.map if pool is not None else map
    # Render in batches of what is still missing: failures are rare, and a pool would render everything it is given.
    while (chosen < num_brands or len(distractors) < wanted_distractors) and position < len(order):
        batch = order[position : position + num_brands - chosen + wanted_distractors - len(distractors)]
        position += len(batch)
        for brand, (rendered, failures) in zip(batch, map_(_render_brand, [(b, cache_dir) for b in batch])):
            skipped.update(failures)
            if not rendered:
                skipped["brand without a renderable design"] += 1
            elif chosen < num_brands:
                chosen += 1
                counts = split_images(images_per_brand, len(rendered))
                for i, ((design, mark), count) in enumerate(zip(rendered, counts)):
                    plans.append(
                        DesignPlan(
                            brand=brand.slug,
                            title=brand.title,
                            folder=brand.folder if i == 0 else f"{brand.folder}-{i}",
                            category=category_of(brand.slug),
                            source=design.source,
                            name=design.name,
                            package=design.package,
                            licence=design.licence,
                            mark=mark,
                            num_images=count,
                        )
                    )
            elif len(distractors) < wanted_distractors:
                distractors.append(rendered[0][1])
    if chosen < num_brands and not allow_fewer:
        raise ValueError(f"asked for {num_brands} brands but only {chosen} have a renderable design")
    return plans, distractors


def _render_brand(args: tuple[Brand, str | Path | None]):
    failures: Counter = Counter()
    return render_brand(*args, skipped=failures), failures


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
) -> Scene:
    """Paste `mark` (an `(H, W, 4)` uint8 RGBA array) labelled `label` into a random scene, plus `extras`.

    `extras` are more labelled `(mark, label)` pairs, `distractor` a mark of no brand of the set (its object, if it
    stays visible, is named `UNKNOWN_LOGO`). The image's long side is
    `image_size` pixels. Extra logos that find no free spot are left out. All randomness comes from `rng`, and
    none of it depends on pixel values, so recolouring a mark changes the pixels it covers and nothing else.
    """
    for _ in range(20):
        scene = _compose(mark, label, rng, image_size, extras, distractor)
        if scene.objects and scene.objects[0].name == label and scene.objects[0].mask.sum() >= 16:
            return scene
    raise ValueError(f"could not make {label!r} visible in 20 scenes: is the mark almost transparent?")


def _compose(mark, label, rng, image_size, extras, distractor) -> Scene:
    """One attempt of [`compose_scene`]; the first logo may come out too small or hidden."""
    long, short = image_size, round(image_size / rng.uniform(1.0, 4 / 3))
    height, width = (short, long) if rng.random() < 0.65 else (long, short)
    canvas = _background(rng, height, width)
    image_area = height * width
    objects: list[tuple[str, np.ndarray]] = []
    occupied: list[tuple[int, int, int, int]] = []
    several = len(extras) > 0
    for i, (logo, name) in enumerate([(mark, label), *extras]):
        low, high = _EXTRA_AREA if several else _PRIMARY_AREA
        area = math.exp(rng.uniform(math.log(low), math.log(high))) * image_area
        pasted = _paste(canvas, logo, rng, area, occupied, objects, tries=1 if i == 0 else 12)
        if pasted is not None:
            objects.append((name, pasted))
    unlabelled: list[tuple[str, np.ndarray]] = []
    if distractor is not None:
        area = math.exp(rng.uniform(math.log(_EXTRA_AREA[0]), math.log(_EXTRA_AREA[1]))) * image_area
        pasted = _paste(canvas, distractor, rng, area, occupied, objects, tries=12)
        if pasted is not None:
            unlabelled.append((UNKNOWN_LOGO, pasted))
    if rng.random() < 0.15:
        _occlude(canvas, rng, objects, also_hidden=[mask for _, mask in unlabelled])
    image = _finish(canvas, rng)
    scene_objects = [SceneObject(name, _box(mask), mask) for name, mask in objects + unlabelled if mask.any()]
    return Scene(image, scene_objects, int(rng.integers(40, 96)))


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float32 `(height, width, 3)` RGB scene in [0, 1]: a photo crop (80%) or a plain textured surface."""
    gain = (rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, 3)).astype(np.float32)
    if rng.random() < 0.8:
        photos = _background_images()
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


def _logo_layer(mark: np.ndarray, rng: np.random.Generator, area: float, max_size: tuple[int, int]) -> np.ndarray:
    """The mark resized to cover about `area` pixels, colour-jittered, maybe on a plate.

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
) -> np.ndarray | None:
    """Warp a mark onto `canvas` in place, somewhere not in `occupied`; return its visible mask (None: no room).

    Masks in `objects` lose the pixels the new layer covers.
    """
    height, width = canvas.shape[:2]
    layer = _logo_layer(mark, rng, area, (height, width))
    warp = _random_warp(rng, layer.shape[:2])
    corners = warp.corners()
    extent = corners.max(0) - corners.min(0)
    fit = min(1.0, 0.95 * width / extent[0], 0.95 * height / extent[1])
    corners = corners * fit
    low, high = corners.min(0), corners.max(0)
    slack = 0.25 * (high - low) if rng.random() < 0.1 else np.zeros(2)  # sometimes cut by the image border
    for _ in range(tries):
        offset = rng.uniform(-low - slack, (width, height) - high + slack)
        x0, y0 = np.floor(low + offset).astype(int) - 4  # room for blur
        x1, y1 = np.ceil(high + offset).astype(int) + 4
        box = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
        if not any(_overlap(box, other) for other in occupied):
            break
    else:
        return None
    occupied.append(box)
    bx0, by0, bx1, by1 = box
    patch = warp.apply(layer, fit, offset, box)
    _light_patch(patch, rng, canvas[by0:by1, bx0:bx1])
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
    texture = _background(rng, height, width) if rng.random() < 0.5 else colour
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


# ------------------------------------------------------------------------------------------------- writing files


@dataclass(frozen=True)
class _Job:
    """What a worker needs to draw any image of the set."""

    out_dir: Path
    plans: tuple[DesignPlan, ...]
    distractors: tuple[Path, ...]
    seed: int
    image_size: int


_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _JOB
    _JOB = job
    _background_images()


@lru_cache(maxsize=512)
def _mark(path: Path) -> np.ndarray:
    return load_mark(path)


def _generate_image(job: _Job, design_index: int, n: int) -> int:
    """Compose and write image `n` (1-based) of design `design_index`; return its number of labelled logos."""
    plan = job.plans[design_index]
    rng = np.random.default_rng([job.seed, stable_hash(plan.folder), n])
    extras = []
    if rng.random() < _P_EXTRA_BRANDS:
        others = [i for i, other in enumerate(job.plans) if other.brand != plan.brand]
        if others:
            picks = rng.choice(others, size=min(len(others), 1 + int(rng.random() < 0.3)), replace=False)
            extras = [(_mark(job.plans[i].mark), job.plans[i].folder) for i in picks]
    elif rng.random() < _P_SECOND_COPY:
        extras = [(_mark(plan.mark), plan.folder)]
    distractor = None
    if job.distractors and rng.random() < _P_DISTRACTOR:
        distractor = _mark(job.distractors[rng.integers(len(job.distractors))])
    scene = compose_scene(
        _mark(plan.mark), plan.folder, rng, image_size=job.image_size, extras=extras, distractor=distractor
    )
    folder = job.out_dir / plan.category / plan.folder
    scene.image.save(folder / f"{n}.jpg", quality=scene.jpeg_quality)
    write_voc(folder / f"{n}.xml", plan.folder, f"{n}.jpg", scene.image.size, [(o.name, o.box) for o in scene.objects])
    return sum(o.name != UNKNOWN_LOGO for o in scene.objects)


def _generate(task: tuple[int, int]) -> int:
    return _generate_image(_JOB, *task)


def synthesize(
    out_dir: str | Path,
    num_brands: int | None = 300,
    images_per_brand: int = 12,
    seed: int = 0,
    workers: int | None = None,
    image_size: int = 320,
    source: Source = "both",
    cache_dir: str | Path | None = None,
    preview: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    brand_filter: Callable[[Brand], bool] | None = None,
) -> SynthesisSummary:
    """Generate the benchmark into `out_dir` (layout in the module doc) and return a summary.

    Args:
        out_dir: Output root; must not already hold a generated set unless `overwrite`.
        num_brands: Brands to draw, picked by a `seed`-shuffle of all usable brands; `None` takes them all but the
            64 kept as unlabelled distractors (the large training set: about 4,000 brands).
        images_per_brand: Images per brand, split over its designs (each design folder gets at least one).
        seed: Seed of the brand choice and of every image.
        workers: Processes (default: all CPUs). The output does not depend on it.
        image_size: Long side of the images, in pixels; the short side is 75-100% of it.
        source: Marks from `"simple-icons"`, `"iconify"` or `"both"`.
        cache_dir: Where the mark packages and renders are cached (default [`default_cache_dir`]).
        preview: If set, also write a contact sheet of 24 images with their boxes to this PNG.
        overwrite: Replace the category folders and `LICENSES.md` of an earlier run in `out_dir`.
        progress: Show a progress bar.
        brand_filter: Draw brands (and distractors) only among those for which it is true, e.g. the test brands of
            a split, for a demo's examples.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if (num_brands is not None and num_brands < 1) or images_per_brand < 1:
        raise ValueError("num_brands and images_per_brand must be at least 1")
    previous = [out_dir / name for name in (*CATEGORIES, "LICENSES.md") if (out_dir / name).exists()]
    if previous and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a generated set; pass overwrite=True (--overwrite) to replace it"
        )
    for path in previous:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    workers = workers or os.cpu_count() or 1

    brands, skipped = load_marks(cache_dir, source)
    if brand_filter is not None:
        brands = [brand for brand in brands if brand_filter(brand)]
    every_brand = num_brands is None
    if every_brand:
        num_brands = max(1, len(brands) - _DISTRACTOR_BRANDS)
    with _worker_pool(workers) as pool:
        plans, distractors = plan_designs(
            brands, num_brands, images_per_brand, seed, cache_dir, skipped, pool, allow_fewer=every_brand
        )
    for plan in plans:
        (out_dir / plan.category / plan.folder).mkdir(parents=True, exist_ok=True)
    _write_licences(out_dir / "LICENSES.md", plans, distractors)

    job = _Job(out_dir, tuple(plans), tuple(distractors), seed, image_size)
    generation_start = time.perf_counter()
    tasks = [(d, n) for d, plan in enumerate(plans) for n in range(1, plan.num_images + 1)]
    with _worker_pool(workers, job) as pool:
        results = pool.imap_unordered(_generate, tasks, chunksize=4) if pool else map(_generate, tasks)
        objects = sum(tqdm(results, total=len(tasks), desc="Generating images", unit="img", disable=not progress))

    designs_per_brand = Counter(plan.brand for plan in plans)
    summary = SynthesisSummary(
        out_dir=out_dir,
        brands=len(designs_per_brand),
        designs=len(plans),
        brands_with_several_designs=sum(count > 1 for count in designs_per_brand.values()),
        images=len(tasks),
        objects=objects,
        seconds=time.perf_counter() - start,
        image_seconds=time.perf_counter() - generation_start,
        skipped=dict(skipped),
    )
    if preview is not None:
        write_preview(out_dir, preview)
    return summary


@contextmanager
def _worker_pool(workers: int, job: _Job | None = None) -> Iterator[Pool | None]:
    """A pool of `workers` processes with `job` installed, or `None` (and `job` installed here) for one worker."""
    if workers == 1:
        if job is not None:
            _init_worker(job)
        yield None
        return
    initializer = (_init_worker, (job,)) if job is not None else ()
    with multiprocessing.Pool(workers, *initializer) as pool:
        yield pool
        pool.close()
        pool.join()


def _write_licences(path: Path, plans: Sequence[DesignPlan], distractors: Sequence[Path]) -> None:
    sources = Counter(plan.package for plan in plans)
    lines = [
        "# Licences of this generated logo set",
        "",
        "Generated by `dataset_scripts/synthesize.py` (modeling-logo). Every mark is a CC0-1.0 drawing from an npm",
        "package; the brands themselves are trademarks of their owners, used here only to benchmark logo",
        "recognition, with no endorsement implied.",
        "",
        f"- simple-icons: `{SIMPLE_ICONS.spec}`, CC0-1.0 (https://simpleicons.org); icons whose data entry names",
        "  another licence were left out.",
        f"- SVG Logos by Gil Barbara: `{ICONIFY_LOGOS.spec}`, CC0-1.0 (https://github.com/gilbarbara/logos).",
        "- Background photos: images bundled with scikit-image (`skimage.data`):",
        *(f"  - `{name}`: {licence}" for name, licence in BACKGROUNDS.items()),
        "",
        "Designs per package: " + ", ".join(f"`{package}`: {n}" for package, n in sorted(sources.items())) + ".",
        f"Unlabelled distractors: {len(distractors)} further marks from the same packages.",
        "",
        "| folder | category | brand | package | icon | licence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for plan in sorted(plans, key=lambda plan: (plan.category, plan.folder)):
        cells = (plan.folder, plan.category, plan.title, plan.package, plan.name, plan.licence)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_preview(out_dir: str | Path, path: str | Path, count: int = 24, columns: int = 6, cell: int = 256) -> Path:
    """Write a contact sheet of `count` generated images (a fixed sample) with their boxes and labels."""
    images = sorted(Path(out_dir).glob("*/*/*.jpg"))
    if not images:
        raise FileNotFoundError(f"no generated images under {out_dir}")
    picks = np.random.default_rng(0).choice(len(images), size=min(count, len(images)), replace=False)
    rows = math.ceil(len(picks) / columns)
    sheet = Image.new("RGB", (columns * cell, rows * cell), "white")
    font = ImageFont.load_default(size=11)
    for k, i in enumerate(sorted(picks)):
        with Image.open(images[i]) as image:
            image = image.convert("RGB")
        scale = min((cell - 4) / image.width, (cell - 4) / image.height)
        thumbnail = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        draw = ImageDraw.Draw(thumbnail)
        for name, (x0, y0, x1, y1) in read_voc(images[i].with_suffix(".xml"))[1]:
            box = (x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1)
            draw.rectangle(box, outline=(255, 0, 255), width=2)
            draw.text(
                (box[0] + 2, box[1] + 1), name, fill=(255, 255, 0), font=font, stroke_width=2, stroke_fill="black"
            )
        sheet.paste(thumbnail, ((k % columns) * cell + 2, (k // columns) * cell + 2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def main(argv: Sequence[str] | None = None) -> SynthesisSummary:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (LogoDet-3K layout)")
    parser.add_argument(
        "--brands", type=lambda text: None if text == "all" else int(text), default=300,
        help="number of brands (default: 300), or 'all' (every usable brand but 64 distractors)",
    )  # fmt: skip
    parser.add_argument("--images-per-brand", type=int, default=12, help="images per brand, over its designs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--image-size", type=int, default=320, help="long side of the images in pixels")
    parser.add_argument("--source", choices=("simple-icons", "iconify", "both"), default="both")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"mark cache (default: {default_cache_dir()})")
    parser.add_argument("--preview", type=Path, default=None, help="also write a contact sheet to this PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier generated set in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    try:
        summary = synthesize(
            args.out,
            num_brands=args.brands,
            images_per_brand=args.images_per_brand,
            seed=args.seed,
            workers=args.workers,
            image_size=args.image_size,
            source=args.source,
            cache_dir=args.cache_dir,
            preview=args.preview,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (FileExistsError, MarkSourceError) as error:
        parser.exit(1, f"error: {error}\n")
    print(summary)
    if args.preview is not None:
        print(f"Preview: {args.preview}")
    return summary


if __name__ == "__main__":
    main()
