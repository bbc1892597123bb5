"""LogoDet-3K as a `datasets` builder with brand-disjoint splits for few-shot logo recognition.

LogoDet-3K lies on disk as `<Category>/<Brand>/<n>.jpg` with `<n>.xml` (Pascal VOC boxes): 9 categories, 3,000
brands, 158,652 images. The generated benchmark (`python -m dataset_scripts.synthesize`) writes the same layout, so
this one builder reads both. `datasets` 4+ no longer runs loading scripts, so the builder is imported and used
directly::

    from dataset_scripts import load_logodet3k

    splits = load_logodet3k("data/LogoDet-3K", "crops")  # DatasetDict: train / validation / test brands

Quirks of the real data this handles:

- `Brand-1`, `Brand-2`, ... folders are other designs of `Brand`: they are merged into one brand, and `design`
  records the folder's number (0 for `Brand`). `X-N` counts as a design only where `X` or another `X-M` exists in
  the same category, so a name such as `7-11` stays a brand of its own.
- VOC object names that name no brand folder (typos, variants) are labelled with the folder's brand; each such
  mismatch is logged once. Names of other brands mark multi-brand images: in `crops` each box gets its own brand; in
  `images` the image belongs to its folder's brand and the others are listed in `other_brands`.
- VOC files as other tools write them are read: an unescaped `&` (`Ben & Jerry's`), stray byte-order marks, bytes
  that are not UTF-8, a missing `<size>` (the image's own size is used) and other damage lxml's recovering parser
  reads are repaired and counted by kind (`LogoDet3K.repaired`, see `dataset_scripts.voc.REPAIR_KINDS`).
- Bad input is skipped and counted by reason, never fatal: see `SKIP_REASONS`. The counts are logged at the end and
  kept in `skipped.json` next to the prepared data (`LogoDet3K.skipped`), with the repairs and the list of the files
  skipped (`LogoDet3K.skipped_files`).

Configs: `crops` (one example per box, cropped with a context margin), `images` (the whole image with its brand's
boxes, as the paper trained) and `detection` (the image with every box and its brand).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import ParseError

import datasets
from PIL import Image

from modeling_logo import to_rgb
from modeling_logo.detection import CROP_MARGIN, crop_box, crop_origin
from modeling_logo.few_shot import IGNORED_FILES

from .voc import CATEGORIES, REPAIR_KINDS, UNKNOWN_LOGO, parse_voc


logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

SKIP_REASONS = {
    "not_an_image_file": "a file in a brand folder that is neither an image nor a VOC XML",
    "missing_xml": "an image without its VOC XML (unlabelled)",
    "missing_image": "a VOC XML without its image",
    "unreadable_image": "an image file that cannot be decoded (corrupt, truncated, or not an image)",
    "too_large": "an image with more pixels than `max_image_pixels` (decompression-bomb guard)",
    "malformed_xml": "a VOC XML that no repair makes readable (see `voc.REPAIR_KINDS`), or an object without its name or bndbox",
    "no_objects": "a VOC XML without any object",
    "invalid_box": "one box with zero area or lying outside the image (the image's other boxes are kept)",
    "no_valid_boxes": "an image none of whose boxes is valid",
    "box_of_other_split": "a box of a brand that belongs to another split (crops only), so that splits stay disjoint",
    "unknown_logo": "a box of a logo of no brand of the data set (`UNKNOWN_LOGO`): kept in `detection` only",
}
# Skips that follow from the data's design rather than from damage: logged as information, not as a warning.
EXPECTED_SKIPS = ("box_of_other_split", "unknown_logo")
# Skips of one box rather than of a file: counted, not listed in `skipped_files`.
BOX_SKIPS = ("invalid_box", "box_of_other_split", "unknown_logo")

SPLIT_SCHEMES = ("brands", "hash", "paper", "all-test")

_DESIGN_SUFFIX = re.compile(r"^(?P<base>.+)-(?P<design>\d+)$")


@dataclass
class LogoDet3KConfig(datasets.BuilderConfig):
    """Options of the LogoDet-3K builder; pass them as keyword arguments to `load_logodet3k` or the builder.

    Args:
        split_scheme (`str`, defaults to `"hash"`):
            `"hash"` (the default, as in `train.py`, `logo-eval` and the shipped checkpoints): brand-disjoint, each
            brand placed by a hash of its name and `seed` alone, so that data sets of any size agree: a brand that is
            a test brand of a 300-brand set is never a training brand of a 4,000-brand set generated from the same
            marks. Fractions hold on average, not exactly; a handful of brands can leave a split empty (an error
            that says so).
            `"brands"`: brand-disjoint train/validation/test, stratified by category, seeded by `seed` (exact
            fractions, for small sets; its validation brands are *not* those the shipped checkpoint held out).
            `"paper"`: the paper's split: 10% of brands as test drawn with `random.seed(42)`, then a random 80/20
            image split of the remaining brands into train/validation (validation brands are *seen* brands).
            `"all-test"`: every brand is a test brand, and `test` the only split: to measure a trained model on
            brands of one's own (it must not have trained on them), with its calibrated threshold.
        train_fraction, validation_fraction (`float`): brand fractions of the `"brands"` and `"hash"` schemes (test
            gets the rest).
        seed (`int`, defaults to 0): seed of the `"brands"` and `"hash"` schemes.
        crop_margin (`float`, defaults to 0.1): context added around a box on each side, as a fraction of its size
            (`crops` only).
        crop_max_size (`int`, *optional*): the longest side of a stored crop; larger crops are shrunk (Lanczos) when
            the data set is prepared, so that training decodes small JPEGs instead of photo-sized ones (`crops`
            only; `None` keeps them as they are). `train.py` stores `2 × image_size`:
            `benchmarks/data_pipeline.py` measures the gain.
        few_shot_k (`int`, defaults to 5): brands with at least `few_shot_k + 1` annotated images are flagged
            `few_shot_eligible` (K support shots plus at least one query).
        max_image_pixels (`int`): larger images are skipped as `too_large`.
    """

    split_scheme: str = "hash"
    train_fraction: float = 0.8
    validation_fraction: float = 0.1
    seed: int = 0
    crop_margin: float = CROP_MARGIN
    crop_max_size: int | None = None
    few_shot_k: int = 5
    max_image_pixels: int = 89_478_485  # PIL's own decompression-bomb limit
    crop_jpeg_quality: int = 95

    def __post_init__(self):
        super().__post_init__()
        self.validate()

    def validate(self):
        """Raise a `ValueError` for options that make no sense (also run on keyword overrides given to the builder)."""
        if self.split_scheme not in SPLIT_SCHEMES:
            raise ValueError(f"split_scheme must be one of {SPLIT_SCHEMES}, got {self.split_scheme!r}.")
        if not (0 < self.train_fraction < 1 and 0 <= self.validation_fraction < 1 - self.train_fraction):
            raise ValueError(
                f"Need 0 < train_fraction < 1 and 0 <= validation_fraction < 1 - train_fraction, got "
                f"{self.train_fraction} and {self.validation_fraction}."
            )
        if self.crop_max_size is not None and self.crop_max_size < 16:
            raise ValueError(f"crop_max_size must be at least 16 pixels (or None), got {self.crop_max_size}.")


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image found on disk."""

    image_path: Path
    xml_path: Path
    brand: str
    design: int
    category: str

    @property
    def source(self) -> str:
        """The path relative to the data directory, `<Category>/<Folder>/<file>`."""
        return "/".join(self.image_path.parts[-3:])


@dataclass
class DataIndex:
    """What a scan of the data directory found: annotated images, brands, and the files skipped on the way."""

    records: list[ImageRecord]
    brand_categories: dict[str, str]
    skipped: Counter
    skipped_files: dict[str, list[str]] = field(default_factory=dict)  # reason -> `<Category>/<Folder>/<file>`s

    @property
    def brands(self) -> list[str]:
        return sorted(self.brand_categories)

    def images_per_brand(self) -> Counter:
        return Counter(record.brand for record in self.records)


def brand_and_design(folder: str, sibling_folders: set[str]) -> tuple[str, int]:
    """Split a folder name into (brand, design): `Brand-2` -> ("Brand", 2) when `Brand` or `Brand-M` is a sibling."""
    match = _DESIGN_SUFFIX.match(folder)
    if match:
        base = match["base"]
        if base in sibling_folders or any(
            (m := _DESIGN_SUFFIX.match(other)) and m["base"] == base and other != folder for other in sibling_folders
        ):
            return base, int(match["design"])
    return folder, 0


def scan_data_dir(data_dir: str | Path) -> DataIndex:
    """Find the annotated images of a LogoDet-3K-layout directory (no image is decoded here)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"LogoDet-3K data directory {str(data_dir)!r} does not exist.")
    records, brand_categories, skipped, skipped_files = [], {}, Counter(), defaultdict(list)

    def skip(reason: str, path: Path) -> None:
        skipped[reason] += 1
        skipped_files[reason].append("/".join(path.parts[-3:]))

    for category_dir in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        folders = sorted(p for p in category_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        names = {folder.name for folder in folders}
        for folder in folders:
            brand, design = brand_and_design(folder.name, names)
            brand_categories.setdefault(brand, category_dir.name)
            files = {p.name: p for p in folder.iterdir() if p.is_file() and p.name not in IGNORED_FILES}
            stems_with_images = set()
            for _, path in sorted(files.items()):
                suffix = path.suffix.lower()
                if suffix in IMAGE_EXTENSIONS:
                    stems_with_images.add(path.stem)
                    xml_path = path.with_suffix(".xml")
                    if xml_path.name in files:
                        records.append(ImageRecord(path, xml_path, brand, design, category_dir.name))
                    else:
                        skip("missing_xml", path)
                elif suffix != ".xml":
                    skip("not_an_image_file", path)
            for _, path in sorted(files.items()):
                if path.suffix.lower() == ".xml" and path.stem not in stems_with_images:
                    skip("missing_image", path)
    if not records:
        raise ValueError(
            f"No annotated images in {str(data_dir)!r}: expected <Category>/<Brand>/<n>.jpg with <n>.xml beside it."
        )
    return DataIndex(records, brand_categories, skipped, dict(skipped_files))


def split_brands(
    brand_categories: dict[str, str], train_fraction: float, validation_fraction: float, seed: int
) -> dict[str, str]:
    """Brand-disjoint split stratified by category: every category with 3+ brands is in every split."""
    by_category = defaultdict(list)
    for brand, category in brand_categories.items():
        by_category[category].append(brand)
    assignment = {}
    for category, brands in sorted(by_category.items()):
        brands = sorted(brands)
        random.Random(f"{seed}/{category}").shuffle(brands)
        count = len(brands)
        n_validation = max(1, round(count * validation_fraction)) if count >= 3 and validation_fraction > 0 else 0
        n_test = max(1, round(count * (1 - train_fraction - validation_fraction))) if count >= 2 else 0
        n_train = count - n_validation - n_test
        for index, brand in enumerate(brands):
            assignment[brand] = _split_at(index, n_train, n_train + n_validation)
    return assignment


def _split_at(position: float, train_end: float, validation_end: float) -> str:
    """The split of a brand at `position` of an ordering cut at `train_end` and `validation_end`."""
    return "train" if position < train_end else "validation" if position < validation_end else "test"


def hash_split_of(brand: str, train_fraction: float = 0.8, validation_fraction: float = 0.1, seed: int = 0) -> str:
    """The split of `brand` in the `"hash"` scheme: from its (case-folded) name and `seed` alone. The defaults are
    those of `train.py` and `logo-eval`, e.g. `hash_split_of(name) == "test"` for a brand no model here trains on."""
    digest = hashlib.sha256(f"{seed}/{brand.casefold()}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return _split_at(position, train_fraction, train_fraction + validation_fraction)


def hash_split_brands(
    brands: list[str], train_fraction: float, validation_fraction: float, seed: int
) -> dict[str, str]:
    """Brand-disjoint split in which a brand's split depends only on its (case-folded) name and `seed`."""
    return {brand: hash_split_of(brand, train_fraction, validation_fraction, seed) for brand in brands}


def paper_split(records: list[ImageRecord], brands: list[str]) -> dict[str, list[ImageRecord]]:
    """The paper's split: 10% of the brands (sorted names, `random.seed(42)`) are test; the rest 80/20 by image."""
    rng = random.Random(42)  # the same draws as `random.seed(42)` followed by the same calls
    test_brands = set(rng.sample(sorted(brands), round(0.1 * len(brands))))
    seen = [record for record in records if record.brand not in test_brands]
    rng.shuffle(seen)
    cut = round(0.8 * len(seen))
    return {
        "train": seen[:cut],
        "validation": seen[cut:],
        "test": [record for record in records if record.brand in test_brands],
    }


def clip_box(box: list[float], width: int, height: int) -> list[float] | None:
    """The box clipped to the image, or `None` if nothing of it (or a zero area) is left."""
    xmin, ymin, xmax, ymax = max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])
    return [xmin, ymin, xmax, ymax] if xmax > xmin and ymax > ymin else None


class LogoDet3K(datasets.GeneratorBasedBuilder):
    """LogoDet-3K (or the generated benchmark in its layout) with brand-disjoint splits. See the module docstring."""

    # The version is part of the Arrow cache's path: raise it when the same files give other examples, so that no
    # cache prepared by an earlier version is reused (1.1.0: repaired VOC files are read instead of skipped; 1.2.0:
    # crops say where their box is, `crop_bbox`).
    VERSION = datasets.Version("1.2.0")
    BUILDER_CONFIG_CLASS = LogoDet3KConfig
    BUILDER_CONFIGS = [
        LogoDet3KConfig(
            name="crops", version=VERSION, description="One example per logo box, cropped with a context margin."
        ),
        LogoDet3KConfig(
            name="images", version=VERSION, description="Whole images with their brand's boxes, as the paper trained."
        ),
        LogoDet3KConfig(name="detection", version=VERSION, description="Whole images with every box and its brand."),
    ]
    DEFAULT_CONFIG_NAME = "crops"
    DEFAULT_WRITER_BATCH_SIZE = 256

    def __init__(self, *args, **kwargs):
        # Set before super().__init__(), which already calls _info() and with it the scan.
        self._index: DataIndex | None = None
        #: Skips by split (and `"scan"`), by reason of `SKIP_REASONS`.
        self.skipped: dict[str, Counter] = {}
        #: VOC files read after a repair, by split and kind of `voc.REPAIR_KINDS`.
        self.repaired: dict[str, Counter] = {}
        #: The files skipped, by reason: `<Category>/<Folder>/<file>` paths (box-level skips are only counted).
        self.skipped_files: dict[str, list[str]] = {}
        super().__init__(*args, **kwargs)
        self.config.validate()

    @property
    def index(self) -> DataIndex:
        """The scan of `data_dir` (made once): the brands and categories are the ClassLabel names."""
        if self._index is None:
            if not self.config.data_dir:
                raise ValueError("LogoDet3K needs data_dir: the folder holding the <Category>/<Brand>/ tree.")
            self._index = scan_data_dir(self.config.data_dir)
        return self._index

    def _info(self) -> datasets.DatasetInfo:
        brand = datasets.ClassLabel(names=self.index.brands)
        category = datasets.ClassLabel(names=sorted(set(self.index.brand_categories.values())))
        box = datasets.List(datasets.Value("float32"), length=4)
        common = {
            "image": datasets.Image(),
            "brand": brand,
            "category": category,
            "design": datasets.Value("int32"),
            "few_shot_eligible": datasets.Value("bool"),
            "source": datasets.Value("string"),
        }
        if self.config.name == "crops":
            features = {**common, "bbox": box, "crop_bbox": box}
        elif self.config.name == "images":
            features = {**common, "bbox": datasets.List(box), "other_brands": datasets.List(datasets.Value("string"))}
        else:
            features = {**common, "objects": datasets.List({"bbox": box, "brand": brand})}
        return datasets.DatasetInfo(
            description=__doc__.split("\n\n")[0],
            features=datasets.Features(features),
            homepage="https://github.com/Wangjing1551/LogoDet-3K-Dataset",
        )

    def _split_generators(self, dl_manager):
        index = self.index
        splits = (datasets.Split.TRAIN, datasets.Split.VALIDATION, datasets.Split.TEST)
        if self.config.split_scheme == "all-test":
            records_by_split = {"test": index.records}
            self._brand_splits = {brand: {"test"} for brand in index.brands}
            splits = (datasets.Split.TEST,)  # no empty train and validation splits to trip over
        elif self.config.split_scheme == "paper":
            records_by_split = paper_split(index.records, index.brands)
            test_brands = {record.brand for record in records_by_split["test"]}
            # train and validation share the seen brands; only test brands are unseen
            self._brand_splits = {
                brand: {"test"} if brand in test_brands else {"train", "validation"} for brand in index.brands
            }
        else:
            fractions = (self.config.train_fraction, self.config.validation_fraction, self.config.seed)
            if self.config.split_scheme == "hash":
                assignment = hash_split_brands(index.brands, *fractions)
                empty = {"train", "validation", "test"} - set(assignment.values())
                if empty:
                    raise ValueError(
                        f"The hash split of {len(index.brands)} brands left {sorted(empty)} empty; use "
                        "split_scheme='brands' (exact, stratified fractions) for so few brands."
                    )
            else:
                assignment = split_brands(index.brand_categories, *fractions)
            records_by_split = defaultdict(list)
            for record in index.records:
                records_by_split[assignment[record.brand]].append(record)
            self._brand_splits = {brand: {split} for brand, split in assignment.items()}
        self.skipped["scan"] = Counter(index.skipped)
        for reason, sources in index.skipped_files.items():
            self.skipped_files.setdefault(reason, []).extend(sources)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"records": records_by_split[split], "split": split})
            for split in splits
        ]

    def _generate_examples(self, records: list[ImageRecord], split: str):
        skipped = self.skipped.setdefault(str(split), Counter())
        repaired = self.repaired.setdefault(str(split), Counter())
        known_brands = {brand.casefold(): brand for brand in self.index.brand_categories}
        image_counts = self.index.images_per_brand()
        mismatches_logged = set()
        for record in records:
            try:
                annotation = parse_voc(record.xml_path)
            except (ParseError, ValueError, TypeError, OSError) as error:
                logger.debug("Skipping %s: %s", record.xml_path, error)
                self._skip(skipped, "malformed_xml", record, xml=True)
                continue
            image_size, objects = annotation.size, annotation.objects
            if not objects:
                self._skip(skipped, "no_objects", record, xml=True)
                continue
            checked = self._check_image(record, skipped, keep_pixels=self.config.name == "crops")
            if checked is None:
                continue
            (width, height), image = checked
            repaired.update(annotation.repairs)
            if image_size is not None and image_size != (width, height):
                logger.debug("%s: XML size %s differs from the image's %s", record.source, image_size, (width, height))
            labelled = []  # (brand, box); brand None for an unknown logo
            for name, box in objects:
                clipped = clip_box(box, width, height)
                if clipped is None:
                    skipped["invalid_box"] += 1
                elif name == UNKNOWN_LOGO:
                    labelled.append((None, clipped))
                else:
                    labelled.append((self._object_brand(name, record, known_brands, mismatches_logged), clipped))
            if self.config.name != "detection":
                skipped["unknown_logo"] += sum(brand is None for brand, _ in labelled)
                labelled = [(brand, box) for brand, box in labelled if brand is not None]
            if not labelled:
                self._skip(skipped, "no_valid_boxes", record)
                continue
            common = {
                "brand": record.brand,
                "category": record.category,
                "design": record.design,
                "few_shot_eligible": image_counts[record.brand] >= self.config.few_shot_k + 1,
                "source": record.source,
            }
            if self.config.name == "crops":
                for box_index, (brand, box) in enumerate(labelled):
                    if str(split) not in self._brand_splits[brand]:
                        skipped["box_of_other_split"] += 1
                        continue
                    crop, box_in_crop = self._crop_jpeg(image, box)
                    yield (
                        f"{record.source}#{box_index}",
                        {
                            **common,
                            "image": {"bytes": crop, "path": None},
                            "brand": brand,
                            "bbox": box,
                            "crop_bbox": box_in_crop,
                            "few_shot_eligible": image_counts[brand] >= self.config.few_shot_k + 1,
                        },
                    )
            elif self.config.name == "images":
                yield (
                    record.source,
                    {
                        **common,
                        "image": str(record.image_path),
                        "bbox": [box for brand, box in labelled if brand == record.brand],
                        "other_brands": sorted({brand for brand, _ in labelled if brand != record.brand}),
                    },
                )
            else:
                # ClassLabel's -1 is "no label": a logo of no brand of the data set
                objects = [{"bbox": box, "brand": -1 if brand is None else brand} for brand, box in labelled]
                yield record.source, {**common, "image": str(record.image_path), "objects": objects}

    def _check_image(
        self, record: ImageRecord, skipped: Counter, keep_pixels: bool
    ) -> tuple[tuple[int, int], Image.Image | None] | None:
        """Decode an image to prove it is whole: its (width, height) and, with `keep_pixels`, the image; or `None`
        after counting why it is skipped. Without `keep_pixels` a JPEG decodes at 1/8 scale: the whole stream is
        still read, so a truncated file fails, at a fraction of the cost."""
        try:
            with Image.open(record.image_path) as image:
                size = image.size
                if size[0] * size[1] > self.config.max_image_pixels:
                    self._skip(skipped, "too_large", record)
                    return None
                if not keep_pixels:
                    image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                image.load()
                return size, image.copy() if keep_pixels else None
        except Image.DecompressionBombError:  # beyond twice PIL's own limit: refused before our check
            self._skip(skipped, "too_large", record)
        except (OSError, SyntaxError, ValueError) as error:
            logger.debug("Skipping %s: %s", record.image_path, error)
            self._skip(skipped, "unreadable_image", record)
        return None

    def _skip(self, skipped: Counter, reason: str, record: ImageRecord, xml: bool = False) -> None:
        """Count a skipped file and list it (its XML, with `xml`, else its image)."""
        skipped[reason] += 1
        path = record.xml_path if xml else record.image_path
        self.skipped_files.setdefault(reason, []).append("/".join(path.parts[-3:]))

    def _object_brand(self, name: str, record: ImageRecord, known_brands: dict, logged: set) -> str:
        """The brand a VOC object name refers to: another brand of the data set, else the folder's brand."""
        base = _DESIGN_SUFFIX.sub(r"\g<base>", name)
        for candidate in (name, base):
            brand = known_brands.get(candidate.casefold())
            if brand is not None:
                return brand
        if (record.brand, name) not in logged:
            logged.add((record.brand, name))
            logger.info("VOC name %r in %s names no brand folder; using the folder's brand.", name, record.source)
        return record.brand

    def _crop_jpeg(self, image: Image.Image, box: list[float]) -> tuple[bytes, list[float]]:
        """The box plus `crop_margin` of context on each side ([`~modeling_logo.detection.crop_box`]), shrunk to
        `crop_max_size`, as JPEG bytes (PNG would be ~5x larger for photos); and where the box lies in it, in the
        stored crop's pixels (what box-jittered training crops from: `TrainAugmentation(box_jitter=...)`)."""
        crop, (left, top) = crop_box(image, box, self.config.crop_margin), crop_origin(box, self.config.crop_margin)
        full_width, full_height = crop.size
        if self.config.crop_max_size and max(crop.size) > self.config.crop_max_size:
            crop.thumbnail((self.config.crop_max_size,) * 2, Image.Resampling.LANCZOS)
        scale_x, scale_y = crop.width / full_width, crop.height / full_height
        box_in_crop = [
            (box[0] - left) * scale_x,
            (box[1] - top) * scale_y,
            (box[2] - left) * scale_x,
            (box[3] - top) * scale_y,
        ]
        buffer = io.BytesIO()
        to_rgb(crop).save(buffer, format="JPEG", quality=self.config.crop_jpeg_quality)
        return buffer.getvalue(), box_in_crop

    def download_and_prepare(self, *args, **kwargs):
        """Prepare the Arrow cache (instant when it exists) and log what was skipped and why."""
        super().download_and_prepare(*args, **kwargs)
        report_path = Path(self.cache_dir) / "skipped.json"
        if self.skipped:  # generated in this run
            report = {
                "skipped": {split: dict(counts) for split, counts in self.skipped.items()},
                "repaired": {split: dict(counts) for split, counts in self.repaired.items()},
                "skipped_files": {reason: sorted(files) for reason, files in sorted(self.skipped_files.items())},
            }
            report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        elif report_path.is_file():
            report = json.loads(report_path.read_text(encoding="utf-8"))
            self.skipped = {split: Counter(counts) for split, counts in report["skipped"].items()}
            self.repaired = {split: Counter(counts) for split, counts in report["repaired"].items()}
            self.skipped_files = report["skipped_files"]
        totals = sum(self.skipped.values(), Counter())
        for expected in (False, True):
            counts = {reason: n for reason, n in sorted(totals.items()) if (reason in EXPECTED_SKIPS) == expected}
            if counts:
                files = [f for reason in counts if reason not in BOX_SKIPS for f in self.skipped_files.get(reason, [])]
                (logger.info if expected else logger.warning)(
                    "LogoDet-3K: skipped %s (the reasons are explained in dataset_scripts.logodet3k.SKIP_REASONS)%s",
                    ", ".join(f"{count} {reason}" for reason, count in counts.items()),
                    f"; files: {', '.join(files[:5])}{', ...' if len(files) > 5 else ''} (all in {report_path})."
                    if files
                    else ".",
                )
        repairs = sum(self.repaired.values(), Counter())
        if repairs:
            logger.info(
                "LogoDet-3K: read VOC files after repairing %s (see dataset_scripts.voc.REPAIR_KINDS).",
                ", ".join(f"{count} {kind}" for kind, count in sorted(repairs.items())),
            )


def load_logodet3k(
    data_dir: str | Path,
    config: str = "crops",
    *,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
    **config_kwargs,
) -> datasets.DatasetDict:
    """Load LogoDet-3K (or the generated benchmark) as a `DatasetDict` with `train`, `validation` and `test` splits
    (only `test` with `split_scheme="all-test"`).

    Args:
        data_dir: the folder holding `<Category>/<Brand>/<n>.jpg` + `<n>.xml`.
        config: `"crops"`, `"images"` or `"detection"`.
        cache_dir: where `datasets` keeps the Arrow files (default: its own cache).
        num_proc: processes for preparing (the first run decodes every image once).
        **config_kwargs: [`LogoDet3KConfig`] fields, e.g. `split_scheme="paper"`, `seed=1`, `crop_margin=0.2`.
    """
    builder = LogoDet3K(
        data_dir=str(Path(data_dir).resolve()),
        config_name=config,
        cache_dir=None if cache_dir is None else str(cache_dir),
        **config_kwargs,
    )
    builder.download_and_prepare(num_proc=num_proc)
    return builder.as_dataset()


def select_brands(dataset: datasets.Dataset, names) -> datasets.Dataset:
    """The rows of `dataset` whose brand is one of `names` (case-folded): the same brands in another data set of this
    layout, e.g. drawn in other visual worlds for `train.py --out_of_world_dir`. Labels stay `dataset`'s own."""
    wanted = {name.casefold() for name in names}
    ids = {i for i, name in enumerate(dataset.features["brand"].names) if name.casefold() in wanted}
    return dataset.filter(lambda brand: brand in ids, input_columns="brand", desc="Brands of the reference split")


def load_same_brands(
    data_dir: str | Path, splits, config: str = "crops", *, names=("validation", "test"), **load_options
) -> dict[str, datasets.Dataset]:
    """The rows of another data set in this layout (e.g. the same brands drawn in other visual worlds, the
    cross-world test) of each split's brands in `splits`, matched by name: `{name: rows}` for `names`. No other
    brand enters, whatever split the other set's brands would get on their own. `load_options`: of
    [`load_logodet3k`] (its split options are ignored: the other set is read whole)."""
    options = {**load_options, "split_scheme": "all-test"}
    other = load_logodet3k(data_dir, config, **options)["test"]
    return {name: select_brands(other, brand_names(splits[name])) for name in names}


def brand_names(dataset: datasets.Dataset) -> list[str]:
    """The names of the brands that have rows in `dataset` (a split of [`load_logodet3k`]), sorted."""
    names = dataset.features["brand"].names
    return sorted(names[i] for i in set(dataset["brand"]))


def export_parquet(
    dataset: datasets.DatasetDict,
    directory: str | Path,
    *,
    config_name: str = "crops",
    license: str = "other",
    max_shard_bytes: int = 500 * 2**20,
) -> Path:
    """Write a `DatasetDict` as Parquet with the image bytes embedded, plus a dataset card: a folder that
    `datasets.load_dataset(folder)` reads anywhere and that can be uploaded as a Hub data set repo as it is
    (`DatasetDict.push_to_hub(repo_id)` does the same directly).

    Returns the folder; its card lists the splits, the brand and category names, and the licence.
    """
    from datasets.table import embed_table_storage  # what push_to_hub uses to inline files

    directory = Path(directory)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for split, split_dataset in dataset.items():
        num_shards = max(1, -(-(split_dataset.data.nbytes) // max_shard_bytes))
        for shard_index in range(num_shards):
            shard = split_dataset.shard(num_shards, shard_index, contiguous=True).with_format("arrow")
            shard = shard.map(embed_table_storage, batched=True, keep_in_memory=True)
            shard.to_parquet(str(directory / "data" / f"{split}-{shard_index:05d}-of-{num_shards:05d}.parquet"))
    features = next(iter(dataset.values())).features
    splits = "\n".join(f"  - split: {split}\n    path: data/{split}-*.parquet" for split in dataset)
    rows = "\n".join(f"| {split} | {len(split_dataset):,} |" for split, split_dataset in dataset.items())
    (directory / "README.md").write_text(
        f"""---
license: {license}
task_categories:
- image-classification
- image-feature-extraction
tags:
- logo-recognition
- few-shot
configs:
- config_name: {config_name}
  data_files:
{splits}
---
# Logo recognition data ({config_name})

Brand-disjoint splits written by `dataset_scripts.logodet3k.export_parquet`: no brand of one split appears in
another (unless the paper's split was chosen, where validation brands are seen in training).

| split | rows |
| --- | --- |
{rows}

Categories: {", ".join(features["category"].names)}.

Brands ({len(features["brand"].names)}): {", ".join(features["brand"].names)}.

Logos are trademarks of their owners. LogoDet-3K images are under the LogoDet-3K terms of use; generated images
reuse CC0 brand marks (simple-icons, iconify "logos") and CC0 photos (scikit-image).
""",
        encoding="utf-8",
    )
    return directory


__all__ = [
    "CATEGORIES",
    "REPAIR_KINDS",
    "SKIP_REASONS",
    "LogoDet3K",
    "LogoDet3KConfig",
    "brand_and_design",
    "brand_names",
    "export_parquet",
    "load_logodet3k",
    "load_same_brands",
    "paper_split",
    "scan_data_dir",
    "select_brands",
    "split_brands",
]
