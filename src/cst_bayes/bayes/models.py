"""The public API of the Bayesian models, gathered from the modules that implement it.

``from cst_bayes.bayes import models as M`` keeps working: specs (:mod:`~cst_bayes.bayes.spec`),
families (:mod:`~cst_bayes.bayes.families`), designs and patterns
(:mod:`~cst_bayes.bayes.design`), the PyMC model (:mod:`~cst_bayes.bayes.build`), samplers
(:mod:`~cst_bayes.bayes.samplers`), fits (:mod:`~cst_bayes.bayes.fit`), files
(:mod:`~cst_bayes.bayes.io`) and derived quantities (:mod:`~cst_bayes.bayes.effects`).
New code imports from those modules. ``FAST_LOGP`` lives in :mod:`cst_bayes.bayes.samplers`
(set it there).
"""

from __future__ import annotations

from cst_bayes.bayes.build import build, prior_scales
from cst_bayes.bayes.build import build_from_patterns as _build_from_patterns
from cst_bayes.bayes.convergence import (
    BFMI_MIN,
    ESS_MIN,
    RHAT_MAX,
    SamplerWarning,
    diagnose,
)
from cst_bayes.bayes.design import Design, Patterns, collapse, design, normalise_weights
from cst_bayes.bayes.effects import (
    COMPARE_COLUMNS,
    PR_COLUMNS,
    compare_prevalence_ratios,
    compare_published,
    frame_populations,
    predict_risk,
    prevalence_ratios,
    replicate,
    switchable_terms,
    write_vs_published,
)
from cst_bayes.bayes.families import (
    FAMILIES,
    FAMILY_LINKS,
    N_TRIALS,
    OUTCOME_FAMILIES,
    PRIOR_DISTS,
    PRIOR_SLOTS,
    Sampler,
)
from cst_bayes.bayes.fit import (
    SUMMARY_COLUMNS,
    Fit,
    check_diagnostics,
    fit,
    summarise,
    with_pointwise,
)
from cst_bayes.bayes.fit import data_hash as _data_hash
from cst_bayes.bayes.fit import term_draws as _term_draws
from cst_bayes.bayes.io import read_fit, write_fit
from cst_bayes.bayes.samplers import TARGET_ACCEPT
from cst_bayes.bayes.samplers import fast_args as _fast_args
from cst_bayes.bayes.samplers import fast_supported as _fast_supported
from cst_bayes.bayes.samplers import fast_x0 as _fast_x0
from cst_bayes.bayes.spec import ModelSpec, Prior, describe_spec, list_specs, load_spec
from cst_bayes.core.config import MODELS_DIR, STRATUM

__all__ = [
    "BFMI_MIN",
    "COMPARE_COLUMNS",
    "ESS_MIN",
    "FAMILIES",
    "FAMILY_LINKS",
    "MODELS_DIR",
    "N_TRIALS",
    "OUTCOME_FAMILIES",
    "PRIOR_DISTS",
    "PRIOR_SLOTS",
    "PR_COLUMNS",
    "RHAT_MAX",
    "STRATUM",
    "SUMMARY_COLUMNS",
    "TARGET_ACCEPT",
    "Design",
    "Fit",
    "ModelSpec",
    "Patterns",
    "Prior",
    "Sampler",
    "SamplerWarning",
    "_build_from_patterns",
    "_data_hash",
    "_fast_args",
    "_fast_supported",
    "_fast_x0",
    "_term_draws",
    "build",
    "check_diagnostics",
    "collapse",
    "compare_prevalence_ratios",
    "compare_published",
    "describe_spec",
    "design",
    "diagnose",
    "fit",
    "frame_populations",
    "list_specs",
    "load_spec",
    "normalise_weights",
    "predict_risk",
    "prevalence_ratios",
    "prior_scales",
    "read_fit",
    "replicate",
    "summarise",
    "switchable_terms",
    "with_pointwise",
    "write_fit",
    "write_vs_published",
]
