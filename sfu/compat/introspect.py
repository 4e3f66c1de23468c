"""Helpers of the internals checks: does an aiortc/aioice function still contain the code
the compat modules rely on (every module's `check_*_internals()` uses it)."""

from __future__ import annotations

import inspect
from typing import Any


def source_has(obj: Any, *needles: str) -> list[str]:
    """The `needles` missing from `obj`'s source, named for a problem list (empty: all
    there); an object without source is one problem."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return [f"{getattr(obj, '__qualname__', obj)} (source unavailable)"]
    return [f"{obj.__qualname__}: {n!r}" for n in needles if n not in source]
