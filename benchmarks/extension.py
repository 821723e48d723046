"""Which extension rescues the fits that fail their diagnostics in a ``standard`` run.

Usage: ``python benchmarks/extension.py [--doc docs/generated/extension.md]``.
SYNTHETIC: the members are reconstructions, not the study's data.

Every shipped spec is fitted on every member of the ``standard`` profile with its settings and
seeds (what ``cst-bayes reproduce`` fits first). Each fit that fails a threshold is then sampled
again under every candidate extension (thinning factor K: K times the draws, every K-th kept;
target acceptance), each with the seed the package derives for it. The page counts how many
failing fits each candidate brings within every threshold, and what it costs in sampling
seconds; :data:`cst_bayes.bayes.convergence.EXTEND_THIN` and ``EXTEND_TARGET_ACCEPT`` are the rule
chosen from it.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, figure_table, load, stamp, write_sections  # noqa: E402

#: (K, target acceptance) candidates.
CANDIDATES = [(2, 0.95), (3, 0.95), (4, 0.9), (4, 0.95), (4, 0.99)]


def measure(
    specs: list[str] | None = None, n_members: int | None = None, draws: int | None = None
) -> tuple[list[dict], list[dict]]:
    """(one row per failing fit with each candidate's outcome, every first fit's outcome).

    ``specs``, ``n_members`` and ``draws`` narrow the run (the tests' smoke run); by default
    every shipped spec on every ``standard`` member with its draws.
    """
    from cst_bayes.bayes import convergence as F
    from cst_bayes.bayes import models, pooling
    from cst_bayes.bayes.design import collapse, normalise_weights
    from cst_bayes.bayes.samplers import sample
    from cst_bayes.core import config
    from cst_bayes.core.options import DEFAULT_SEED
    from cst_bayes.data.ensemble import load_ensemble
    from cst_bayes.run.context import PROFILES

    s = PROFILES["standard"]
    frames = {df.attrs["member"]: df for df in load_ensemble(config.RECONSTRUCTED_DIR)}
    members = [frames[m] for m in s.members or ()]
    seeds = pooling.member_seeds(DEFAULT_SEED, len(members))
    members, seeds = members[:n_members], seeds[:n_members]
    kw = dict(
        draws=draws or s.draws, tune=s.tune, chains=s.chains, sampler=s.sampler, progress=False
    )
    failing, first = [], []
    for name in specs or models.list_specs()["name"]:
        spec = models.load_spec(name)
        for df, seed in zip(members, seeds):
            pat = collapse(spec, df, normalise_weights(None, len(df)))
            t0 = time.perf_counter()
            g, _ = sample(spec, pat, seed=seed, prior_scale={}, **kw)
            d = F.diagnose(g)
            first.append({"model": name, "member": df.attrs["member"], "ok": d["ok"],
                          "seconds": time.perf_counter() - t0})  # fmt: skip
            if d["ok"]:
                continue
            row = {"model": name, "member": df.attrs["member"], "first": "; ".join(d["messages"])}
            for k, ta in CANDIDATES:
                t0 = time.perf_counter()
                g, _ = sample(spec, pat, seed=F.extension_seed(seed, k), prior_scale={},
                              thin=k, target_accept=ta, **kw)  # fmt: skip
                d2 = F.diagnose(g)
                row[f"x{k} {ta}"] = "ok" if d2["ok"] else "; ".join(d2["messages"])
                row[f"x{k} {ta} s"] = time.perf_counter() - t0
            failing.append(row)
    return failing, first


def page(failing: list[dict], first: list[dict], seconds: float, load0: float) -> str:
    import pandas as pd

    from cst_bayes.bayes.convergence import EXTEND_TARGET_ACCEPT, EXTEND_THIN
    from cst_bayes.run.context import PROFILES

    s = PROFILES["standard"]
    f = pd.DataFrame(failing)
    fr = pd.DataFrame(first)
    lines = [
        "## Fits of the `standard` profile that fail, and what rescues them",
        "",
        f"Measured {stamp()} on 2 cores; load average {load0:.1f} before, {load():.1f} after; "
        f"code {code_version()}; {seconds:.0f} s. SYNTHETIC data (the shipped reconstructions). "
        f"Every shipped spec on the {len(s.members or ())} `standard` members, "
        f"{s.chains} chains x {s.draws} draws after {s.tune} tuning steps, the pipeline's seeds: "
        f"{len(fr)} fits, {len(f)} failing a threshold. Each failing fit sampled again with K "
        "times the draws, every K-th kept, at the target acceptance shown (the package's "
        f"rule: K = {EXTEND_THIN}, {EXTEND_TARGET_ACCEPT}).",
        "",
        "| candidate | failing fits passing | sampling s (sum) |",
        "|---|---:|---:|",
    ]
    figs = {"fits": str(len(fr)), "failing": str(len(f))}
    for k, ta in CANDIDATES:
        c = f"x{k} {ta}"
        n = int((f[c] == "ok").sum()) if len(f) else 0
        lines.append(f"| K = {k}, target {ta} | {n} of {len(f)} | {f[f'{c} s'].sum():.1f} |")
        figs[f"pass_x{k}_{ta}"] = str(n)
    lines += [
        "",
        "| model | member | first run | " + " | ".join(f"x{k} {ta}" for k, ta in CANDIDATES) + " |",
    ]
    lines.append("|---|---|---|" + "---|" * len(CANDIDATES))
    for r in failing:
        cells = [r["model"], r["member"], r["first"], *(r[f"x{k} {ta}"] for k, ta in CANDIDATES)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", figure_table(figs)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "generated" / "extension.md")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    load0, t0 = load(), time.perf_counter()
    failing, first = measure()
    text = page(failing, first, time.perf_counter() - t0, load0)
    write_sections(args.doc, "benchmarks/extension.py", "Extending fits that fail", ["standard"],
                   {"standard": text})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
