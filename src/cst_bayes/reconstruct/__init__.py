"""Synthetic reconstructions of the agency-level data from the published tables."""

from cst_bayes.data.ensemble import load_ensemble
from cst_bayes.reconstruct.anneal import reconstruct_one
from cst_bayes.reconstruct.bounds import (
    compute_bounds,
    member_values,
    plot_bounds,
    read_bounds,
    span_table,
    statistic_values,
)
from cst_bayes.reconstruct.ensemble import build_ensemble, manifest_table, member_filename
from cst_bayes.reconstruct.families import (
    FAMILIES,
    draw_dependence,
    initial_state,
    swap_move,
    tetrachoric_table2,
)
from cst_bayes.reconstruct.fidelity import FIDELITY_COLUMNS, fidelity, fidelity_summary
from cst_bayes.reconstruct.stats import UNTARGETED_COLUMNS, ensemble_spread, untargeted_stats
from cst_bayes.reconstruct.targets import Targets, _kernel, load_targets

__all__ = [
    "FAMILIES",
    "FIDELITY_COLUMNS",
    "UNTARGETED_COLUMNS",
    "Targets",
    "_kernel",
    "build_ensemble",
    "compute_bounds",
    "draw_dependence",
    "ensemble_spread",
    "fidelity",
    "fidelity_summary",
    "initial_state",
    "load_ensemble",
    "load_targets",
    "manifest_table",
    "member_filename",
    "member_values",
    "plot_bounds",
    "read_bounds",
    "reconstruct_one",
    "span_table",
    "statistic_values",
    "swap_move",
    "tetrachoric_table2",
    "untargeted_stats",
]
