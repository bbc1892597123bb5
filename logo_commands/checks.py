"""What the command lines check before they import torch, transformers or `modeling_logo`: one-line usage errors,
the names the package shares with them (`hub_names`), and whether a model or file named on the command line can
exist (`is_missing_path`). Used by `train.py`, `train_localizer.py`, the Space's launcher, `logo-detect` and
`logo-gallery`.

This module imports only the standard library (and `huggingface_hub`'s repo-id rule, which imports no torch).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import runpy
import types
from pathlib import Path
from typing import NoReturn


class OneLineErrors:
    """An `argparse.ArgumentParser` mixin: a mistake in the command line is one line on stderr, `PROG: error:
    MESSAGE`, and exit status 2, instead of the whole usage text before it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """`argparse.ArgumentParser` with one-line errors; its subparsers have them too."""


@functools.cache
def hub_names() -> types.SimpleNamespace:
    """The values of `modeling_logo/names.py` (loss and miner names, the gallery's file names), read without
    importing `modeling_logo`, whose `__init__` imports torch and transformers. The file holds plain values and
    imports nothing, so that reading it runs nothing else; the package imports its names from the same file."""
    spec = importlib.util.find_spec("modeling_logo")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("modeling_logo is not installed: pip install -e . in the repository")
    values = runpy.run_path(str(Path(next(iter(spec.submodule_search_locations))) / "names.py"))
    return types.SimpleNamespace(**{name: values[name] for name in values["__all__"]})


def is_missing_path(name: str | os.PathLike, *, folder: bool = False) -> bool:
    """Whether `name`, given for a saved model (or a file), is nothing on this machine (with `folder`: no folder) and
    cannot be a Hub id either (by the Hub's own rule: `name` or `namespace/name`), such as `./typo`, `/no/such/dir` or
    `runs/a/b`: a mistake to report at once. A name that may be a Hub id is left to the loading, which says whether the
    Hub has it."""
    name = os.fspath(name)
    path = os.path.expanduser(name)
    if os.path.isdir(path) if folder else os.path.exists(path):
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


__all__ = ["ArgumentParser", "OneLineErrors", "hub_names", "is_missing_path"]
