"""What every stage body shares: writing a table through the disclosure policy, saving a figure.

Imports only the core layer, so a stage's cache key (which follows its imports) does not move
when an unrelated stage changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cst_bayes.core import config
from cst_bayes.core.disclosure import protect
from cst_bayes.core.fileio import atomic_path, mode_for, write_csv

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cst_bayes.run.context import RunContext


def write_table(ctx: RunContext, path: Path, df: pd.DataFrame, **rules: Any) -> None:
    """Write a table; in restricted mode through the disclosure policy first.

    ``rules`` are the policy's per-table options (``about``, ``pair_with``, ``aggregate``:
    :func:`cst_bayes.core.disclosure.protect`).
    """
    notes: list[str] = []
    if ctx.restricted:
        assert ctx.policy is not None
        df = protect(df, ctx.policy, **rules)
        notes.append(
            f"counts below {config.SMALL_CELL} read '<{config.SMALL_CELL}'; statistics that "
            "depend on them are blank; no row-level data"
        )
    write_csv(path, df, status=ctx.status, notes=notes)


def save_figure(ctx: RunContext, fig: Figure, path: Path) -> None:
    """Save a figure atomically (PNG, 100 dpi) and release it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, mode=mode_for(ctx.status)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
