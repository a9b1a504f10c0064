"""Output files: everything thoughtlens writes gets the same permissions.

safetensors writes its files 0600 and temporary directories are made 0700, so an output assembled in a
temporary directory and renamed into place would otherwise be private while every other output is not.
"""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    try:  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_modes(path: str | os.PathLike) -> None:
    """Give a written output (a file, or a directory and everything in it) the mode of any other file the
    process writes: 0666 for files and 0777 for directories, less the umask (0644 / 0755 under the usual
    umask 022). safetensors writes its files 0600 and temporary directories are made 0700."""
    mask = _umask()
    root = Path(path)
    for p in [root, *(root.rglob("*") if root.is_dir() else [])]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
