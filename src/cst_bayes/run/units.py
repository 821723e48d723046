"""Units of a run: computed in a scratch folder, renamed into place, cached by input hash.

Every unit (``audit``, ``models/logit_approaches`` ...) is computed in a hidden scratch folder
``RUN_DIR/.<unit>.partial-<pid>`` and renamed onto ``RUN_DIR/<unit>`` only when complete, with
a ``manifest.json`` holding the hash of its inputs. A rerun skips units whose stored hash
matches, so ``kill -9`` and a rerun resume where it stopped and never show half a unit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cst_bayes.core.fileio import DIR_MODE_RESTRICTED, write_json
from cst_bayes.run.cache import input_hash


class StageUnavailable(RuntimeError):
    """A unit cannot run: what it needs is absent (no fitted model to check, too few fits)."""


@dataclass
class UnitResult:
    """What happened to one unit in this run."""

    unit: str
    status: Literal["done", "cached", "unavailable", "failed"]
    seconds: float
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A unit folder's manifest (None when missing or unreadable)."""
    try:
        out: dict[str, Any] = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return out


def unit_hash(out: Path, unit: str) -> str | None:
    """The input hash a finished unit was computed with (what dependants key on)."""
    m = read_manifest(out / unit)
    return None if m is None else m.get("input_hash")


def clean_stale(out: Path) -> list[Path]:
    """Remove scratch folders and temporary files left by a killed run."""
    removed: list[Path] = []
    if not out.exists():
        return removed
    for p in list(out.rglob(".*.partial-*")) + list(out.rglob(".*.old-*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for p in out.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def run_unit(
    out: Path,
    unit: str,
    inputs: dict[str, Any],
    body: Callable[[Path], dict[str, Any]],
    *,
    restricted: bool = False,
    force: bool = False,
    fail_fast: bool = False,
) -> UnitResult:
    """Run ``body(scratch_dir)`` unless ``out/unit`` holds a manifest with the same input hash.

    The body writes its files into ``scratch_dir``; on success a manifest is added and the
    folder is renamed onto ``out/unit`` (two renames; the old copy is removed after). A body
    that raises leaves ``out/unit`` as it was: :class:`StageUnavailable` gives status
    ``unavailable``; any other exception (also an :class:`InputError`: inputs were validated
    before the run, so one raised inside a unit is a defect of that unit, and a sampler
    panic, which Rust bindings raise as a ``BaseException``) gives status ``failed`` (or
    propagates with ``fail_fast``), and the other units still run; an interrupt propagates.
    """
    target = out / unit
    h = input_hash({"unit": unit, **inputs})
    old = read_manifest(target)
    if not force and old is not None and old.get("input_hash") == h:
        return UnitResult(unit, "cached", 0.0, info=old.get("info", {}))
    scratch = target.parent / f".{target.name}.partial-{os.getpid()}"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    if restricted:
        os.chmod(scratch, DIR_MODE_RESTRICTED)
    t0 = time.perf_counter()
    try:
        info = body(scratch) or {}
    except StageUnavailable as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        return UnitResult(unit, "unavailable", time.perf_counter() - t0, str(exc))
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    except BaseException as exc:  # a sampler panic (PanicException) is a BaseException
        # A crash inside one unit must not lose the others: record it, keep going, and let
        # the CLI exit non-zero. The traceback goes to stderr, not into the run directory
        # (in restricted mode it could quote data).
        shutil.rmtree(scratch, ignore_errors=True)
        if fail_fast:
            raise
        import traceback

        traceback.print_exc(file=sys.stderr)
        return UnitResult(unit, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
    secs = time.perf_counter() - t0
    write_json(
        scratch / "manifest.json",
        {
            "unit": unit,
            "input_hash": h,
            "inputs": inputs,
            "seconds": round(secs, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "info": info,
        },
    )
    if target.exists():
        trash = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, trash)
        os.replace(scratch, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(scratch, target)
    return UnitResult(unit, "done", secs, info=info)
