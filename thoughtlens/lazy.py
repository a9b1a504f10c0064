"""Lazy package exports: `package.Name` imports the module that defines Name on first use.

Packages export their public names without importing their modules up front, so that importing one light
module of a package (an option check, a config) does not pull in torch, transformers or the rest of the
package, and so that sibling modules may import each other's modules without an import cycle through
`__init__`. Each package's `__init__` lists its names once and keeps a TYPE_CHECKING block for type checkers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`, whose public names live in the modules `exports` maps them to."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
