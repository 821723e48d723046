"""Stage ``audit``: internal consistency of the published tables -> ``audit.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cst_bayes.audit import run_audit
from cst_bayes.core.fileio import write_csv

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, work: Path) -> dict[str, Any]:
    checks = pd.DataFrame(run_audit(ctx.published_dir))
    write_csv(work / "audit.csv", checks, status="PUBLIC", notes="audit of the published tables")
    counts = checks["status"].value_counts().to_dict() if "status" in checks else {}
    return {"checks": len(checks), **{str(k): int(v) for k, v in counts.items()}}
