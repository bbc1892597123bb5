"""The project's one cache directory convention (brand marks, ONNX exports, the Space's example scenes)."""

import os
from pathlib import Path


def cache_root() -> Path:
    """`$MODELING_LOGO_CACHE` if set, else `$XDG_CACHE_HOME/modeling-logo` (`~/.cache/modeling-logo`)."""
    if root := os.environ.get("MODELING_LOGO_CACHE"):
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "modeling-logo"
