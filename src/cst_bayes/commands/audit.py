"""Audit the published numbers: recompute what the tables imply and flag disagreements.

Every Table 1 chi-square p-value is recomputed from the counts; percentages are checked
against counts (and GRIM: is the percentage possible for its n?); strata against totals;
the ANOVA of the approach count against the bounds the marginals allow; Table 2's matrix for
positive definiteness, each correlation against its Frechet bounds and its stars; Table 3's
p-values against their CIs and its stratum "odds ratios" against the crude odds and risk
ratios; the Figure 1 and sample-size figures of the text.

Status: pass | flag (a finding about the article) | fail (impossible figures). Exit status
is 0 whatever the findings, 2 when a published table is malformed.
"""

from __future__ import annotations

import argparse

from cst_bayes.commands.args import seed_type
from cst_bayes.core.options import DEFAULT_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--published", metavar="DIR", help="published-tables folder (default: data/published)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the checks as a JSON list instead of a table"
    )
    parser.add_argument(
        "--seed",
        type=seed_type,
        default=DEFAULT_SEED,
        help="seed of the Monte Carlo exact tests, 0 .. 2**32 - 1",
    )
    parser.add_argument(
        "--out", metavar="FILE", help="also write the checks to FILE (.json: JSON list, else CSV)"
    )


def run(args: argparse.Namespace) -> int:
    import json

    from cst_bayes.audit import format_checks, run_audit, to_records, write_audit

    checks = run_audit(args.published, seed=args.seed)
    if args.out:
        write_audit(checks, args.out)
    print(json.dumps(to_records(checks), indent=2) if args.json else format_checks(checks))
    return 0
