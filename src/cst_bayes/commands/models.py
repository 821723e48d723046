"""List the Bayesian model specs in models/ (one TOML file each).

Shows name, outcome, family, link, predictors, stratum terms, the published table each
corresponds to and a one-line description. `--show NAME` prints one spec with its priors
and the reason for each.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cst-bayes models``."""
    parser.add_argument("--show", metavar="NAME", help="print one spec (priors with their reasons)")


def run(args: argparse.Namespace) -> int:
    """Print the spec table (or one spec); exit status 0."""
    from cst_bayes.bayes.spec import describe_spec, list_specs

    if args.show:
        print(describe_spec(args.show))
        return 0
    specs = list_specs()
    with __import__("pandas").option_context("display.max_colwidth", 60, "display.width", 200):
        print(specs.drop(columns=["description"]).to_string(index=False))
    return 0
