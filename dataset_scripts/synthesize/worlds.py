"""Visual worlds of the generator: named photo families (where a scene's background comes from) and composition
styles (how a logo sits in it). Both are optional: without them a scene is composed exactly as before worlds
existed (scikit-image photos or a painted surface, 80/20, the `pasted` style).

A photo family is a set of background images with their licences: the scikit-image photos, the procedural
`surfaces`, or wallpapers shipped by a Debian package, read at run time from where the package installs them
(never copied into the repository). A family whose package is not installed is skipped with a note when every
family is asked for ([`ALL_WORLDS`]), and is an error saying what to `apt-get install` when it is named.

A composition style is a parameter set and up to four short hooks that [`~.compose.compose_scene`] calls: on the
scene before any logo (`scene`), on each logo layer before its warp (`mark`), on each warped logo patch before it is
pasted (`patch`) and on the whole canvas before the final camera stage (`finish`). No hook moves a logo's pixels
without moving its mark opacity with them, so boxes stay the bounding box of the visible mask.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage


#: Ask for every photo family that is available, or every style: `synthesize(photo_families=ALL_WORLDS, ...)`,
#: `--photo-families all`.
ALL_WORLDS = "all"

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

#: Where Debian packages install their files; tests point it at a fake tree.
DATA_ROOT = Path("/usr/share")

#: Long side of a loaded background, in pixels: crops are never smaller than a third of it.
_PHOTO_SIZE = 768


@dataclass(frozen=True)
class PhotoFile:
    """One background image of a family: its path under [`DATA_ROOT`], licence and author(s)."""

    path: str
    licence: str
    author: str


@dataclass(frozen=True)
class PhotoFamily:
    """A named source of backgrounds. `package` is the Debian package that ships `files` (`None`: no package needed);
    `photographs` is False for families of abstract renders."""

    name: str
    description: str
    licence: str
    photographs: bool
    package: str | None = None
    files: tuple[PhotoFile, ...] = field(default=(), repr=False)

    def available_files(self) -> tuple[PhotoFile, ...]:
        return tuple(file for file in self.files if (DATA_ROOT / file.path).is_file())

    @property
    def available(self) -> bool:
        return self.package is None or bool(self.available_files())

    @property
    def install(self) -> str:
        return f"apt-get install -y {self.package}" if self.package else ""


def _files(directory: str, licence: str, entries: Sequence[tuple[str, str]]) -> tuple[PhotoFile, ...]:
    return tuple(PhotoFile(f"{directory}/{name}", licence, author) for name, author in entries)


_PLASMA = "wallpapers/{}/contents/images/1920x1080.jpg"
_LOMIRI = "backgrounds"
_DESKTOP_BASE = "desktop-base/{}-theme/wallpaper/contents/images/1920x1080.svg"

#: The photo families, by name. Licences are as the packages' `debian/copyright` (and, for Plasma, each wallpaper's
#: `metadata.json`) state them; files a package ships without a stated licence are left out.
PHOTO_FAMILIES: dict[str, PhotoFamily] = {
    family.name: family
    for family in (
        PhotoFamily(
            "scikit-image",
            "the photos bundled with scikit-image (`skimage.data`)",
            "CC0 / public domain",
            True,
            files=tuple(PhotoFile(name, licence, "") for name, licence in BACKGROUNDS.items()),
        ),
        PhotoFamily("surfaces", "procedural painted walls and card (no files)", "generated", False),
        PhotoFamily(
            "lomiri",
            "photographs of Ubuntu Touch 16.04 (landscapes, plants, objects, interiors)",
            "CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0",
            True,
            "lomiri-wallpapers-16.04",
            (
                *_files(
                    _LOMIRI,
                    "CC-BY-4.0",
                    [
                        ("aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi, 2018"),
                        ("friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi, 2018"),
                        ("life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi, 2018"),
                        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi, 2018"),
                        ("sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi, 2018"),
                        ("Picture_0B_by_freespace.jpg", 'Trevor "Freespace", 2018'),
                        ("Picture_1A_by_freespace.jpg", 'Trevor "Freespace", 2018'),
                        ("Wine_by_Jakkub_Mede.jpg", "Jakub Mede, 2018"),
                    ],
                ),
                *_files(
                    _LOMIRI,
                    "CC-BY-SA-4.0",
                    [
                        ("analogpattern_by_Peter_Nerlich.jpg", "Peter Nerlich, 2018"),
                        ("Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk, 2018"),
                        ("Dragonfly_by_Bolly.jpg", '"Bolly", 2018'),
                        ("free_by_Peter_Nerlich.jpg", "Peter Nerlich, 2018"),
                        ("greentock_by_Peter_Nerlich.jpg", "Peter Nerlich, 2018"),
                    ],
                ),
                *_files(_LOMIRI, "CC0-1.0", [("seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt, 2018")]),
            ),
        ),
        PhotoFamily(
            "mate-nature",
            "close-up nature photographs of MATE (flowers, grass, water, sand, sky)",
            "GPL-2+",
            True,
            "mate-backgrounds",
            _files(
                "backgrounds/mate/nature",
                "GPL-2+",
                [
                    ("Aqua.jpg", "Charles Barbin, 2008"),
                    ("Blinds.jpg", "Lennart Poettering, 2008"),
                    ("Dune.jpg", "Marco Cogoni, 2007"),
                    ("FreshFlower.jpg", "Jens Ansorg, 2005"),
                    ("GreenMeadow.jpg", "Timothy Schellhase, 2005"),
                    ("RainDrops.jpg", '"blackcombwhistler07", 2008'),
                    ("Storm.jpg", "Sergey Nazarov, 2008"),
                    ("TwoWings.jpg", "Charles Barbin, 2008"),
                    ("Wood.jpg", "Jean-François Fortin Tam, 2008"),
                ],
            ),
        ),
        PhotoFamily(
            "plasma",
            "the photographs among KDE Plasma's wallpapers (water, piers, leaves, forest, architecture)",
            "LGPL-3 (metadata.json); GPL-2+ (debian/copyright)",
            True,
            "plasma-workspace-wallpapers",
            tuple(
                PhotoFile(
                    _PLASMA.format(name)
                    if name != "ColorfulCups"
                    else _PLASMA.format(name).replace("1920x1080", "2560x1600"),
                    "LGPL-3 (GPL-2+ in debian/copyright)",
                    author,
                )
                for name, author in [
                    ("BytheWater", "Maciej Wiklo"),
                    ("ColdRipple", "Risto Saukonpää"),
                    ("ColorfulCups", "Dmitri Popov"),
                    ("DarkestHour", "Risto Saukonpää"),
                    ("EveningGlow", "Ian Hex"),
                    ("FallenLeaf", "Martin Klapetek"),
                    ("Grey", "Sigi Sagi"),
                    ("Kite", "Risto Saukonpää"),
                    ("OneStandsOut", "Risto Saukonpää"),
                    ("Path", "Risto Saukonpää"),
                    ("summer_1am", "Risto Saukonpää"),
                ]
            ),
        ),
        PhotoFamily(
            "gnome",
            "GNOME 43's wallpapers: abstract renders and patterns (not photographs), light and dark",
            "CC-BY-SA-3.0 / GPL-2+ (debian/copyright)",
            False,
            "gnome-backgrounds",
            tuple(
                PhotoFile(
                    f"backgrounds/gnome/{name}-{shade}.webp",
                    "CC-BY-SA-3.0 / GPL-2+",
                    "GNOME artists (Jakub Steiner et al.)",
                )
                for name in ("adwaita", "grid", "licorice", "pixels", "symbolic", "truchet", "vnc", "wood")
                for shade in ("l", "d")
            ),
        ),
        PhotoFamily(
            "ukui",
            "Ubuntu Kylin's wallpapers: abstract renders (not photographs)",
            "CC-BY-SA-3.0",
            False,
            "ukui-wallpapers",
            _files(
                "backgrounds",
                "CC-BY-SA-3.0",
                [
                    (name, "Ubuntu Kylin community contributors, 2013-2020")
                    for name in (
                        "2004default.jpg",
                        "calla.png",
                        "city.png",
                        "desert.png",
                        "firstgeneration.jpg",
                        "fluent-color.png",
                        "goldfish.png",
                        "rhythm.jpg",
                        "rollpaper.png",
                        "string.jpg",
                        "the-mouse.jpg",
                    )
                ],
            ),
        ),
        PhotoFamily(
            "debian",
            "Debian's desktop themes (desktop-base): abstract vector art (not photographs), rendered from SVG",
            "GPL-2+ (spacefun: GPL-2)",
            False,
            "desktop-base",
            tuple(
                PhotoFile(_DESKTOP_BASE.format(theme), "GPL-2" if theme == "spacefun" else "GPL-2+", author)
                for theme, author in [
                    ("emerald", "Debian artwork team, 2022"),
                    ("futureprototype", "Alex Makas, 2018"),
                    ("homeworld", "Juliette Taka, 2021"),
                    ("joy", "Adrien Aubourg, 2012"),
                    ("lines", "Juliette Taka Belin, 2014-2022"),
                    ("moonlight", "Debian artwork team"),
                    ("softwaves", "Juliette Taka Belin, 2017"),
                    ("spacefun", "Valessio Brito, 2010"),
                ]
            ),
        ),
    )
}


def resolve_photo_families(names: str | Sequence[str] | None) -> tuple[tuple[str, ...] | None, list[str]]:
    """The families to draw from, and notes about families left out.

    `None` keeps the legacy mix (returns `(None, [])`); [`ALL_WORLDS`] takes every available family, with a note for
    each one that is not installed. Names may be a comma-separated string. Raises `ValueError` for an unknown name,
    or for a named family that is not installed (saying what to install).
    """
    if names is None:
        return None, []
    names = _split(names)
    if names == [ALL_WORLDS]:
        notes = [
            f"photo family {family.name!r} skipped: {family.package} is not installed ({family.install})"
            for family in PHOTO_FAMILIES.values()
            if not family.available
        ]
        return tuple(name for name, family in PHOTO_FAMILIES.items() if family.available), notes
    _check_names(names, PHOTO_FAMILIES, "photo family")
    for name in names:
        if not PHOTO_FAMILIES[name].available:
            family = PHOTO_FAMILIES[name]
            raise ValueError(
                f"photo family {name!r} needs the Debian package {family.package}: run `{family.install}` "
                f"(looked for its files under {DATA_ROOT})"
            )
    return tuple(dict.fromkeys(names)), []


def resolve_styles(names: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """The composition styles to draw from: `None` (only `pasted`, as before worlds), [`ALL_WORLDS`] or names."""
    if names is None:
        return None
    names = _split(names)
    if names == [ALL_WORLDS]:
        return tuple(COMPOSITION_STYLES)
    _check_names(names, COMPOSITION_STYLES, "composition style")
    return tuple(dict.fromkeys(names))


def _split(names: str | Sequence[str]) -> list[str]:
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [name.strip() for name in items if name.strip()]
    if not items:
        raise ValueError("empty list of worlds: give names, or 'all'")
    return items


def _check_names(names: Sequence[str], registry: dict, kind: str) -> None:
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid: {', '.join(registry)}, {ALL_WORLDS}")


@cache
def family_images(name: str, cache_dir: str | Path | None = None) -> tuple[Image.Image, ...]:
    """The backgrounds of a Debian photo family ("RGB"), at most 768 px on a side, in the registry's order.

    Decoding a 4K wallpaper takes up to a second, so the reduced images are cached as PNG (lossless: the same
    pixels as a fresh decode) under `cache_dir` (default: the mark cache), keyed by the file's path, size and time.
    """
    from dataset_scripts.logo_sources import default_cache_dir

    root = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"backgrounds-{_PHOTO_SIZE}"
    images = []
    for file in PHOTO_FAMILIES[name].available_files():
        path = DATA_ROOT / file.path
        stat = path.stat()
        key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        cached = root / f"{name}-{path.stem}-{key}.png"
        if cached.is_file():
            with Image.open(cached) as image:
                images.append(image.convert("RGB"))
            continue
        image = _load_photo(path)
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".png", delete=False) as tmp:
            image.save(tmp, format="PNG")
        os.replace(tmp.name, cached)  # atomic: workers may race to write it
        images.append(image)
    if not images:
        raise ValueError(f"photo family {name!r} has no files under {DATA_ROOT}: {PHOTO_FAMILIES[name].install}")
    return tuple(images)


def _load_photo(path: Path) -> Image.Image:
    if path.suffix == ".svg":
        import io

        import resvg_py

        png = resvg_py.svg_to_bytes(svg_path=str(path), width=_PHOTO_SIZE, skip_system_fonts=True)
        return Image.open(io.BytesIO(bytes(png))).convert("RGB")
    with Image.open(path) as image:
        image.draft("RGB", (2 * _PHOTO_SIZE, 2 * _PHOTO_SIZE))  # JPEG: decode at a reduced scale, much faster
        image = image.convert("RGB")
    image.thumbnail((_PHOTO_SIZE, _PHOTO_SIZE), Image.BILINEAR)
    return image


def describe_worlds() -> str:
    """A listing of the photo families (licence, availability, install line) and the composition styles."""
    lines = ["Photo families (--photo-families):"]
    for family in PHOTO_FAMILIES.values():
        if family.package is None:
            state = f"{len(family.files)} images" if family.files else "procedural"
        elif family.available:
            state = f"{len(family.available_files())} images, {family.package} installed"
        else:
            state = f"not installed: {family.install}"
        kind = "photographs" if family.photographs else "not photographs"
        lines.append(f"  {family.name:<13} {family.licence}; {kind}; {state}")
        lines.append(f"  {'':<13} {family.description}")
    lines.append("Composition styles (--styles):")
    lines += [f"  {style.name:<13} {style.description}" for style in COMPOSITION_STYLES.values()]
    lines.append(f"'{ALL_WORLDS}' takes every available family or every style.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- composition styles

#: A hook's per-scene state: the `scene` hook may store what later hooks of the same scene need (a blur kernel).
Look = dict


@dataclass(frozen=True)
class Style:
    """How logos sit in a scene. Areas are fractions of the image covered by a mark's pre-warp rectangle;
    `truncate` is the chance that a logo may be cut by the image border and by how much of its extent, `border`
    the chance that it is put across a border (10-60% of it outside); `margin`
    is extra room (pixels) around a pasted patch for a hook that spreads it. Hooks (all optional):

    - `scene(canvas, rng, look)`: in place, on the background before any logo;
    - `mark(layer, rng, look) -> layer`: on a logo layer (premultiplied RGB, layer opacity, mark opacity);
    - `patch(patch, rng, look, surface, box)`: in place, on a warped patch, `surface` the canvas under it;
    - `finish(canvas, rng, look)`: in place, on the canvas before the camera stage (lighting, blur, noise).
    """

    name: str
    description: str
    primary_area: tuple[float, float] | None = None  # None: the compose module's
    extra_area: tuple[float, float] | None = None
    truncate: tuple[float, float] = (0.1, 0.25)
    border: float = 0.0
    margin: int = 0
    scene: Callable | None = None
    mark: Callable | None = None
    patch: Callable | None = None
    finish: Callable | None = None


def _material(canvas: np.ndarray, rng: np.random.Generator, look: Look) -> None:
    """Fabric (a woven grid) or paper (fibres): the scene becomes the material, tinted by the photo underneath."""
    height, width = canvas.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.5:  # fabric: two sets of threads, slightly rotated
        period, angle = rng.uniform(2.5, 6), rng.uniform(-0.3, 0.3)
        u, v = xs * math.cos(angle) + ys * math.sin(angle), ys * math.cos(angle) - xs * math.sin(angle)
        weave = np.sin(2 * math.pi * u / period) * np.sin(2 * math.pi * v / period)
        texture = 1 + rng.uniform(0.08, 0.25) * weave + rng.normal(0, 0.03, (height, width)).astype(np.float32)
    else:  # paper: smoothed fibre noise
        fibres = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)).astype(np.float32), (0.7, 2.5))
        texture = 1 + rng.uniform(0.05, 0.15) * fibres / max(float(fibres.std()), 1e-6)
    colour, share = rng.uniform(0.35, 1, 3).astype(np.float32), rng.uniform(0.1, 0.5)
    canvas[:] = (share * canvas + (1 - share) * colour) * texture[..., None]
    look["texture"] = texture.astype(np.float32)
    np.clip(canvas, 0, 1, out=canvas)


def _printed(patch, rng, look, surface, box) -> None:
    """Ink on the material: its texture shows through and some of its colour mixes into the ink."""
    x0, y0, x1, y1 = box
    rgb, alpha = patch[..., :3], patch[..., 3:4]
    mix = rng.uniform(0.1, 0.35)
    rgb[:] = ((1 - mix) * rgb + mix * alpha * surface) * look["texture"][y0:y1, x0:x1, None]
    np.clip(rgb, 0, alpha, out=rgb)


def _panel(layer: np.ndarray, rng: np.random.Generator, colour: np.ndarray, bezel: np.ndarray) -> np.ndarray:
    """The layer on an opaque rectangular panel with a frame around it (sign board, display)."""
    h, w = layer.shape[:2]
    pad, frame = round(rng.uniform(0.08, 0.3) * max(h, w)), max(1, round(rng.uniform(0.02, 0.06) * max(h, w)))
    size = (h + 2 * (pad + frame), w + 2 * (pad + frame))
    out = np.zeros((*size, 5), np.float32)
    out[..., :3], out[..., 3] = bezel, 1
    out[frame:-frame, frame:-frame, :3] = colour
    inner = out[pad + frame : pad + frame + h, pad + frame : pad + frame + w]
    inner[..., :3] = layer[..., :3] + (1 - layer[..., 3:4]) * inner[..., :3]
    inner[..., 4] = layer[..., 4]
    return out


def _sign(layer, rng, look) -> np.ndarray:
    """A backlit sign: bright mark on a light or dark board in a metal frame."""
    board = np.full(3, rng.uniform(0.85, 1.0) if rng.random() < 0.5 else rng.uniform(0.02, 0.2), np.float32)
    frame = np.full(3, rng.uniform(0.2, 0.7), np.float32)
    return _panel(_emissive(layer, rng, look), rng, board * rng.uniform(0.9, 1.1, 3).astype(np.float32), frame)


def _screen(layer, rng, look) -> np.ndarray:
    """A display: the mark on a dark screen in a black bezel."""
    screen = rng.uniform(0.0, 0.15, 3).astype(np.float32)
    return _panel(_emissive(layer, rng, look), rng, screen, np.full(3, rng.uniform(0.0, 0.08), np.float32))


def _emissive(layer: np.ndarray, rng: np.random.Generator, look: Look) -> np.ndarray:
    """The mark gives light: brightened, with a glow of its own shape in a colour that does not depend on it."""
    layer = layer.copy()
    alpha = layer[..., 4]
    layer[..., :3] = np.minimum(layer[..., :3] * rng.uniform(1.1, 1.5), layer[..., 3:4])
    look["glow"] = (rng.uniform(0.5, 1, 3) * rng.uniform(0.2, 0.6)).astype(np.float32)
    look["glow_sigma"] = rng.uniform(0.02, 0.08) * max(alpha.shape)
    return layer


def _glow(patch, rng, look, surface, box) -> None:
    """Emissive glow around the mark, on its board (so it stays within the layer)."""
    halo = ndimage.gaussian_filter(patch[..., 4], look["glow_sigma"])
    patch[..., :3] += (halo * patch[..., 3])[..., None] * look["glow"]
    np.minimum(patch[..., :3], patch[..., 3:4], out=patch[..., :3])


def _scanlines(patch, rng, look, surface, box) -> None:
    """Glow, then the screen's rows and the moiré a camera sees on them."""
    _glow(patch, rng, look, surface, box)
    h, w = patch.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    period, depth = rng.uniform(2, 4), rng.uniform(0.15, 0.4)
    lines = 1 - depth * (0.5 + 0.5 * np.sin(2 * math.pi * ys / period))
    if rng.random() < 0.6:  # moiré: a beat between the pixel grid and the sensor's
        beat = rng.uniform(0.01, 0.05)
        angle = rng.uniform(0, math.pi)
        lines *= 1 - rng.uniform(0.1, 0.3) * (
            0.5 + 0.5 * np.cos(2 * math.pi * beat * (xs * math.cos(angle) + ys * math.sin(angle)))
        )
    patch[..., :3] *= lines[..., None]


def _colour_cast(canvas, rng, look) -> None:
    """White balance gone wrong: tungsten, fluorescent, shade or sodium light, with a tinted fall-off."""
    casts = np.array([[1.25, 0.95, 0.55], [0.85, 1.15, 0.8], [0.7, 0.9, 1.3], [1.35, 0.85, 0.35]], np.float32)
    strength = rng.uniform(0.5, 1.0)
    gain = 1 + strength * (casts[rng.integers(len(casts))] - 1)
    canvas *= gain * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    from .compose import _gradient

    canvas *= _gradient(rng, *canvas.shape[:2], rng.uniform(-0.4, 0.4))[..., None]


def _low_light(canvas, rng, look) -> None:
    """Underexposed, then pushed back up by the camera: shot noise, read noise and colour noise, crushed blacks."""
    exposure = rng.uniform(0.12, 0.35)
    signal = canvas * exposure
    photons = rng.uniform(80, 400)  # full-well electrons per unit of light: fewer is noisier
    shot = rng.standard_normal(canvas.shape, dtype=np.float32) * np.sqrt(signal / photons)
    read = rng.standard_normal((*canvas.shape[:2], 1), dtype=np.float32) * rng.uniform(0.003, 0.012)
    push = rng.uniform(1.5, 2.8)
    canvas[:] = (signal + shot + read) * push - rng.uniform(0, 0.03)


def _motion(canvas, rng, look) -> None:
    """Camera or subject motion: a line kernel of 3-17 px, used on the scene and on every logo patch."""
    length = int(rng.integers(3, 18))
    angle = rng.uniform(0, math.pi)
    kernel = np.zeros((length, length), np.float32)
    centre = (length - 1) / 2
    for t in np.linspace(-centre, centre, 4 * length):
        kernel[round(centre + t * math.sin(angle)), round(centre + t * math.cos(angle))] += 1
    look["kernel"] = kernel / kernel.sum()
    canvas[:] = ndimage.convolve(canvas, look["kernel"][..., None], mode="nearest")


def _blur_patch(patch, rng, look, surface, box) -> None:
    """The same motion on a logo patch, opacities included: its box is measured on the smeared mark."""
    patch[:] = ndimage.convolve(patch, look["kernel"][..., None], mode="constant")


def _variant(layer, rng, look) -> np.ndarray:
    """A monochrome, negative or outline version of the mark, as brands print them on one-colour media."""
    layer = layer.copy()
    alpha = layer[..., 4]
    kind = rng.integers(3)
    if kind == 0:  # one ink colour
        ink = rng.uniform(0, 1, 3).astype(np.float32)
        layer[..., :3] = alpha[..., None] * ink
    elif kind == 1:  # negative
        layer[..., :3] = alpha[..., None] - layer[..., :3]
    else:  # outline: the mark's edge, a stroke of 2-6% of its size
        width = max(1, round(rng.uniform(0.02, 0.06) * min(alpha.shape)))
        inner = ndimage.grey_erosion(alpha, size=(2 * width + 1, 2 * width + 1))
        edge = np.clip(alpha - inner, 0, 1)
        ink = np.full(3, float(rng.random() < 0.5), np.float32) if rng.random() < 0.6 else rng.uniform(0, 1, 3)
        layer[..., :3] = edge[..., None] * ink.astype(np.float32)
        layer[..., 3] = layer[..., 4] = edge
    return layer


def _busy(canvas, rng, look) -> None:
    """Clutter behind the logos: stripes, checks or confetti of many colours over the scene."""
    height, width = canvas.shape[:2]
    kind = rng.integers(3)
    if kind == 2:
        image = Image.new("RGB", (width, height))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(40, 160))):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            r = rng.uniform(0.01, 0.08) * max(height, width)
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x - r, y - r * rng.uniform(0.3, 1), x + r, y + r), fill=fill)
        pattern = np.asarray(image, np.float32) / 255
    else:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.02, 0.1) * max(height, width)
        u = (xs * math.cos(angle) + ys * math.sin(angle)) / period
        v = (ys * math.cos(angle) - xs * math.sin(angle)) / period
        index = np.floor(u).astype(int) % 4 if kind == 0 else (np.floor(u) + np.floor(v)).astype(int) % 2
        colours = rng.uniform(0, 1, (4, 3)).astype(np.float32)
        pattern = colours[index]
    mix = rng.uniform(0.5, 0.9)
    canvas[:] = (1 - mix) * canvas + mix * pattern


#: The composition styles, by name. `pasted` is the generator's original composition.
COMPOSITION_STYLES: dict[str, Style] = {
    style.name: style
    for style in (
        Style("pasted", "the original composition: logos pasted, warped and lit on a photo or surface"),
        Style(
            "printed",
            "printed on fabric (woven threads) or paper (fibres): texture and colour show through",
            scene=_material,
            patch=_printed,
        ),
        Style("signage", "backlit signs: a bright mark with a glow, on a board in a frame", mark=_sign, patch=_glow),
        Style(
            "screen",
            "displays: an emissive mark on a dark screen in a bezel, scanlines and moiré",
            mark=_screen,
            patch=_scanlines,
        ),
        Style("small", "small logos, often cut by the image border", (0.003, 0.03), (0.003, 0.02), border=0.4),
        Style("colour-cast", "strong colour casts of wrong white balance", finish=_colour_cast),
        Style("low-light", "underexposed scenes pushed up by the camera, with sensor noise", finish=_low_light),
        Style(
            "motion-blur",
            "camera or subject motion blur, on the scene and the logos alike",
            margin=9,
            scene=_motion,
            patch=_blur_patch,
        ),
        Style("mark-variants", "monochrome, negative or outline versions of the mark", mark=_variant),
        Style("busy", "logos on busy textures: stripes, checks, confetti", scene=_busy),
    )
}

#: The cross-world test's world (`train.py --out_of_world_dir`): a photo family and a composition style held out of
#: every training set ([`training_worlds`] names the rest), so a score there is on scenes a model has seen nothing like.
#: lomiri's photographs (landscapes, plants, objects, interiors) and backlit signs, as in a street.
HELD_OUT_PHOTO_FAMILY, HELD_OUT_STYLE = "lomiri", "signage"
OTHER_WORLDS = {"photo_families": (HELD_OUT_PHOTO_FAMILY,), "styles": (HELD_OUT_STYLE,)}


def training_worlds() -> dict[str, tuple[str, ...]]:
    """`synthesize` arguments for a diverse training pool: every installed photo family and every style but the
    cross-world test's ([`OTHER_WORLDS`])."""
    families, _ = resolve_photo_families(ALL_WORLDS)
    return {
        "photo_families": tuple(name for name in families if name != HELD_OUT_PHOTO_FAMILY),
        "styles": tuple(name for name in COMPOSITION_STYLES if name != HELD_OUT_STYLE),
    }


__all__ = [
    "ALL_WORLDS",
    "COMPOSITION_STYLES",
    "DATA_ROOT",
    "HELD_OUT_PHOTO_FAMILY",
    "HELD_OUT_STYLE",
    "OTHER_WORLDS",
    "PHOTO_FAMILIES",
    "PhotoFamily",
    "PhotoFile",
    "Style",
    "describe_worlds",
    "family_images",
    "resolve_photo_families",
    "resolve_styles",
    "training_worlds",
]
