"""Stage 4 of the generator: write the images, their VOC files and `LICENSES.md`, in worker processes, with a
seeded generator per image; and a preview sheet."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from dataset_scripts.logo_sources import (
    ICONIFY_LOGOS,
    SIMPLE_ICONS,
    Brand,
    Source,
    default_cache_dir,
    load_mark,
    load_marks,
)
from dataset_scripts.voc import CATEGORIES, UNKNOWN_LOGO, read_voc, write_voc

from .compose import (
    _DISTRACTOR_BRANDS,
    _P_DISTRACTOR,
    _P_EXTRA_BRANDS,
    _P_SECOND_COPY,
    BACKGROUNDS,
    InvisibleMarkError,
    _background_images,
    compose_scene,
)
from .plan import DesignPlan, plan_designs, stable_hash
from .worlds import PHOTO_FAMILIES, family_images, resolve_photo_families, resolve_styles


#: The summary's reason for an image whose mark no drawn scene kept visible (`InvisibleMarkError`).
_INVISIBLE_MARK = "image with its mark invisible in every scene drawn"


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
    #: With worlds: images per photo family and per style, and notes (families skipped because not installed).
    photo_families: dict[str, int] = field(default_factory=dict)
    styles: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
        for title, counts in (("Photo families", self.photo_families), ("Styles", self.styles)):
            if counts:
                lines.append(f"{title}: " + ", ".join(f"{name} {n}" for name, n in counts.items()) + ".")
        lines += [f"Note: {note}." for note in self.notes]
        return "\n".join(lines)


logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------- writing files


@dataclass(frozen=True)
class _Job:
    """What a worker needs to draw any image of the set."""

    out_dir: Path
    plans: tuple[DesignPlan, ...]
    distractors: tuple[Path, ...]
    seed: int
    image_size: int
    photo_families: tuple[str, ...] | None = None  # None: the original background mix
    styles: tuple[str, ...] | None = None  # None: only `pasted`
    cache_dir: Path | None = None  # where reduced backgrounds of Debian families are cached

    @property
    def worlds(self) -> bool:
        return self.photo_families is not None or self.styles is not None


_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _JOB
    _JOB = job
    for family in job.photo_families or ("scikit-image",):
        if family == "scikit-image":
            _background_images()
        elif PHOTO_FAMILIES[family].package is not None:
            family_images(family, job.cache_dir)


@lru_cache(maxsize=512)
def _mark(path: Path) -> np.ndarray:
    return load_mark(path)


def _generate_image(job: _Job, design_index: int, n: int) -> tuple[int, str | None, str | None, str | None]:
    """Compose and write image `n` (1-based) of design `design_index`; return its number of labelled logos, its
    world (photo family and style, `None` without worlds) and why it was skipped (`None`: written)."""
    plan = job.plans[design_index]
    rng = np.random.default_rng([job.seed, stable_hash(plan.folder), n])
    family = style = None
    if job.worlds:
        # A generator of its own, so that the scene's draws (and, without worlds, its bytes) do not depend on it.
        world_rng = np.random.default_rng([job.seed, stable_hash(plan.folder), n, stable_hash("world")])
        families, styles = job.photo_families, job.styles or ("pasted",)
        family = families[world_rng.integers(len(families))] if families is not None else None
        style = styles[world_rng.integers(len(styles))]
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
    try:
        scene = compose_scene(
            _mark(plan.mark),
            plan.folder,
            rng,
            image_size=job.image_size,
            extras=extras,
            distractor=distractor,
            photo_family=family,
            style=style or "pasted",
        )
    except InvisibleMarkError:  # one image lost, counted in the summary; the other images do not depend on it
        return 0, family, style, _INVISIBLE_MARK
    folder = job.out_dir / plan.category / plan.folder
    scene.image.save(folder / f"{n}.jpg", quality=scene.jpeg_quality)
    # Without worlds the VOC file stays as it always was; with them it says which world drew the image.
    world = {"photo_family": family or "scikit-image+surfaces", "style": style} if job.worlds else None
    objects = [(o.name, o.box) for o in scene.objects]
    write_voc(folder / f"{n}.xml", plan.folder, f"{n}.jpg", scene.image.size, objects, world=world)
    return sum(o.name != UNKNOWN_LOGO for o in scene.objects), family, style, None


def _generate(task: tuple[int, int]) -> tuple[int, str | None, str | None, str | None]:
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
    photo_families: str | Sequence[str] | None = None,
    styles: str | Sequence[str] | None = None,
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
        photo_families: Names of [`~.worlds.PHOTO_FAMILIES`] (a list or a comma-separated string) to draw each
            image's background family from, or `"all"` ([`~.worlds.ALL_WORLDS`]: every installed family, the
            others skipped with a note). `None`: the original mix (scikit-image photos 80%, surfaces 20%).
        styles: Names of [`~.worlds.COMPOSITION_STYLES`] to draw each image's style from, or `"all"`. `None`: only
            `pasted`. With neither, the output is byte-identical to the generator's before worlds existed; with
            either, each image draws its world from a generator of its own and its VOC file records it.

    Raises:
        ValueError: an unknown family or style (the message lists the valid ones), or a named family whose Debian
            package is not installed (the message says what to `apt-get install`).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if (num_brands is not None and num_brands < 1) or images_per_brand < 1:
        raise ValueError("num_brands and images_per_brand must be at least 1")
    families, notes = resolve_photo_families(photo_families)
    style_names = resolve_styles(styles)
    for note in notes:
        logger.warning(note)
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
    job = _Job(out_dir, tuple(plans), tuple(distractors), seed, image_size, families, style_names, cache_dir)
    _write_licences(out_dir / "LICENSES.md", plans, distractors, job, notes)

    generation_start = time.perf_counter()
    tasks = [(d, n) for d, plan in enumerate(plans) for n in range(1, plan.num_images + 1)]
    with _worker_pool(workers, job) as pool:
        results = pool.imap_unordered(_generate, tasks, chunksize=4) if pool else map(_generate, tasks)
        results = list(tqdm(results, total=len(tasks), desc="Generating images", unit="img", disable=not progress))
    skipped.update(reason for *_, reason in results if reason is not None)
    results = [result for result in results if result[3] is None]
    objects = sum(count for count, *_ in results)
    # In the order of the registries' names, images with no world counted under none.
    family_counts = Counter(family for _, family, _, _ in results if family is not None)
    style_counts = Counter(style for _, _, style, _ in results if style is not None)

    designs_per_brand = Counter(plan.brand for plan in plans)
    summary = SynthesisSummary(
        out_dir=out_dir,
        brands=len(designs_per_brand),
        designs=len(plans),
        brands_with_several_designs=sum(count > 1 for count in designs_per_brand.values()),
        images=len(results),
        objects=objects,
        seconds=time.perf_counter() - start,
        image_seconds=time.perf_counter() - generation_start,
        skipped=dict(skipped),
        photo_families={name: family_counts[name] for name in families or ()},
        styles={name: style_counts[name] for name in style_names or ("pasted",)} if job.worlds else {},
        notes=notes,
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


def _write_licences(
    path: Path, plans: Sequence[DesignPlan], distractors: Sequence[Path], job: _Job, notes: Sequence[str] = ()
) -> None:
    sources = Counter(plan.package for plan in plans)
    backgrounds = [
        "- Background photos: images bundled with scikit-image (`skimage.data`):",
        *(f"  - `{name}`: {licence}" for name, licence in BACKGROUNDS.items()),
    ]
    if job.worlds:
        backgrounds = _world_licences(job, notes)
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
        *backgrounds,
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


def _world_licences(job: _Job, notes: Sequence[str]) -> list[str]:
    """The `LICENSES.md` lines of the photo families a run with worlds draws from, each file with its licence."""
    families = job.photo_families or ("scikit-image", "surfaces")
    lines = [
        "- Visual worlds: each image's VOC file names its photo family and style (`<world>`).",
        "  - Styles: " + ", ".join(f"`{name}`" for name in job.styles or ("pasted",)) + ".",
        "  - Photo families: " + ", ".join(f"`{name}`" for name in families) + ". Files of Debian packages are read",
        "    where the package installs them, and cropped, recoloured and composited in every image.",
    ]
    for name in families:
        family = PHOTO_FAMILIES[name]
        source = f"Debian package `{family.package}`" if family.package else family.description
        lines.append(f"- `{name}` ({source}): {family.licence}" + ("" if family.photographs else "; not photographs"))
        files = family.files if family.package is None else family.available_files()
        lines += [f"  - `{file.path}`: {file.licence}" + (f", {file.author}" if file.author else "") for file in files]
    lines += [f"- Note: {note}." for note in notes]
    return lines


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
