"""``cst-bayes``: a thin command line over the Python API.

Each subcommand lives in ``cst_bayes/commands/<verb>.py`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; the modules import heavy libraries
inside ``run`` so that ``cst-bayes --help`` stays instant. Bad input
(:class:`~cst_bayes.core.errors.InputError`) prints one clear line and exits with status 2;
sampler trouble under ``--strict`` exits with status 3.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cst_bayes import __version__
from cst_bayes.core.errors import InputError, SamplerTrouble

#: Verb -> module under cst_bayes.commands, in pipeline order.
COMMANDS: dict[str, str] = {
    "audit": "audit",
    "tables": "tables",
    "reconstruct": "reconstruct",
    "models": "models",
    "fit": "fit",
    "ppc": "ppc",
    "prior-check": "prior_check",
    "compare": "compare",
    "weights": "weights",
    "sweep": "sweep",
    "report": "report",
    "reproduce": "reproduce",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per verb that is installed."""
    parser = argparse.ArgumentParser(
        prog="cst-bayes",
        description="Bayesian reanalysis of the LEA-CST survey (Mitchell et al. 2024).",
    )
    parser.add_argument("--version", action="version", version=f"cst-bayes {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(f"cst_bayes.commands.{modname}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cst_bayes.commands.{modname}":
                raise
            continue
        doc = (mod.__doc__ or verb).strip()
        p = sub.add_parser(
            verb,
            help=doc.splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cst-bayes`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"cst-bayes {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except SamplerTrouble as exc:
        print(f"cst-bayes {args.command}: sampler trouble: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"cst-bayes {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cst-bayes audit | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
