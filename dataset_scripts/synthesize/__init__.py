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

**Visual worlds** (optional, [`worlds`]): `photo_families` names where backgrounds come from
([`PHOTO_FAMILIES`]: `scikit-image`, `surfaces`, and wallpapers of Debian packages read where the package installs
them, each file with its licence), `styles` how logos sit in the scene ([`COMPOSITION_STYLES`]: `pasted`, the
composition above, and printed, signage, screen, small and cut, colour-cast, low-light, motion-blur, mark variants,
busy textures). Each image draws its family and style from a generator of its own, seeded from
`(seed, folder, n, "world")`, and its VOC file records them in a `<world>` element; `"all"` ([`ALL_WORLDS`]) takes
every installed family (with a note for the others) or every style. Without either, the output is byte-identical to
the generator's before worlds existed: scikit-image photos (80%) or surfaces, `pasted`, no `<world>`.

**Reproducibility**: each image has its own random generator seeded from `(seed, folder, n)`, so the files are
byte-identical for the same arguments whatever the number of worker processes (given the same package versions).

**Licences**: marks are used only if CC0-1.0 (see `logo_sources`); `LICENSES.md` in the output lists the sources,
their versions and licences, and every mark used. The marks are trademarks of their owners, used here only to
benchmark logo recognition; the generated images must not suggest any endorsement.

```bash
python -m dataset_scripts.synthesize --out data/synthetic-logos --brands 300 --images-per-brand 12 --seed 0 \\
    --preview data/synthetic-logos-preview.png
```

The stages live in their own modules: [`plan`] (brands, designs, image counts, rendered marks), [`compose`] (one
scene and its boxes), [`warp`] (geometric warps of a logo layer), [`worlds`] (photo families and composition
styles) and [`write`] (files, worker processes, licences, preview); [`cli`] is the command line.
"""

from .cli import main
from .compose import BACKGROUNDS, InvisibleMarkError, Scene, SceneObject, compose_scene
from .plan import DesignPlan, category_of, plan_designs, split_images, stable_hash
from .worlds import ALL_WORLDS, COMPOSITION_STYLES, OTHER_WORLDS, PHOTO_FAMILIES, describe_worlds, training_worlds
from .write import SynthesisSummary, synthesize, write_preview


__all__ = [
    "ALL_WORLDS",
    "BACKGROUNDS",
    "COMPOSITION_STYLES",
    "DesignPlan",
    "InvisibleMarkError",
    "OTHER_WORLDS",
    "PHOTO_FAMILIES",
    "Scene",
    "SceneObject",
    "SynthesisSummary",
    "category_of",
    "compose_scene",
    "describe_worlds",
    "main",
    "plan_designs",
    "split_images",
    "stable_hash",
    "synthesize",
    "training_worlds",
    "write_preview",
]
