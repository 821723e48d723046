"""Runs ``cst-bayes ARGS`` and writes each pipeline stage's peak memory to a JSON file.

Usage: ``python benchmarks/_stage_memory.py OUT.json reproduce ...`` (benchmarks/pipeline.py
runs it as the whole process it times). The pipeline wraps each stage in ``_progress(ctx,
total, stage)``; this wrapper resets the process's peak RSS (``/proc/self/clear_refs``, Linux)
when a stage starts and reads it (``VmHWM``) when it ends, so each figure is that stage's own
peak (of the whole process while the stage ran, so what earlier stages left loaded counts;
the reset also lowers the process's ``ru_maxrss``, so the whole-process peak is the largest of
these and the exit figure). Worker processes a stage waits for count through ``RUSAGE_CHILDREN`` (their largest
peak so far). Without that hook (renamed) or on another OS the file says why and holds no
stage figures: the benchmark leaves the column blank rather than guess.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Measured:
    """The stage's progress bar, plus its peak memory on exit."""

    def __init__(self, inner, stage: str, peaks: dict[str, float]) -> None:
        self.inner, self.stage, self.peaks = inner, stage, peaks

    def __enter__(self):
        self.ok = _reset_peak()
        self.children0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return self.inner.__enter__()

    def __exit__(self, *exc):
        out = self.inner.__exit__(*exc)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if self.ok:
            grew = children / 1024 if children > self.children0 else 0.0
            self.peaks[self.stage] = round(max(_peak_mb(), grew), 1)
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def main() -> int:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    report: dict = {"stage_peak_rss_mb": {}}
    from cst_bayes.run import pipeline

    original = getattr(pipeline, "_progress", None)
    if original is None:
        report["note"] = "cst_bayes.run.pipeline._progress not found: no per-stage memory"
    else:

        def measured(ctx, total, desc, *args, **kwargs):
            return _Measured(
                original(ctx, total, desc, *args, **kwargs), desc, report["stage_peak_rss_mb"]
            )

        pipeline._progress = measured
    from cst_bayes.cli import main as cli_main

    try:
        rc = cli_main(argv)
    finally:
        out.write_text(json.dumps(report))
    return rc


if __name__ == "__main__":
    sys.exit(main())
