"""The posterior report of a run directory (``cst-bayes report RUN_DIR``).

Reads what :mod:`cst_bayes.run.pipeline` (and optionally :mod:`cst_bayes.run.sweep`) wrote into a
run directory and renders two documents with the same content:

``index.html``
    Self-contained: styles inline, every figure embedded as a base64 PNG, no script, no
    external resource, so it can be mailed or archived as one file.
``report.md``
    Markdown with the figures beside it in ``figures/``.

The sections follow the Bayesian Analysis Reporting Guidelines (Kruschke 2021, *Nature
Human Behaviour* 5:1282); the report ends with the BARG checklist, each item linked to the
section meeting it or marked *not done*. A run whose fits fail their own diagnostics opens with
a red banner naming them. Modules: :mod:`~cst_bayes.run.report.base` (blocks, reading, cell
formatting), :mod:`~cst_bayes.run.report.sections` (the stages every run has),
:mod:`~cst_bayes.run.report.extra` (pieces shown when their files exist),
:mod:`~cst_bayes.run.report.quality` (diagnostics, banner, checklist) and
:mod:`~cst_bayes.run.report.build`.
"""

from cst_bayes.run.report.build import build_report
from cst_bayes.run.report.sections import TABLE3_MODELS, forest_figure, reproduced_count

__all__ = ["TABLE3_MODELS", "build_report", "forest_figure", "reproduced_count"]
