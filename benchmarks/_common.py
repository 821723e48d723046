"""Shared by the benchmark scripts: whole-process timing and the generated Markdown files.

* :func:`run_process` times one command from launch to exit: wall seconds, CPU seconds of the
  process and every descendant (``RUSAGE_CHILDREN``; this process is made a child subreaper,
  so workers that outlive their parent, as R's PSOCK clusters can, are reaped here and
  counted, with ``adopt_orphans``), peak RSS of its largest process.
* :func:`write_sections` writes ``docs/generated/<name>.md``: sections this run measured replace
  the file's sections of the same name; sections not run keep their previous text, each with
  the date it was measured (never presented as new).
* :func:`figures` reads a section's ``| figure | value |`` table (what docs may quote).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "docs" / "generated"
_PR_SET_CHILD_SUBREAPER = 36
_SECTION = re.compile(r"^<!-- section: (\S+) -->$", re.M)


@dataclass
class ProcessRun:
    """One whole process: launch to exit."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def _become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_orphans() -> None:
    """Wait for descendants re-parented to this process, so their CPU time is counted."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_process(
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    adopt_orphans: bool = False,
) -> ProcessRun:
    """Run ``cmd`` to completion as a whole process; see the module docstring.

    ``adopt_orphans``: make this process a child subreaper and wait for every descendant left
    behind, so their CPU counts. Only for a process that has no other children (a benchmark
    script), since it waits for all of them.
    """
    if adopt_orphans:
        _become_subreaper()
        _reap_orphans()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if adopt_orphans:
            _reap_orphans()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # ru_maxrss is in KiB on Linux: the largest single process of the tree
    peak = max(usage.ru_maxrss, after.ru_maxrss if after.ru_maxrss > before.ru_maxrss else 0)
    return ProcessRun(wall, cpu, peak / 1024, proc.returncode, stdout, stderr)


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def load() -> float:
    return os.getloadavg()[0]


def code_version() -> str:
    """The commit measured, and whether the working tree had uncommitted changes to src/."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head} + uncommitted changes in src/" if dirty else head


def read_sections(path: Path) -> dict[str, str]:
    """Sections of a generated file by name (text after each ``<!-- section: NAME -->``)."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    marks = list(_SECTION.finditer(text))
    return {
        m.group(1): text[
            m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)
        ].strip()
        for i, m in enumerate(marks)
    }


def write_sections(
    path: Path, writer: str, title: str, order: list[str], new: dict[str, str]
) -> None:
    """Write ``path``: ``new`` sections replace old ones of the same name, others are kept."""
    sections = {**read_sections(path), **new}
    lines = [f"<!-- written by {writer}; do not edit -->", f"# {title}", ""]
    lines.append(
        "SYNTHETIC data throughout (reconstructions or simulated agencies, not the study's "
        "microdata). Each section says when it was measured; sections a run did not measure "
        f"keep their earlier date. Regenerate with `python {writer}`."
    )
    for name in [*order, *(k for k in sections if k not in order)]:
        if name in sections:
            lines += ["", f"<!-- section: {name} -->", sections[name]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def figure_table(rows: dict[str, str]) -> str:
    """The machine-readable figures of a section (what docs and tests may quote)."""
    out = ["| figure | value |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(out)


def figures(path: Path) -> dict[str, str]:
    """Every ``| figure | value |`` row of a generated file, keyed ``section.figure``."""
    out: dict[str, str] = {}
    for name, text in read_sections(path).items():
        in_table = False
        for line in text.splitlines():
            if line.startswith("| figure | value |"):
                in_table = True
                continue
            if in_table and line.startswith("|---"):
                continue
            if in_table and line.startswith("| "):
                key, value = (c.strip() for c in line.strip("|").split("|", 1))
                out[f"{name}.{key}"] = value.strip()
            elif in_table:
                in_table = False
    return out
