"""Synthetic reconstructions of the agency-level data from the published tables."""

from cst_bayes.data.ensemble import load_ensemble
from cst_bayes.reconstruct.ensemble import (
    FIDELITY_COLUMNS,
    UNTARGETED_COLUMNS,
    Targets,
    build_ensemble,
    draw_dependence,
    ensemble_spread,
    fidelity,
    fidelity_summary,
    initial_state,
    load_targets,
    manifest_table,
    member_filename,
    reconstruct_one,
    swap_move,
    tetrachoric_table2,
    untargeted_stats,
)

__all__ = [
    "FIDELITY_COLUMNS",
    "UNTARGETED_COLUMNS",
    "Targets",
    "build_ensemble",
    "draw_dependence",
    "ensemble_spread",
    "fidelity",
    "fidelity_summary",
    "initial_state",
    "load_ensemble",
    "load_targets",
    "manifest_table",
    "member_filename",
    "reconstruct_one",
    "swap_move",
    "tetrachoric_table2",
    "untargeted_stats",
]
