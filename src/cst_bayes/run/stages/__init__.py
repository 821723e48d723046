"""The stage bodies of ``cst-bayes reproduce``, one module each.

A stage's cache key hashes its module and everything that module imports in the package
(:mod:`cst_bayes.run.cache`), so each body imports only what it runs.
"""

from __future__ import annotations

from typing import Final

#: Stages in run order; ``per_model`` stages have one unit per model spec.
ORDER: Final[tuple[str, ...]] = (
    "audit", "data", "tables", "models", "prior_check", "ppc", "psense", "prior_scale",
    "compare", "weights",
)  # fmt: skip
PER_MODEL: Final[frozenset[str]] = frozenset(
    {"models", "prior_check", "ppc", "psense", "prior_scale"}
)
#: Per-model stages that run only for some models: the refits of ``prior_scale`` cost
#: 2 x (slots) fits each, so they cover the two Table 3 models with agency size.
ONLY_MODELS: Final[dict[str, tuple[str, ...]]] = {
    "prior_scale": ("logit_approaches_strata", "logit_count_strata"),
}


def module_name(stage: str) -> str:
    """The module that holds a stage's body (its cache-key entry point)."""
    return f"{__name__}.{stage}"
