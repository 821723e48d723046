"""Williams-Savitsky check: adjusted pseudo-posterior SDs against R svyglm, and coverage.

Usage: ``python benchmarks/weights_coverage.py [--replicates 200] [--method laplace|mcmc]
[--out benchmarks/results/weights_coverage.csv]``. SYNTHETIC: the data are
``tests/reference/weights_sim.csv`` and a finite population resampled from them.

Prints (1) the ratio of the adjusted and the raw pseudo-posterior SD of every log-OR of the
size-adjusted Table 3 model (MCMC, Normal(0, 10) priors) to R survey's ``svyglm`` SE under
the ``design`` scenario, and (2) the coverage of 90% intervals in ``--replicates`` stratified
samples with fpc from a synthetic population of the frame's size, raw beside adjusted, with
the 99% binomial band of the coverage share. Both tables are also written to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--method", choices=("laplace", "mcmc"), default="laplace")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--draws", type=int, default=None, help="per chain (default 500 mcmc, 1000)")
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/weights_coverage.csv")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from cst_bayes.core.config import OUTCOME
    from cst_bayes.core.fileio import write_csv
    from cst_bayes.data import microdata, published
    from cst_bayes.weighting import weights as W
    from cst_bayes.weighting import williams_savitsky as WS
    from cst_bayes.weighting.coverage import coverage_simulation

    ref_dir = ROOT / "tests/reference"
    df = microdata.load(ref_dir / "weights_sim.csv")
    ref = pd.read_csv(ref_dir / "weights_survey_reference.csv", keep_default_na=False)
    r = ref[(ref["statistic"] == "glm_se") & (ref["scenario"] == "design") & (ref["by"] == "yes")]
    r_se = {
        (f"stratum[{t[7:]}]" if t.startswith("stratum") else t): v
        for t, v in zip(r["term"], r["value"])
    }
    X, names = W.model_matrix(df, True)
    t0 = time.perf_counter()
    post = WS.fit_pseudo_posterior(
        X,
        df[OUTCOME].to_numpy(float),
        W.make_design(df, W.load_scenarios()["design"]),
        names,
        method="mcmc",
        seed=args.seed,
        draws=1000,
        tune=1000,
        chains=2,
        prior_sd=10.0,
    )
    fit_s = time.perf_counter() - t0
    sd_adj = post.adjusted.reshape(-1, len(names)).std(axis=0)
    sd_raw = post.raw.reshape(-1, len(names)).std(axis=0)
    ratios = pd.DataFrame(
        [
            {
                "term": t,
                "svyglm_se": r_se[t],
                "raw_ratio": sd_raw[j] / r_se[t],
                "adjusted_ratio": sd_adj[j] / r_se[t],
            }
            for j, t in enumerate(names)
            if t != "(Intercept)"
        ]
    )
    print(f"SYNTHETIC. SD / svyglm SE (MCMC 2 x 1000, fit {fit_s:.1f} s):")
    print(ratios.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    draws = args.draws or (500 if args.method == "mcmc" else 1000)
    t0 = time.perf_counter()
    cov = coverage_simulation(
        df,
        published.load_sampling_frames(),
        replicates=args.replicates,
        method=args.method,
        seed=args.seed,
        draws=draws,
        tune=args.tune,
    )
    wide = cov.pivot(index="term", columns="interval", values="coverage")[["raw", "adjusted"]]
    print(
        f"\nSYNTHETIC. Coverage of 90% intervals, {args.replicates} replicates ({args.method}, "
        f"2 x {draws} draws, "
        f"{time.perf_counter() - t0:.0f} s); 99% binomial band "
        f"{cov['band_low'].iloc[0]:.3f}-{cov['band_high'].iloc[0]:.3f}:"
    )
    print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    both = pd.concat(
        [
            ratios.melt(id_vars="term", var_name="statistic").assign(method="mcmc"),
            cov.melt(id_vars=["term", "interval"], value_vars=["coverage"], var_name="statistic")
            .assign(statistic=lambda d: "coverage_" + d["interval"], method=args.method)
            .drop(columns="interval"),
        ],
        ignore_index=True,
    )
    notes = [f"replicates={args.replicates}", f"method={args.method}"]
    notes += [f"draws={draws}", f"tune={args.tune}", f"seed={args.seed}"]
    write_csv(args.out, both, status="SYNTHETIC", notes=notes)
    print(f"\nwrote {args.out}")
    _ = np


if __name__ == "__main__":
    main()
