"""Shared output helpers of the paper studies: Markdown tables, number formatting and PNG plots.

Every study writes ``<out>/<study>.md`` (tables plus the parameters and seeds that reproduce
them) and ``<out>/<study>.png`` (matplotlib, Agg backend: no display needed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["markdown_table", "fmt_sci", "fmt_pct", "Report", "new_figure", "save_figure",
           "check_out_dir"]


def markdown_table(headers, rows, align=None) -> str:
    """A GitHub-flavoured Markdown table.

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequences
        Cells are converted with ``str``; every row must have ``len(headers)`` cells.
    align : str, optional
        One character per column: ``"l"`` or ``"r"``; default left for the first column and right
        for the others (numbers).

    Raises
    ------
    ValueError
        If a row's length differs from the header's or ``align`` has a bad character.
    """
    headers = [str(h) for h in headers]
    n = len(headers)
    align = align or "l" + "r" * (n - 1)
    if len(align) != n or set(align) - {"l", "r"}:
        raise ValueError(f"align must be {n} characters from 'l' and 'r', not {align!r}")
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    for i, row in enumerate(rows):
        cells = [str(c) for c in row]
        if len(cells) != n:
            raise ValueError(f"row {i} has {len(cells)} cells, the header has {n}")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def fmt_sci(x, digits: int = 2) -> str:
    """``1.23e-04``-style text; ``nan`` and infinities spelled out, exact zero as ``0``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}e}"


def fmt_pct(x, digits: int = 1) -> str:
    """A fraction as a percentage (``0.9712`` -> ``97.1``)."""
    return f"{100 * x:.{digits}f}"


def check_out_dir(out) -> Path:
    """The output directory as a Path, created if needed; ValueError if it is a file."""
    if out is None or str(out) == "":
        raise ValueError("out: an output directory is required (for example reports/)")
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ValueError(f"out: {str(p)!r} exists and is not a directory")
    p.mkdir(parents=True, exist_ok=True)
    return p


class Report:
    """A Markdown document built section by section, then written once.

    Parameters
    ----------
    title : str
        The level-1 heading.
    """

    def __init__(self, title: str):
        self._parts = [f"# {title}\n"]

    def text(self, text: str) -> "Report":
        """A paragraph (or any Markdown block)."""
        self._parts.append(text.rstrip() + "\n")
        return self

    def heading(self, text: str, level: int = 2) -> "Report":
        self._parts.append(f"{'#' * level} {text}\n")
        return self

    def table(self, headers, rows, align=None) -> "Report":
        self._parts.append(markdown_table(headers, rows, align))
        return self

    def image(self, path: str, alt: str) -> "Report":
        self._parts.append(f"![{alt}]({path})\n")
        return self

    def markdown(self) -> str:
        return "\n".join(self._parts)

    def write(self, path) -> Path:
        path = Path(path)
        path.write_text(self.markdown())
        return path


def new_figure(ncols: int = 1, nrows: int = 1, size=(6.4, 4.4)):
    """A matplotlib figure on the Agg backend (no display); returns ``(fig, axes)``."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path) -> Path:
    """Write a PNG (100 dpi, no timestamp metadata so reruns give identical files)."""
    path = Path(path)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path
