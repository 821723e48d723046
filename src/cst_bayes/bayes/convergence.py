"""Is a fit's sampling good enough? Diagnostics with thresholds, and one extension when not.

:func:`diagnose` gives divergences, the worst R-hat, bulk and tail ESS over every parameter and
the lowest E-BFMI (ArviZ's statistics, from ``arviz_stats``' NumPy core) with pass/fail flags.
:func:`sample_checked` samples through any back end, diagnoses, and, when asked, samples a
failing fit once more (:func:`extension_plan`) so that it keeps its shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cst_bayes.bayes.samplers import TARGET_ACCEPT

#: Diagnostic thresholds: any breach is a loud warning; ``strict`` makes it an error.
RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3


class SamplerWarning(UserWarning):
    """Divergences, R-hat, ESS or BFMI outside their thresholds."""


def _extremes(post: Any, stat: Any) -> tuple[float, float]:
    """(max, min) of ``stat`` over every element of every posterior variable (NaN ignored)."""
    vals = []
    for v in post.data_vars:
        a = post[v].transpose("chain", "draw", ...).to_numpy()
        vals.append(np.ravel(stat(a.reshape(a.shape[0], a.shape[1], -1))))
    allv = np.concatenate(vals) if vals else np.array([np.nan])
    return float(np.nanmax(allv)), float(np.nanmin(allv))


def diagnose(idata: Any) -> dict[str, Any]:
    """Divergences, worst R-hat, bulk/tail ESS over all parameters, minimum BFMI, and flags.

    ``idata`` is an ``InferenceData`` or a ``{group: Dataset}`` mapping; the statistics are
    ArviZ's (rank-normalised split R-hat, bulk and tail ESS, E-BFMI) from ``arviz_stats``.
    """
    from arviz_stats.base import array_stats as st

    post = idata["posterior"]
    kw = dict(chain_axis=0, draw_axis=1)
    rhat, _ = _extremes(post, lambda a: st.rhat(a, **kw))
    _, ess_bulk = _extremes(post, lambda a: st.ess(a, method="bulk", **kw))
    _, ess_tail = _extremes(post, lambda a: st.ess(a, method="tail", prob=0.05, **kw))
    stats = idata.get("sample_stats")
    div = (
        int(stats["diverging"].to_numpy().sum())
        if stats is not None and "diverging" in stats
        else 0
    )
    if stats is not None and "energy" in stats:
        energy = stats["energy"].transpose("chain", "draw").to_numpy()
        bfmi = float(np.min(st.bfmi(energy, **kw)))
    else:  # a sampler without energy statistics
        bfmi = float("nan")
    d: dict[str, Any] = dict(
        divergences=div, max_r_hat=rhat, min_ess_bulk=ess_bulk, min_ess_tail=ess_tail, min_bfmi=bfmi
    )
    d["ok_divergences"] = div == 0
    d["ok_r_hat"] = d["max_r_hat"] <= RHAT_MAX
    d["ok_ess_bulk"] = d["min_ess_bulk"] >= ESS_MIN
    d["ok_ess_tail"] = d["min_ess_tail"] >= ESS_MIN
    d["ok_bfmi"] = bool(np.isnan(bfmi) or bfmi >= BFMI_MIN)
    msgs = []
    if not d["ok_divergences"]:
        msgs.append(f"{div} divergent transitions")
    if not d["ok_r_hat"]:
        msgs.append(f"R-hat up to {d['max_r_hat']:.3f} > {RHAT_MAX}")
    if not d["ok_ess_bulk"]:
        msgs.append(f"bulk ESS down to {d['min_ess_bulk']:.0f} < {ESS_MIN}")
    if not d["ok_ess_tail"]:
        msgs.append(f"tail ESS down to {d['min_ess_tail']:.0f} < {ESS_MIN}")
    if not d["ok_bfmi"]:
        msgs.append(f"BFMI {bfmi:.2f} < {BFMI_MIN}")
    d["ok"] = not msgs
    d["messages"] = msgs
    return d


#: The one extension of a fit that fails a threshold: the chains run again (fresh warm-up, a
#: seed derived from the first, smaller steps) for EXTEND_THIN times the draws, of which every
#: EXTEND_THIN-th is kept, so the fit keeps its shape (pooled members must share it, and every
#: later stage costs what it did). benchmarks/extension.py tries the candidates on the fits of a
#: standard run that fail (docs/generated/extension.md): divergences need the smaller steps, and
#: the varying slopes' sigma_slope needs the four-fold length.
EXTEND_THIN = 4
EXTEND_TARGET_ACCEPT = 0.95


def extension_plan(diag: Mapping[str, Any]) -> tuple[int, float] | None:
    """``(thin, target_accept)`` of the extension a fit with these diagnostics gets, or None
    when it passes every threshold."""
    if diag.get("ok", True):
        return None
    return EXTEND_THIN, EXTEND_TARGET_ACCEPT


def extension_seed(seed: int, thin: int) -> int:
    """The extension's seed: derived from the fit's, so the same seed gives the same numbers."""
    return int(np.random.SeedSequence([int(seed), int(thin)]).generate_state(1)[0])


def sample_checked(
    run: Callable[[int, int, float], dict[str, Any]], seed: int, *, extend: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample, diagnose, and extend once (:func:`extension_plan`) when ``extend`` and a
    threshold fails.

    ``run(thin, seed, target_accept)`` returns the ``posterior`` and ``sample_stats`` groups,
    thinned. Returns the groups and :func:`diagnose`'s dict, plus ``extended_thin`` (1 when not
    extended), ``target_accept`` and ``first_messages`` (what the first run failed).
    """
    groups = run(1, int(seed), TARGET_ACCEPT)
    diag = diagnose(groups)
    plan = extension_plan(diag) if extend else None
    first = list(diag["messages"])
    thin, target = 1, TARGET_ACCEPT
    if plan is not None:
        thin, target = plan
        groups = run(thin, extension_seed(seed, thin), target)
        diag = diagnose(groups)
    diag.update(extended_thin=thin, target_accept=target, first_messages=first if plan else [])
    return groups, diag
