"""Fit a Bayesian model spec to agency-level data (or to every reconstruction in a folder).

Writes OUT/MODEL.nc (ArviZ InferenceData: posterior, sample_stats, observed_data,
constant_data, provenance attributes; with --pointwise also the agency-level log_likelihood and
posterior_predictive, which `cst_bayes.bayes.models.with_pointwise` otherwise recomputes from
the file on demand) and OUT/MODEL-summary.csv (posterior median OR or PR with 95% interval,
R-hat, ESS). With --compare-published also
OUT/MODEL-vs-published.csv: the posterior beside Table 3 and the frequentist refit.
Sampler trouble (divergences, R-hat > 1.01, ESS < 400, BFMI < 0.3) is a warning; --strict
makes it exit status 3. When --data is a folder of reconstructions, the model is fitted on
each and the posteriors pooled (cst_bayes.bayes.pooling). On restricted data (no SYNTHETIC
banner, not --data-class public) MODEL.nc keeps only parameter-level groups; --keep-row-level
writes the agency-level ones to MODEL-row-level.nc (RESTRICTED, mode 0600).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cst_bayes.core.options import DataClass, choices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cst-bayes fit``."""
    parser.add_argument("model", help="spec name (see `cst-bayes models`) or path to a TOML spec")
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="agency-level file in the microdata contract, or a folder of reconstructions",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (created if missing)"
    )
    parser.add_argument(
        "--draws", type=int, default=1000, help="posterior draws per chain (default 1000)"
    )
    parser.add_argument(
        "--tune", type=int, default=1000, help="warm-up iterations per chain (default 1000)"
    )
    parser.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--sampler",
        choices=("nutpie", "nutpie-c", "pymc"),
        default="nutpie",
        help="nutpie (default: the package's numba density, cached on disk, so no compile, for "
        "every shipped model; a family or prior it does not implement is "
        "compiled from PyMC once per process), nutpie-c (nutpie on PyTensor's disk-cached C "
        "backend: a Python call per gradient) or pymc",
    )
    parser.add_argument(
        "--weights", metavar="COLUMN", help="weight column: weighted pseudo-likelihood"
    )
    parser.add_argument(
        "--data-class",
        choices=choices(DataClass),
        default=None,
        help="what --data is: restricted (default unless the file opens with the package's "
        "SYNTHETIC banner), public (your own unrestricted data) or synthetic",
    )
    parser.add_argument(
        "--keep-columns",
        metavar="COL",
        nargs="+",
        default=None,
        help="extra columns of --data to keep (covariates a formula names; --weights' column "
        "is kept without it)",
    )
    parser.add_argument(
        "--prior-scale",
        action="append",
        metavar="[SLOT=]K",
        help="multiply a prior's scale by K (repeatable): SLOT is beta, intercept, sigma_stratum, "
        "sigma_slope or concentration; a plain K scales the coefficient priors (beta) only. "
        "normal/student_t/halfnormal/halfstudent_t: sigma x K; exponential: lam / K; gamma: beta / K",
    )
    parser.add_argument(
        "--compare-published",
        action="store_true",
        help="also write MODEL-vs-published.csv (posterior beside Table 3 and the frequentist refit)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="sampler warnings become an error (exit 3)"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes for an ensemble folder"
    )
    parser.add_argument(
        "--prior-draws",
        type=int,
        default=0,
        metavar="N",
        help="also store N draws of the prior and the prior predictive (groups prior, "
        "prior_predictive; pattern level; imports PyMC)",
    )
    parser.add_argument(
        "--keep-row-level",
        action="store_true",
        help="restricted data: also write the agency-level groups (observed data, design, "
        "pointwise log-likelihood, predictions) to OUT/MODEL-row-level.nc, marked RESTRICTED, "
        "mode 0600; without it they are left out of every file",
    )
    parser.add_argument(
        "--pointwise",
        action="store_true",
        help="also store the agency-level log_likelihood and posterior_predictive groups "
        "(draws x agencies; what az.loo reads); without it MODEL.nc keeps what they are "
        "recomputed from (cst_bayes.bayes.models.with_pointwise)",
    )
    parser.add_argument(
        "--extend",
        action="store_true",
        help="when the draws fail a diagnostic threshold, sample once more with 4 times the "
        "draws, keeping every 4th, at target acceptance 0.95; the file records the attribute "
        "thin",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_prior_scales(values: list[str] | None) -> dict[str, float]:
    """``["2", "sigma_stratum=0.5"]`` -> ``{"beta": 2.0, "sigma_stratum": 0.5}`` (InputError if bad)."""
    from cst_bayes.bayes.build import DEFAULT_SCALED_SLOT, prior_scales
    from cst_bayes.core.errors import InputError

    out: dict[str, float] = {}
    for v in values or []:
        slot, _, k = v.rpartition("=")
        slot = slot.strip() or DEFAULT_SCALED_SLOT
        try:
            out[slot] = float(k)
        except ValueError:
            raise InputError(
                f"--prior-scale {v!r}: expected K or SLOT=K with a number K", column="--prior-scale"
            ) from None
    prior_scales(out)  # validates slots and values
    return out


def run(args: argparse.Namespace) -> int:
    """Fit, write, report diagnostics; exit 0 (2 bad input, 3 sampler trouble under --strict)."""
    from cst_bayes.bayes import models
    from cst_bayes.core.errors import InputError

    spec = models.load_spec(args.model)
    scales = parse_prior_scales(args.prior_scale)
    if args.data.is_dir():
        from cst_bayes.bayes import pooling
        from cst_bayes.data.ensemble import load_frames

        frames = load_frames(args.data)
        pooled = pooling.fit_ensemble(
            spec,
            frames,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            sampler=args.sampler,
            jobs=args.jobs,
            progress=not args.quiet,
            prior_scale=scales,
            pointwise=args.pointwise,
            extend=args.extend,
        )
        paths = pooling.write_pooled(pooled, args.out)
        for p in paths.values():
            print(p)
        d = pooled.diagnostics
        if d.get("members_extended"):
            print(f"{spec.name}: extended once (member: K): {d['members_extended']}")
        _warn(
            spec.name, [f"member {m}: {v}" for m, v in d.get("member_messages", {}).items()], args
        )
        return 0
    from cst_bayes.data.microdata import load

    keep = [*(args.keep_columns or []), *([args.weights] if args.weights else [])]
    df = load(args.data, data_class=args.data_class, keep_columns=keep or None)
    weights = None
    if args.weights:
        if args.weights not in df.columns:
            raise InputError(
                f"no weight column {args.weights!r}", path=args.data, column=args.weights
            )
        weights = df[args.weights].to_numpy(dtype=float)
    f = models.fit(
        spec,
        df,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        weights=weights,
        prior_scale=scales,
        progress=not args.quiet,
        prior_draws=args.prior_draws,
        pointwise=args.pointwise,
        extend=args.extend,
    )
    from cst_bayes.core.provenance import status_of

    if status_of(df) == "RESTRICTED":
        from cst_bayes.core.disclosure import strip_row_level, write_row_level

        lean = strip_row_level(f.idata)
        if args.keep_row_level:
            print(write_row_level(f.idata, args.out / f"{spec.name}-row-level.nc"))
        f.idata = lean
    nc, csv = models.write_fit(f, args.out)
    print(nc)
    print(csv)
    if args.compare_published:
        if spec.published is None:
            print(
                f"note: {spec.name} has no published counterpart; MODEL-vs-published.csv not written",
                file=sys.stderr,
            )
        else:
            print(models.write_vs_published(f, df, args.out))
    t = f.timings
    print(
        f"{spec.name}: compile {t.get('compile_s', 0):.1f} s, sampling {t.get('sample_s', 0):.1f} s, "
        f"total {t.get('total_s', 0):.1f} s; divergences {f.diagnostics['divergences']}, "
        f"max R-hat {f.diagnostics['max_r_hat']:.3f}, min bulk ESS {f.diagnostics['min_ess_bulk']:.0f}"
    )
    if f.diagnostics.get("extended_thin", 1) > 1:
        print(
            f"{spec.name}: extended once, thinned by {f.diagnostics['extended_thin']} after: "
            + "; ".join(f.diagnostics["first_messages"])
        )
    _warn(spec.name, f.diagnostics["messages"], args)
    return 0


def _warn(name: str, messages: list[str], args: argparse.Namespace) -> None:
    """Failed thresholds: one warning line on stderr, or exit 3 under ``--strict``."""
    if not messages:
        return
    from cst_bayes.bayes.convergence import BFMI_MIN, ESS_MIN, RHAT_MAX
    from cst_bayes.core.errors import SamplerTrouble

    text = f"{name}: " + "; ".join(messages)
    if args.strict:
        raise SamplerTrouble(text)  # exit 3
    print(
        f"cst-bayes fit: WARNING: {text} (thresholds: no divergences, R-hat <= {RHAT_MAX}, "
        f"ESS >= {ESS_MIN}, BFMI >= {BFMI_MIN})",
        file=sys.stderr,
    )
