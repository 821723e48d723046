"""``cst-bayes``: a thin command line over the Python API.

Each subcommand lives in ``cst_bayes/commands/<verb>.py`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; the modules import heavy libraries
inside ``run`` so that ``cst-bayes --help`` stays instant.

No user reaches a traceback. Before a verb runs, :func:`check_common` validates what every
verb shares (seeds ``0 <= seed < 2**32``, positive counts, an output path that can be
written); bad input (:class:`~cst_bayes.core.errors.InputError`), an OS error (missing
permission, an existing file in the way, a read-only file system) and an arithmetic
overflow print one line and exit with status 2; sampler trouble under ``--strict`` exits
with status 3; anything else is a bug, reported in one line with exit status 1 (set
``CST_BAYES_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cst_bayes import __version__
from cst_bayes.core.errors import InputError, SamplerTrouble, check_out_dir, validate_seed

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
        mod = importlib.import_module(f"cst_bayes.commands.{modname}")
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


#: Verbs whose ``--out`` names a file rather than a folder.
OUT_IS_FILE: frozenset[str] = frozenset({"audit"})
#: Options that count something and must be at least 1 wherever a verb has them.
POSITIVE_OPTIONS: tuple[str, ...] = (
    "draws",
    "tune",
    "chains",
    "jobs",
    "workers",
    "n",
    "n_reconstructions",
)


def check_out_file(path: str | Path) -> Path:
    """Fail before any work when an output *file* cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise InputError("the output path is a folder; expected a file name", path=p)
    check_out_dir(p.parent if str(p.parent) else Path("."))
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError("the output file is not writable", path=p)
    return p


def check_common(args: argparse.Namespace) -> None:
    """Validate the options many verbs share, before any verb does work.

    Seeds, positive counts and the output path (``--out``) of every verb are checked here, so
    a verb module need not repeat it.
    """
    seed = getattr(args, "seed", None)
    if seed is not None:
        validate_seed(seed, name="--seed")
    for name in POSITIVE_OPTIONS:
        v = getattr(args, name, None)
        if v is not None and not isinstance(v, bool) and isinstance(v, int) and v < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    out = getattr(args, "out", None)
    if out is not None and str(out) != "":
        if args.command in OUT_IS_FILE:
            check_out_file(out)
        else:
            check_out_dir(out)


def _os_message(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {what}" if where else what


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cst-bayes`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        check_common(args)
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"cst-bayes {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:  # permissions, a file in the way, a read-only file system, ...
        if isinstance(exc, BrokenPipeError):
            return _broken_pipe()
        print(f"cst-bayes {args.command}: error: {_os_message(exc)}", file=sys.stderr)
        return 2
    except OverflowError as exc:
        print(f"cst-bayes {args.command}: error: number out of range ({exc})", file=sys.stderr)
        return 2
    except SamplerTrouble as exc:
        print(f"cst-bayes {args.command}: sampler trouble: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"cst-bayes {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as exc:  # a bug or a sampler panic: one line, exit 1
        if os.environ.get("CST_BAYES_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(
            f"cst-bayes {args.command}: internal error: {type(exc).__name__}: {msg} "
            "(set CST_BAYES_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _broken_pipe() -> int:
    """``cst-bayes audit | head``: the reader left; not an error of ours."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
