"""Report building blocks: sections and blocks, reading a run's files, figures, cell formatting.

Every table goes through :func:`display` when rendered, so a reader sees counts as integers,
other numbers to three significant digits, empty cells empty (never ``nan``) and lists as
``a; b`` (never a Python list).
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core import config
from cst_bayes.core.fileio import atomic_path
from cst_bayes.core.provenance import banner

RESTRICTED_NOTE = (
    f"{banner('RESTRICTED')}. No row-level data are shown or stored, and every count below "
    f'{config.SMALL_CELL} is suppressed as "<{config.SMALL_CELL}".'
)
_EMPTY = {"", "nan", "NaN", "None", "none", "<NA>", "NaT"}


@dataclass
class Block:
    """One piece of a section: a paragraph, a warning, a table, a figure, preformatted text or
    the checklist (rows with a link to a section)."""

    kind: str  # "p", "warn", "table", "figure", "pre", "checklist"
    text: str = ""
    table: pd.DataFrame | None = None
    figure: str = ""  # file name under figures/
    png_b64: str = ""
    caption: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Section:
    """A report section (an ``<h2>`` with an anchor)."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def warn(self, text: str) -> None:
        self.blocks.append(Block("warn", text))

    def table(self, df: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(Block("table", table=df, caption=caption))

    def pre(self, text: str, caption: str = "") -> None:
        self.blocks.append(Block("pre", text, caption=caption))


# --------------------------------------------------------------------------- reading the run


def read_csv(path: Path) -> pd.DataFrame | None:
    """A run CSV as text cells (keeps "<5" and printed numbers as they are)."""
    if not path.is_file():
        return None
    return pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)


def num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def true(s: pd.Series) -> pd.Series:
    """A TRUE/FALSE (or true/1) text column as booleans."""
    return s.astype(str).str.strip().str.lower().isin(["true", "1"])


# --------------------------------------------------------------------------- cell formatting


def cell(x: Any, digits: int = 3) -> str:
    """One value as a reader expects it (see the module docstring)."""
    if x is None:
        return ""
    if isinstance(x, (list, tuple, set, np.ndarray)):
        return "; ".join(cell(v, digits) for v in x)
    if isinstance(x, dict):
        return "; ".join(f"{k}: {cell(v, digits)}" for k, v in x.items())
    if isinstance(x, (bool, np.bool_)):
        return "TRUE" if x else "FALSE"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return number(float(x), digits)
    s = str(x)
    return "" if s.strip() in _EMPTY else s


def number(x: float, digits: int = 3) -> str:
    """Integers without decimals (1306, not 1.31e+03); others to ``digits`` significant digits,
    and without an exponent below 1e6."""
    if not math.isfinite(x):
        return "" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == round(x) and abs(x) < 1e15:
        return str(round(x))
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:.0f}" if abs(x) < 1e6 else f"{x:.{digits}g}"
    return f"{x:.{digits}g}"


def display(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Every cell as display text. Text cells that read as numbers are formatted like numbers;
    a column whose numbers are all whole stays whole ("<5" and other text stay as they are)."""
    out = pd.DataFrame(index=range(len(df)))
    base = digits
    for c in df.columns:
        # R-hat needs its third decimal (1.006 is not 1.01, the threshold)
        digits = base + 1 if "r_hat" in str(c) else base
        col = df[c].reset_index(drop=True)
        vals = []
        for x in col:
            if isinstance(x, str):
                t = x.strip()
                if t in _EMPTY:
                    vals.append("")
                    continue
                try:
                    f = float(t)
                except ValueError:
                    vals.append(x)
                    continue
                if t.lower() in ("true", "false"):
                    vals.append(t.upper())
                else:
                    vals.append(number(f, digits))
            else:
                vals.append(cell(x, digits))
        out[str(c)] = vals
    return out


def fmt(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Alias of :func:`display` for tables built in sections (formatting is applied at render
    time anyway; calling it early keeps a section's own table tests readable)."""
    return display(df, digits)


# --------------------------------------------------------------------------- figures


class Figures:
    """Collects PNG figures: bytes for embedding, files for the Markdown."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "figures"
        self.files: list[str] = []

    def add(self, section: Section, name: str, fig: Any, caption: str) -> None:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        self._store(section, name, buf.getvalue(), caption)

    def add_png(self, section: Section, name: str, png: bytes, caption: str) -> None:
        self._store(section, name, png, caption)

    def _store(self, section: Section, name: str, png: bytes, caption: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / name) as tmp:
            tmp.write_bytes(png)
        self.files.append(name)
        section.blocks.append(
            Block(
                "figure",
                figure=name,
                png_b64=base64.b64encode(png).decode("ascii"),
                caption=caption,
            )
        )


def stamp(fig: Any, synthetic: bool, restricted: bool) -> None:
    """Label a figure synthetic (or restricted) in its own pixels, not only in the caption."""
    if synthetic:
        text, color = "SYNTHETIC DATA (reconstructions of published tables)", "#b00020"
    elif restricted:
        text, color = f"restricted data: counts < {config.SMALL_CELL} suppressed", "#555555"
    else:
        return
    fig.text(0.01, 0.005, text, fontsize=7, color=color, ha="left", va="bottom")


# --------------------------------------------------------------------------- rendering


def md_table(df: pd.DataFrame) -> str:
    d = display(df)

    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(esc(c) for c in d.columns) + " |"
    sep = "| " + " | ".join("---" for _ in d.columns) + " |"
    body = ["| " + " | ".join(esc(x) for x in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def html_table(df: pd.DataFrame) -> str:
    return display(df).to_html(index=False, escape=True, na_rep="", border=0, classes="tbl")


def strip_tags(text: str) -> str:
    import html
    import re

    text = re.sub(r"</?code>", "`", text)
    text = re.sub(r"</?b>", "**", text)
    text = re.sub(r'<a href="(#[^"]+)">([^<]*)</a>', r"[\2](\1)", text)
    # paragraphs are HTML: entities (&le;, &amp;) become their characters in Markdown
    return html.unescape(re.sub(r"<[^>]+>", "", text))
