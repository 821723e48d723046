"""Posterior means and MCSEs of the ten shipped specs (simulated study, seed 20240101; 2 x 500
draws, seed 5), written to shipped_posteriors.json.

The reference file was produced by the code before the models module was split and formulas
added (commit a703ab6), so tests/bayes/test_shipped.py checks that the current code gives the
same posteriors within Monte Carlo error:

    git archive a703ab6 src models | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/reference/shipped_posteriors.py tests/reference/shipped_posteriors.json
"""

import json
import sys
import warnings

import arviz as az
import numpy as np

from cst_bayes.bayes import models as M
from cst_bayes.data.simulate import simulate

SPECS = [
    "logit_approaches",
    "logit_approaches_strata",
    "logit_count",
    "logit_count_strata",
    "logit_varying_slopes",
    "poisson_approaches_strata",
    "poisson_count_strata",
    "count_poisson_strata",
    "count_binomial_strata",
    "count_betabinomial_strata",
]


def main(path: str) -> None:
    warnings.filterwarnings("ignore")
    df = simulate(20240101)[0]
    out = {}
    for name in SPECS:
        f = M.fit(name, df, draws=500, tune=500, chains=2, seed=5, progress=False, pointwise=False)
        post = f.idata.posterior
        res = {}
        for v in post.data_vars:
            a = post[v].to_numpy()
            a = a.reshape(a.shape[0] * a.shape[1], -1)
            se = np.atleast_1d(az.mcse(post[[v]])[v].to_numpy()).ravel()
            res[v] = [a.mean(0).tolist(), se.tolist()]
        out[name] = res
    with open(path, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1])
