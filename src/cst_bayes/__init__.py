"""cst_bayes: a Bayesian reanalysis of the LEA-CST survey (Mitchell et al. 2024).

The article publishes only tables; the microdata are restricted. This package carries the
published tables as data (:mod:`cst_bayes.data.published`), audits them, reproduces the
frequentist analysis (:mod:`cst_bayes.frequentist`), reconstructs an ensemble of *synthetic*
agency-level datasets consistent with the tables (:mod:`cst_bayes.reconstruct`), fits
hierarchical Bayesian models (:mod:`cst_bayes.bayes.models`), checks them against the published
tables (:mod:`cst_bayes.checks.ppc`), studies survey weighting (:mod:`cst_bayes.weighting.weights`) and writes a
posterior report (:mod:`cst_bayes.run.report`).
"""

__version__ = "0.1.0"
