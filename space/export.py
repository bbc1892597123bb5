"""Write a self-contained Hugging Face Space folder for the demo, ready to upload as it is.

    python -m space.export build/space                      # the shipped embedder and localiser, example brands
    python -m space.export build/space --model runs/logo-model --localizer none --no_examples
    hf upload <user>/<space-name> build/space . --repo-type space

The folder holds `app.py`, the packages it imports that are not on PyPI (`modeling_logo`, `logo_commands` for the
checks of its command line, and `dataset_scripts` for the example brands, found by reading the imports), the model
in `logo-model/` and the localiser in `logo-localizer/` (where `app.py` looks first), `requirements.txt` (gradio
pinned to the installed version) and a `README.md` whose YAML front matter configures the Space: `sdk: gradio`,
`sdk_version` (the installed gradio's), `app_file: app.py` and `license`.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import SpaceCard


SPACE_DIR = Path(__file__).resolve().parent
REPO = SPACE_DIR.parent
DEFAULT_MODEL = REPO / "checkpoints" / "logo-embedding-resnet-small"
DEFAULT_LOCALIZER = REPO / "checkpoints" / "logo-localizer-resnet-small"
#: Where app.py looks first for its model and localiser (`space.app.DEFAULT_MODEL_DIRS`, `DEFAULT_LOCALIZER_DIRS`).
MODEL_DIR, LOCALIZER_DIR = "logo-model", "logo-localizer"
#: The packages only the launcher's example brands need (left out with `--no_examples`).
EXAMPLE_PACKAGES = ("dataset_scripts",)
#: What a saved model needs: its config, weights and processor config, and the code `save_pretrained` copies for
#: `trust_remote_code` (training leftovers such as checkpoints/, logs/ and curves are not copied).
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".py")
LICENSE = "apache-2.0"
NONE = "none"


def imported_names(files: Iterable[Path]) -> set[str]:
    """The top-level names of every module the Python `files` import (at any depth: lazy imports too), except
    relative imports."""
    names = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def local_packages(app_file: Path, root: Path = REPO) -> dict[str, Path]:
    """The packages of `root` (this repository) that `app_file` imports, directly or through one another: the code
    a Space cannot install from PyPI. Returns `{name: package directory}`."""
    found: dict[str, Path] = {}
    files = [app_file]
    while files:
        new = {}
        for name in sorted(imported_names(files) - set(found)):
            try:
                spec = importlib.util.find_spec(name) if name not in sys.builtin_module_names else None
            except (ImportError, ValueError):
                spec = None  # not installed here: not one of this repository's packages either
            locations = list(spec.submodule_search_locations or []) if spec is not None else []
            for location in map(Path, locations):
                # A folder at the root of the repository (not an installed package, even one in a venv inside it).
                if location.resolve().parent == root.resolve() and (location / "__init__.py").is_file():
                    new[name] = location
        found.update(new)
        files = [file for location in new.values() for file in location.rglob("*.py")]
    return found


def check_saved_model(source: str | Path, what: str) -> None:
    """Raise a `ValueError` naming the option (`--model`, `--localizer`) when `source` is not a directory saved with
    `save_pretrained`."""
    if not (Path(source) / "config.json").is_file():
        variable = "LOGO_MODEL" if what == "model" else "LOGO_LOCALIZER"
        raise ValueError(
            f"--{what} {source} is not a directory saved with save_pretrained (it has no config.json). For a model "
            f"on the Hub, pass --{what} {NONE} and set the Space variable {variable}=<user>/<repo> instead."
        )


def copy_model(source: str | Path, target: Path) -> None:
    """Copy a model saved with `save_pretrained` (config, weights, processor config, remote code) to `target`."""
    target.mkdir(parents=True)
    for file in sorted(Path(source).iterdir()):
        if file.is_file() and file.name.endswith(MODEL_FILE_SUFFIXES):
            shutil.copy2(file, target / file.name)


def gradio_version() -> str:
    return importlib.metadata.version("gradio")


def write_requirements(target: Path) -> None:
    """`space/requirements.txt`, with gradio pinned to the installed version (the `sdk_version` of the README)."""
    lines = (SPACE_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pinned = [f"gradio=={gradio_version()}" if re.match(r"gradio\s*([=<>!~]|$)", line) else line for line in lines]
    target.write_text("\n".join(pinned) + "\n", encoding="utf-8")


def write_readme(target: Path) -> None:
    """`space/README.md` with the Space's front matter set: `sdk: gradio` at the installed version, `app_file`,
    `license`."""
    card = SpaceCard.load(SPACE_DIR / "README.md")
    card.data.sdk, card.data.sdk_version, card.data.app_file = "gradio", gradio_version(), "app.py"
    card.data.license = card.data.license or LICENSE
    card.save(target)


def export_space(
    folder: str | Path,
    *,
    model: str | Path | None = DEFAULT_MODEL,
    localizer: str | Path | None = DEFAULT_LOCALIZER,
    examples: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the Space folder (see the module's docstring) and return its path.

    Args:
        folder: where to write it; it must not exist or be empty, unless `overwrite`.
        model: a model directory saved with `save_pretrained`, copied to `logo-model/`; `None`: no model (the
            Space then loads `LOGO_MODEL`, a Hub id set as a Space variable).
        localizer: a localiser directory, copied to `logo-localizer/`; `None`: none (the window search, or
            `LOGO_LOCALIZER`).
        examples: also copy the packages that generate the example brands (`dataset_scripts`).
        overwrite: replace what an earlier export wrote in `folder` (other files there are kept).

    Raises:
        `FileExistsError`: `folder` holds files and `overwrite` is `False`. `ValueError`: a model directory is not
        one saved with `save_pretrained`.
    """
    folder = Path(folder)
    models = [
        (source, name, what)
        for source, name, what in ((model, MODEL_DIR, "model"), (localizer, LOCALIZER_DIR, "localizer"))
        if source is not None
    ]
    for source, _name, what in models:  # before anything is written
        check_saved_model(source, what)
    all_packages = local_packages(SPACE_DIR / "app.py")
    packages = {name: path for name, path in all_packages.items() if examples or name not in EXAMPLE_PACKAGES}
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} is not empty: choose a new folder, or pass --overwrite.")
        for name in ["app.py", "requirements.txt", "README.md", MODEL_DIR, LOCALIZER_DIR, *all_packages]:
            path = folder / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    for source, name, _what in models:
        copy_model(source, folder / name)
    shutil.copy2(SPACE_DIR / "app.py", folder / "app.py")
    for name, path in packages.items():
        shutil.copytree(path, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    write_requirements(folder / "requirements.txt")
    write_readme(folder / "README.md")
    return folder


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m space.export", description="Write a self-contained Hugging Face Space folder for the demo."
    )
    parser.add_argument("folder", help="the folder to write (new or empty), e.g. build/space")
    parser.add_argument(
        "--model",
        default=str(DEFAULT_MODEL),
        help=f"model directory saved with save_pretrained (default: the shipped one); '{NONE}': set LOGO_MODEL instead",
    )
    parser.add_argument(
        "--localizer",
        default=str(DEFAULT_LOCALIZER),
        help=f"localiser directory (default: the shipped one); '{NONE}': the window search (or LOGO_LOCALIZER)",
    )
    parser.add_argument("--no_examples", action="store_true", help="leave out the example brands' generator")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in the folder")
    args = parser.parse_args(argv)
    try:
        folder = export_space(
            args.folder,
            model=None if args.model.lower() == NONE else args.model,
            localizer=None if args.localizer.lower() == NONE else args.localizer,
            examples=not args.no_examples,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"Wrote the Space to {folder}: upload it with `hf upload <user>/<space-name> {folder} . --repo-type space`.")
    return folder


if __name__ == "__main__":
    main()
