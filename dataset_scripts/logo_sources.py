"""Real brand marks for the generated logo benchmark, fetched from two CC0 npm packages and rendered to RGBA.

Sources (pinned, so a given seed always sees the same marks):

- [`simple-icons@16.37.0`](https://simpleicons.org): single-colour brand icons, drawn here in the brand's colour
  (`hex` in `data/simple-icons.json`). The package is CC0-1.0, but some icons carry their own licence in the data
  file; only icons without a `license` entry or with `license.type == "CC0-1.0"` are used (see [`is_cc0`]).
- [`@iconify-json/logos@1.2.19`](https://icon-sets.iconify.design/logos/): Gil Barbara's full-colour "SVG Logos"
  (CC0-1.0 per the package's `info.json`, checked at load time). Hidden (deprecated) icons and aliases are skipped.

Both tarballs are fetched once with `npm pack` into the cache directory ([`default_cache_dir`]) and extracted with
`tarfile`; rendered marks are cached there as PNGs. Offline, put the tarballs there by hand (see [`fetch_package`]).

A *brand* groups every design of one brand: the simple-icons icon, the iconify logo and its variants (`google`,
`google-icon`, `google-2014`). Brands are matched across the sources by simple-icons slug or normalised title
(`Node.js` = `nodejs`); colour-only variants (`vite-dark`) are dropped, and after rendering, designs that draw
the same outline are merged by [`render_brand`], so a brand's designs really look different. The iconify set has
no display names, so brands only it has are titled from the icon name (`aws-api-gateway` -> `Aws Api Gateway`).

The marks are trademarks of their owners; they are used here only to build a recognition benchmark.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import resvg_py
from PIL import Image
from scipy import ndimage

from modeling_logo.cache import cache_root


Source = Literal["simple-icons", "iconify", "both"]

#: The only licence a mark may carry to be used (SPDX id).
ALLOWED_LICENCE = "CC0-1.0"
#: Long side, in pixels, of the rendered marks (before cropping to the drawn content).
MARK_SIZE = 256
#: Most designs kept per brand (the first is `Brand`, the others `Brand-1`, `Brand-2`).
MAX_DESIGNS = 3

# Iconify name suffixes that mark another design of the same brand (stripped repeatedly: `nodejs-icon-alt`).
_DESIGN_SUFFIXES = ("-icon", "-alt", "-classic", "-2014", "-2020", "-2")
# Suffixes that only recolour a design that is also in the set; such icons are dropped.
_COLOUR_SUFFIXES = ("-dark", "-mono", "-monochrome", "-color")
# simple-icons' title-to-slug replacements (before dropping everything but ASCII letters and digits).
_SLUG_TABLE = str.maketrans({"+": "plus", ".": "dot", "&": "and", "ß": "ss"} | dict(zip("đħıĸŀłŧ", "dhikllt")))
# Characters not allowed in file names on Linux or Windows, plus control characters.
_ILLEGAL_IN_FILE_NAMES = re.compile(r'[/\\:*?"<>|\x00-\x1f]')


@dataclass(frozen=True)
class NpmPackage:
    """A pinned npm package: `spec` for `npm pack`, the tarball it produces and npm's sha1 `shasum` of it."""

    spec: str
    tarball: str
    sha1: str

    @property
    def url(self) -> str:
        """The tarball's address in the npm registry (used where npm itself is not installed, e.g. on a Space)."""
        name, _, version = self.spec.rpartition("@")
        return f"https://registry.npmjs.org/{name}/-/{name.rpartition('/')[2]}-{version}.tgz"


SIMPLE_ICONS = NpmPackage(
    "simple-icons@16.37.0", "simple-icons-16.37.0.tgz", "4fa47115274604aff61a08e69a83d790121a3d23"
)
ICONIFY_LOGOS = NpmPackage(
    "@iconify-json/logos@1.2.19", "iconify-json-logos-1.2.19.tgz", "4b2311667b7c78b98d2e552cd76aaed54bcc596a"
)


@dataclass(frozen=True)
class Design:
    """One drawing of a brand: `source` is `"simple-icons"` or `"iconify"`, `name` the icon's slug or name there."""

    source: str
    name: str
    package: str
    licence: str
    svg: str

    @property
    def cache_name(self) -> str:
        """File name of the rendered mark in the cache (unique across sources and package versions)."""
        return f"{self.package.replace('/', '_')}/{self.name}.png"


@dataclass(frozen=True)
class Brand:
    """A brand and its candidate designs, best first. `slug` is a stable id, `title` the display name."""

    slug: str
    title: str
    designs: tuple[Design, ...]

    @property
    def folder(self) -> str:
        """The title as a folder name ([`folder_name`])."""
        return folder_name(self.title)


class MarkSourceError(RuntimeError):
    """A mark package could not be fetched or read."""


def default_cache_dir() -> Path:
    """`marks/` in the project's cache ([`modeling_logo.cache.cache_root`]: `$MODELING_LOGO_CACHE`, else
    `~/.cache/modeling-logo`)."""
    return cache_root() / "marks"


def folder_name(title: str) -> str:
    """A file-system-safe folder name that keeps the title readable (`AT&T`, `McDonald's`, `Café`, `Node.js`).

    Only characters illegal in Linux or Windows file names (`/\\:*?"<>|` and control characters) become `_`; a
    leading dot (hidden folder) and trailing dots or spaces (dropped by Windows) become `_` too.
    """
    name = _ILLEGAL_IN_FILE_NAMES.sub("_", unicodedata.normalize("NFC", title).strip())
    if name.startswith("."):
        name = "_" + name[1:]
    stripped = name.rstrip(". ")
    return stripped + "_" * (len(name) != len(stripped)) or "_"


def normalise_name(name: str) -> str:
    """Lower-case ASCII letters and digits only: `Node.js` -> `nodejs`, `Citroën` -> `citroen`."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return re.sub(r"[^a-z0-9]", "", decomposed)


def is_cc0(entry: dict) -> bool:
    """Whether a simple-icons data entry may be used: no `license` entry (the package's CC0) or a CC0 one."""
    licence = entry.get("license")
    return licence is None or licence.get("type") == ALLOWED_LICENCE


def fetch_package(package: NpmPackage, cache_dir: Path) -> Path:
    """Return the extracted `package/` folder of `package`, running `npm pack` into `cache_dir` on first use.

    A tarball already in `cache_dir` (e.g. copied there by hand on an offline machine) is used as is, after its
    sha1 is checked against the pinned one.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    extracted = cache_dir / package.tarball.removesuffix(".tgz")
    if (extracted / "package" / "package.json").is_file():
        return extracted / "package"
    tarball = cache_dir / package.tarball
    if not tarball.is_file():
        _npm_pack(package, cache_dir)
    digest = hashlib.sha1(tarball.read_bytes()).hexdigest()
    if digest != package.sha1:
        raise MarkSourceError(f"{tarball} has sha1 {digest}, expected {package.sha1}: delete it and retry.")
    # Extract next to the cache and rename, so concurrent runs never see a half-extracted package.
    tmp = tempfile.mkdtemp(dir=cache_dir, prefix=".extract-")
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp, filter="data")
    try:
        os.rename(tmp, extracted)
    except OSError:  # another process got there first
        shutil.rmtree(tmp)
    return extracted / "package"


def _npm_pack(package: NpmPackage, cache_dir: Path) -> None:
    help_text = (
        f"On a machine with access to the npm registry run `npm pack {package.spec}` and copy the resulting "
        f"{package.tarball} into {cache_dir} (or pass another folder with --cache-dir / $MODELING_LOGO_CACHE)."
    )
    npm = shutil.which("npm")
    if npm is None:
        _download(package, cache_dir, help_text)
        return
    result = subprocess.run(
        [npm, "pack", package.spec, "--pack-destination", str(cache_dir), "--loglevel=error"],
        cwd=cache_dir,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not (cache_dir / package.tarball).is_file():
        errors = [line.removeprefix("npm error").strip() for line in result.stderr.splitlines()]
        error = "; ".join(errors[:2]) or f"exit status {result.returncode}"
        raise MarkSourceError(f"`npm pack {package.spec}` failed ({error}). {help_text}")


def _download(package: NpmPackage, cache_dir: Path, help_text: str) -> None:
    """Fetch the tarball straight from the registry (its sha1 is checked by the caller)."""
    import urllib.request

    try:
        with urllib.request.urlopen(package.url, timeout=60) as response:
            data = response.read()
    except OSError as error:
        raise MarkSourceError(
            f"npm is not installed and {package.url} could not be fetched ({error}). {help_text}"
        ) from error
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".tgz", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, cache_dir / package.tarball)


def load_marks(cache_dir: str | Path | None = None, source: Source = "both") -> tuple[list[Brand], Counter]:
    """All usable brands from `source`, sorted by slug, and the number of icons skipped, by reason.

    Fetches the packages on first use. Designs are listed best first: the simple-icons icon, then the iconify
    logo, then its variants; at most [`MAX_DESIGNS`] before rendering (rendering may merge look-alikes).
    """
    if source not in ("simple-icons", "iconify", "both"):
        raise ValueError(f"source must be 'simple-icons', 'iconify' or 'both', not {source!r}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    skipped: Counter = Counter()
    brands: dict[str, tuple[str, list[Design]]] = {}  # slug -> (title, designs)
    if source in ("simple-icons", "both"):
        for slug, title, design in _simple_icons(fetch_package(SIMPLE_ICONS, cache_dir), skipped):
            brands[slug] = (title, [design])
    if source in ("iconify", "both"):
        by_slug = {slug: slug for slug in brands}
        title_keys = Counter(normalise_name(title) for title, _ in brands.values())
        by_title = {normalise_name(t): slug for slug, (t, _) in brands.items() if title_keys[normalise_name(t)] == 1}
        for base, designs in _iconify_logos(fetch_package(ICONIFY_LOGOS, cache_dir), skipped).items():
            key = normalise_name(base)
            slug = by_slug.get(key) or by_title.get(key) or base
            title = brands[slug][0] if slug in brands else " ".join(part.capitalize() for part in base.split("-"))
            brands.setdefault(slug, (title, []))[1].extend(designs)
    # Two brands may share a title ("Spring", "Spring"): the later one (by slug) gets its slug appended.
    result, taken = [], set()
    for slug in sorted(brands):
        title, designs = brands[slug]
        if folder_name(title).casefold() in taken:
            title = f"{title} ({slug})"
        taken.update(
            folder_name(title + suffix).casefold() for suffix in ["", *(f"-{i}" for i in range(1, MAX_DESIGNS))]
        )
        result.append(Brand(slug, title, tuple(designs[:MAX_DESIGNS])))
        skipped["extra design"] += max(0, len(designs) - MAX_DESIGNS)
    return result, skipped


def _package_id(package_dir: Path) -> str:
    """`name@version` of an extracted npm package."""
    manifest = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    return f"{manifest['name']}@{manifest['version']}"


def _simple_icons(package_dir: Path, skipped: Counter) -> Iterator[tuple[str, str, Design]]:
    """`(slug, title, design)` of each CC0 simple-icons icon, drawn in its brand colour."""
    package = _package_id(package_dir)
    data_file = next(
        p for p in (package_dir / "data/simple-icons.json", package_dir / "_data/simple-icons.json") if p.is_file()
    )
    entries = json.loads(data_file.read_text(encoding="utf-8"))
    entries = entries["icons"] if isinstance(entries, dict) else entries  # older releases wrap the list
    for entry in entries:
        if not is_cc0(entry):
            skipped[f"licence {entry['license'].get('type')}"] += 1
            continue
        slug = entry.get("slug") or simple_icons_slug(entry["title"])
        svg = (package_dir / "icons" / f"{slug}.svg").read_text(encoding="utf-8")
        # The icons are single paths with no fill: a fill on the root draws them in the brand colour.
        svg = svg.replace("<svg ", f'<svg fill="#{entry["hex"]}" ', 1)
        yield slug, entry["title"], Design("simple-icons", slug, package, ALLOWED_LICENCE, svg)


def simple_icons_slug(title: str) -> str:
    """simple-icons' own title-to-slug rule, for data entries without a `slug`."""
    title = title.lower().translate(_SLUG_TABLE)
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFD", title))


def _iconify_logos(package_dir: Path, skipped: Counter) -> dict[str, list[Design]]:
    """Iconify designs grouped by brand base name (`google-icon` -> `google`), base design first."""
    info = json.loads((package_dir / "info.json").read_text())
    licence = info["license"].get("spdx", info["license"].get("title", "unknown"))
    icon_set = json.loads((package_dir / "icons.json").read_text(encoding="utf-8"))
    icons = icon_set["icons"]
    if licence != ALLOWED_LICENCE:
        skipped[f"licence {licence}"] += len(icons)
        return {}
    groups: dict[str, list[str]] = {}
    for name, icon in icons.items():
        if icon.get("hidden"):
            skipped["deprecated iconify icon"] += 1
            continue
        if any(name.endswith(s) and name.removesuffix(s) in icons for s in _COLOUR_SUFFIXES):
            skipped["colour variant"] += 1
            continue
        base = name
        while stripped := next((base.removesuffix(s) for s in _DESIGN_SUFFIXES if base.endswith(s)), None):
            base = stripped
        groups.setdefault(base, []).append(name)
    package = _package_id(package_dir)
    default_width, default_height = icon_set.get("width", 16), icon_set.get("height", 16)
    designs = {}
    for base, names in groups.items():
        names.sort(key=lambda name: (name != base, len(name), name))
        designs[base] = []
        for name in names:
            icon = icons[name]
            box = (
                icon.get("left", 0),
                icon.get("top", 0),
                icon.get("width", default_width),
                icon.get("height", default_height),
            )
            svg = (
                '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                f'viewBox="{" ".join(map(str, box))}" width="{box[2]}" height="{box[3]}">{icon["body"]}</svg>'
            )
            designs[base].append(Design("iconify", name, package, licence, svg))
    return designs


def render_design(design: Design, cache_dir: str | Path | None = None) -> Path:
    """Render `design` to an RGBA PNG cropped to its drawn pixels, cached; return the PNG's path.

    The long side of the SVG's canvas is drawn at [`MARK_SIZE`] pixels. Raises `ValueError` when the SVG cannot be
    rendered or draws nothing.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"renders-{MARK_SIZE}" / design.cache_name
    if path.is_file():
        return path
    viewbox = re.search(r'viewBox="([^"]+)"', design.svg)
    if viewbox is None:
        raise ValueError("the SVG has no viewBox")
    width, height = (float(v) for v in viewbox.group(1).replace(",", " ").split()[2:4])
    size = {"width": MARK_SIZE} if width >= height else {"height": MARK_SIZE}
    png = resvg_py.svg_to_bytes(svg_string=design.svg, skip_system_fonts=True, **size)
    image = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    box = image.getchannel("A").point(lambda a: 255 * (a > 8)).getbbox()
    if box is None:
        raise ValueError("the SVG draws nothing")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png", delete=False) as tmp:
        image.crop(box).save(tmp, format="PNG")
    os.replace(tmp.name, path)
    return path


def load_mark(path: str | Path) -> np.ndarray:
    """A rendered mark as an `(H, W, 4)` uint8 RGBA array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def same_design(a: np.ndarray, b: np.ndarray, threshold: float = 0.6) -> bool:
    """Whether two RGBA marks are the same drawing, whatever their colours (a one-colour icon and its colour logo).

    Compares outlines, not pixels, because the one-colour icons draw inner colour boundaries as holes: at 64 px,
    the share of each mark's edge pixels within 2 px of the other's edges must exceed `threshold` both ways (and
    the aspect ratios must agree within 25%). A heuristic that errs towards merging: two look-alike folders of one
    brand would make the benchmark ambiguous, one design too few costs little.
    """
    aspect_a, aspect_b = a.shape[1] / a.shape[0], b.shape[1] / b.shape[0]
    if max(aspect_a, aspect_b) / min(aspect_a, aspect_b) > 1.25:
        return False
    edges = [_edges(mark) for mark in (a, b)]
    distances = [ndimage.distance_transform_edt(~e) for e in edges]
    agreement = min((distances[1][edges[0]] <= 2).mean(), (distances[0][edges[1]] <= 2).mean())
    return bool(agreement > threshold)


def _edges(mark: np.ndarray, size: int = 64) -> np.ndarray:
    rgba = np.asarray(Image.fromarray(mark).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    premultiplied = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
    # Outside the canvas is transparent, so a mark that fills it still has outer edges.
    gradient = sum(np.abs(ndimage.sobel(premultiplied, axis, mode="constant")).sum(-1) for axis in (0, 1))
    return gradient > 0.5


def render_brand(
    brand: Brand, cache_dir: str | Path | None = None, skipped: Counter | None = None
) -> list[tuple[Design, Path]]:
    """Render `brand`'s designs, dropping those that fail (counted in `skipped`) and look-alikes of earlier ones."""
    skipped = skipped if skipped is not None else Counter()
    kept: list[tuple[Design, Path, np.ndarray]] = []
    for design in brand.designs:
        try:
            path = render_design(design, cache_dir)
        except (ValueError, OSError) as error:
            skipped[f"render failed: {type(error).__name__}"] += 1
            continue
        mark = load_mark(path)
        if any(same_design(mark, other) for _, _, other in kept):
            skipped["duplicate design"] += 1
            continue
        kept.append((design, path, mark))
    return [(design, path) for design, path, _ in kept]
