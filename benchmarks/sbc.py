"""Simulation-based calibration (Talts et al. 2018) of the main model, logit_approaches_strata.

Hand loop: draw every parameter from the spec's priors, simulate ``any_cst`` for the study's
agencies (approaches and strata of a simulated study-shaped dataset, 872/381/19/34), fit the
model with the package (nutpie, compiled once, short chains), and record the rank of each true
value among L thinned posterior draws. If the sampler and the model code are right, every
rank is uniform on 0..L. Prints a chi-square test of uniformity per parameter and writes
``benchmarks/results/sbc.csv`` (ranks) and ``benchmarks/sbc.png`` (rank histograms).

Usage: ``python benchmarks/sbc.py [--sims 100] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
MODEL = "logit_approaches_strata"
L = 99  # posterior draws per rank: ranks in 0..99, 10 bins of 10


def prior_draw(spec, rng) -> dict[str, np.ndarray]:
    """One draw from the priors of a normal/half-normal spec (the shipped main model)."""
    p = spec.priors
    assert (
        p["intercept"].dist == "normal"
        and p["beta"].dist == "normal"
        and p["sigma_stratum"].dist == "halfnormal"
    )
    mu = rng.normal(p["intercept"].params["mu"], p["intercept"].params["sigma"])
    sigma = abs(rng.normal(0, p["sigma_stratum"].params["sigma"]))
    alpha = rng.normal(mu, sigma, 4)
    beta = rng.normal(p["beta"].params["mu"], p["beta"].params["sigma"], len(spec.predictors))
    return dict(mu_stratum=np.array([mu]), sigma_stratum=np.array([sigma]), alpha=alpha, beta=beta)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from scipy import stats

    from cst_bayes.bayes import models as M
    from cst_bayes.core.config import APPROACHES, STRATA
    from cst_bayes.core.fileio import atomic_path, write_csv
    from cst_bayes.data.simulate import simulate

    spec = M.load_spec(MODEL)
    base, _ = simulate(20240101)
    X = base[list(APPROACHES)].to_numpy(float)
    codes = base["stratum"].cat.codes.to_numpy()
    xbar = X.mean(axis=0)
    rng = np.random.default_rng(a.seed)
    names = (
        ["mu_stratum", "sigma_stratum"]
        + [f"alpha[{s}]" for s in STRATA]
        + [f"beta[{k}]" for k in APPROACHES]
    )
    ranks, t0, divs = [], time.perf_counter(), 0
    for i in range(a.sims):
        th = prior_draw(spec, rng)
        eta = th["alpha"][codes] + (X - xbar) @ th["beta"]  # the model's centred linear predictor
        df = base.copy()
        df["any_cst"] = (rng.random(len(df)) < 1 / (1 + np.exp(-eta))).astype(np.int8)
        f = M.fit(
            spec,
            df,
            draws=500,
            tune=500,
            chains=2,
            seed=a.seed * 10_000 + i,
            sampler="nutpie",
            progress=False,
            pointwise=False,
        )
        divs += f.diagnostics["divergences"]
        post = f.idata.posterior
        draws = np.column_stack(
            [
                post["mu_stratum"].to_numpy().ravel(),
                post["sigma_stratum"].to_numpy().ravel(),
                post["alpha"].to_numpy().reshape(-1, 4),
                post["beta"].to_numpy().reshape(-1, len(APPROACHES)),
            ]
        )
        keep = draws[np.linspace(0, len(draws) - 1, L).astype(int)]  # thin against autocorrelation
        truth = np.concatenate([th["mu_stratum"], th["sigma_stratum"], th["alpha"], th["beta"]])
        ranks.append((keep < truth).sum(axis=0))
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{a.sims} fits, {time.perf_counter() - t0:.0f} s", flush=True)
    R = pd.DataFrame(np.array(ranks), columns=names)
    rows = []
    for n in names:
        counts = np.histogram(R[n], bins=10, range=(0, L + 1))[0]
        chi = stats.chisquare(counts)
        rows.append(
            dict(parameter=n, chi2=chi.statistic, p_value=chi.pvalue, mean_rank=R[n].mean() / L)
        )
    res = pd.DataFrame(rows)
    print(
        f"\nSBC of {MODEL}: {a.sims} simulations, ranks among {L} draws, {divs} divergences in all"
    )
    print(res.round(3).to_string(index=False))
    print(
        f"smallest p-value {res.p_value.min():.3f} over {len(names)} parameters "
        f"(Bonferroni 5% threshold {0.05 / len(names):.4f})"
    )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    write_csv(
        out / "sbc.csv",
        R.assign(sim=np.arange(len(R))),
        status="SYNTHETIC",
        notes=f"SBC ranks, {MODEL}, seed {a.seed}; simulated data",
    )
    write_csv(out / "sbc-uniformity.csv", res, status="SYNTHETIC", notes=f"SBC uniformity, {MODEL}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 5, figsize=(14, 7.5), sharey=True)
    band = stats.binom.ppf([0.005, 0.995], a.sims, 0.1)
    for ax, n in zip(axes.ravel(), names):
        ax.hist(R[n], bins=10, range=(0, L + 1), color="#4878a8", edgecolor="white")
        ax.axhspan(band[0], band[1], color="grey", alpha=0.25)
        ax.set_title(n, fontsize=9)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle(
        f"SBC rank histograms, {MODEL} ({a.sims} simulated datasets; grey: 99% band of a uniform)\n"
        "SIMULATED DATA (prior predictive), not the study's microdata",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(HERE / "sbc.png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    print(f"wrote {HERE / 'sbc.png'} and {out / 'sbc.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
