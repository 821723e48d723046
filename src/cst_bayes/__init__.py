"""cst_bayes: a Bayesian reanalysis of the LEA-CST survey (Mitchell et al. 2024).

The article publishes only tables; the microdata are restricted. This package carries the
published tables as data (:mod:`cst_bayes.data.published`), audits them, reproduces the
frequentist analysis (:mod:`cst_bayes.frequentist`), reconstructs an ensemble of *synthetic*
agency-level datasets consistent with the tables (:mod:`cst_bayes.reconstruct`), fits
hierarchical Bayesian models (:mod:`cst_bayes.bayes`), checks them against the published
tables (:mod:`cst_bayes.checks`), studies survey weighting (:mod:`cst_bayes.weighting`) and
writes a posterior report (:mod:`cst_bayes.run.report`).

The main verbs are importable from the top (``import cst_bayes as cb; cb.fit(...)``); each is
imported on first use, so ``import cst_bayes`` stays fast (no PyMC, ArviZ or numba).
See ``docs/tutorial.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: name -> (module, attribute): the public verbs, imported lazily.
_VERBS: dict[str, tuple[str, str]] = {
    "load": ("cst_bayes.data.microdata", "load"),
    "simulate": ("cst_bayes.data.simulate", "simulate"),
    "load_ensemble": ("cst_bayes.data.ensemble", "load_ensemble"),
    "build_ensemble": ("cst_bayes.reconstruct.ensemble", "build_ensemble"),
    "load_spec": ("cst_bayes.bayes.spec", "load_spec"),
    "list_specs": ("cst_bayes.bayes.spec", "list_specs"),
    "build": ("cst_bayes.bayes.build", "build"),
    "fit": ("cst_bayes.bayes.fit", "fit"),
    "fit_ensemble": ("cst_bayes.bayes.pooling", "fit_ensemble"),
    "read_fit": ("cst_bayes.bayes.io", "read_fit"),
    "write_fit": ("cst_bayes.bayes.io", "write_fit"),
    "predict_risk": ("cst_bayes.bayes.effects", "predict_risk"),
    "prevalence_ratios": ("cst_bayes.bayes.effects", "prevalence_ratios"),
    "compare_published": ("cst_bayes.bayes.effects", "compare_published"),
    "ppc": ("cst_bayes.checks.ppc", "ppc_tables"),
    "loo": ("cst_bayes.checks.comparison", "loo_table"),
    "weights": ("cst_bayes.weighting.weights", "weights_table"),
    "reproduce": ("cst_bayes.run.pipeline", "reproduce"),
    "report": ("cst_bayes.run.report", "build_report"),
}

__all__ = ["__version__", *_VERBS]


def __getattr__(name: str) -> Any:
    if name in _VERBS:
        module, attr = _VERBS[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'cst_bayes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_VERBS))
