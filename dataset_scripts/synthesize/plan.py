"""Stage 1 of the generator: which brands and designs, how many images each, rendered once to RGBA marks."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np

from dataset_scripts.logo_sources import (
    Brand,
    render_brand,
)
from dataset_scripts.voc import CATEGORIES

from .compose import _DISTRACTOR_BRANDS


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
