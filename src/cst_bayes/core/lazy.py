"""Deferred imports: a heavy module that a dependency imports at its top but we rarely use.

nutpie's ``sample`` module runs ``import arviz`` and evaluates ``arviz.InferenceData`` in its
function annotations at import time; importing ArviZ 0.x costs 2-4 s of a 5 s fit
(matplotlib, scipy.stats and a numba compile of its ECDF helpers). The fit path reads nutpie's
raw trace and computes diagnostics with ``arviz_stats``, so it never needs ``arviz``.
:func:`import_deferring` imports such a dependency with the heavy module stood in for by a
placeholder (annotations only), then points the dependency at the real module, loaded on first
attribute access: any later use (``az.loo``, nutpie's own conversion) behaves as if imported
eagerly.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any


def defer(name: str) -> ModuleType | None:
    """Register ``name`` in ``sys.modules`` to load on first attribute access (the standard
    library's :class:`importlib.util.LazyLoader`); returns the module already imported, or None
    if it is not installed."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return None
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


class _Placeholder(ModuleType):
    """Stands in for a module while a dependency's top level runs: every attribute is ``Any``
    (what an annotation needs); nothing can be called through it."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Any


def import_deferring(module: str, heavy: str, *, users: tuple[str, ...]) -> ModuleType:
    """Import ``module`` without loading ``heavy`` at import time.

    ``users`` are the submodules of ``module`` that hold a global named ``heavy``; each is
    pointed at the real ``heavy`` (deferred by :func:`defer`) once the import is done.
    """
    if module in sys.modules or heavy in sys.modules:
        return importlib.import_module(module)
    sys.modules[heavy] = _Placeholder(heavy)
    try:
        mod = importlib.import_module(module)
    finally:
        del sys.modules[heavy]
    real = defer(heavy)
    for user in users:
        setattr(sys.modules[user], heavy, real)
    return mod


def nutpie() -> ModuleType:
    """nutpie, imported with ArviZ deferred (what every sampler of the package calls)."""
    return import_deferring("nutpie", "arviz", users=("nutpie.sample",))
