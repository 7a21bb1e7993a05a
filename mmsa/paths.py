"""Where things live: the data cache, the libraries root, the shipped weights."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "mmsa.pt"


def cache_dir() -> Path:
    """Download/feature cache, outside the repo: ``$MMSA_CACHE`` or ``~/.cache/mmsa``."""
    root = os.environ.get("MMSA_CACHE") or (Path.home() / ".cache" / "mmsa")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def indexes_dir(override: str | os.PathLike | None = None) -> Path:
    """Root folder of built libraries: ``override``, else ``$MMSA_INDEXES``, else ./indexes."""
    root = override or os.environ.get("MMSA_INDEXES") or (Path.cwd() / "indexes")
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
