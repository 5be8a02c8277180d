"""Print rows (from :mod:`bitprism.report`) as a readable table, JSON or CSV.

Every format shows the same numbers; the table merges and formats columns for reading, keeps
numbers on one line and, below 100 terminal columns, leaves out what JSON/CSV still carry.
Accuracy is written with four significant digits at fp32's scale, so a drop shows whether the
metric is in percent or a fraction. Imports nothing heavy: ``bitprism --version`` stays fast.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

# (title, rows, extras such as {"caption": ...})
Rows = tuple[str, list[dict[str, Any]], dict[str, Any]]
MAX_ROWS = 15  # table rows printed; --json / --csv give all
NARROW_DROPS = ("spread", "KiB")  # columns left out below 100 terminal columns


def score_digits(reference: float) -> int:
    """Decimals that give four significant digits at the reference's magnitude."""
    if reference == 0 or not math.isfinite(reference):
        return 4
    return max(0, 3 - math.floor(math.log10(abs(reference))))


def print_rows(console: Console, table: Rows, js: bool, cs: bool) -> None:
    """One set of rows as JSON, CSV or a readable table."""
    title, rows, extra = table
    if js:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if cs:
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
        return
    if not rows:
        console.print(f"{title}: nothing yet")
        return
    shown = rows[:MAX_ROWS]
    caption = extra.get("caption") or ""
    if len(rows) > len(shown):
        caption += f"\n{len(rows) - len(shown)} more rows: --json or --csv lists all"
    out = Table(title=title, caption=caption or None, box=box.SIMPLE_HEAD, pad_edge=False)
    cells = [_cells(row, rows[0]) for row in shown]
    if console.width < 100:  # keep "choices" readable: the spread and KiB are in --json
        cells = [{k: v for k, v in c.items() if k not in NARROW_DROPS} for c in cells]
    for column in cells[0]:
        wraps = column in ("choices", "error", "form", "layer", "where", "status")
        out.add_column(
            column, justify="left" if wraps or column == "point" else "right", no_wrap=not wraps
        )
    for row_cells in cells:
        out.add_row(*row_cells.values())
    console.print(out)


def _cells(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, str]:
    """Readable cells; Pareto rows get merged speed-up and size columns."""
    if "speedup_min" not in row:
        return {
            k: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
            for k, v in row.items()
        }
    digits = score_digits(reference["accuracy"])
    return {
        "point": row["point"],
        "accuracy": f"{row['accuracy']:.{digits}f}",
        "drop": f"{row['drop_pct']:+.2f}%",
        "speed-up": f"{row['speedup']:.2f}x",
        "spread": f"{row['speedup_min']:.2f}-{row['speedup_max']:.2f}",
        "KiB": f"{row['weight_bytes'] / 1024:.1f}",
        "smaller": f"{row['smaller_x']:.2f}x",
        "choices": row["choices"],
    }
