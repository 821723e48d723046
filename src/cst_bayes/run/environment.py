"""What a run records about the machine: package versions, Python, platform, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from cst_bayes.core import config

PACKAGES = (
    "cst_bayes", "numpy", "pandas", "scipy", "statsmodels", "pymc", "pytensor", "arviz",
    "nutpie", "numba", "xarray", "dask", "distributed", "matplotlib", "h5netcdf", "jinja2",
)  # fmt: skip


def git_commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes), or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "-C", str(config.ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(config.ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment() -> dict[str, Any]:
    """Package versions, Python, platform and git commit (the report's environment section)."""
    pkgs = {}
    for name in PACKAGES:
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = "not installed"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": pkgs,
        "git_commit": git_commit(),
    }
