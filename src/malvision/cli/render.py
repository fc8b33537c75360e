"""Terminal rendering: the tables the commands print, built from library records (no I/O here)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from malvision.cli.app import clean

__all__ = [
    "names",
    "scan_table",
    "class_table",
    "feature_table",
    "range_table",
    "operating_table",
    "group_table",
    "plain_table",
    "models_table",
]

VERDICT_STYLE = {"malware": "bold red", "benign": "green", "unknown": "yellow"}


def names(items: list[str], most: int = 4) -> str:
    """``a, b, c, d +3 more``: a short list for a table cell."""
    more = f" +{len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def scan_table(records: list[Any], title: str) -> Table:
    """One row per verdict: path, verdict, score, family, reason."""
    table = Table(title=escape(title))
    for col in ("path", "verdict", "score", "family", "reason"):
        table.add_column(col, overflow="fold")
    for r in records:
        score = "" if r.score is None else f"{r.score:.4f}"
        fam = r.family or ""
        if r.family_score is not None:
            fam += f" ({r.family_score:.2f})"
        table.add_row(
            escape(clean(r.path)),
            f"[{VERDICT_STYLE[r.verdict]}]{r.verdict}[/]",
            score,
            escape(clean(fam)),
            escape(clean(r.reason or "")),
        )
    return table


def class_table(m: dict[str, Any], title: str) -> Table:
    """Per-class precision, recall, F1 and support of an ``evaluate`` record."""
    table = Table(title=escape(title))
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, r in m["per_class"].items():
        table.add_row(
            escape(c), f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"])
        )
    return table


def feature_table(expl: Any) -> Table:
    """A feature model's explanation: the top features, with the imports behind import features."""
    table = Table(title=f"top {len(expl.features)} features by share of attribution")
    named = any(f.imports for f in expl.features)  # a column for hashed import buckets, when shown
    for col in ("#", "feature", "value", "typical", "attribution", "share") + (("imports",) if named else ()):
        table.add_column(col, justify="left" if col in ("feature", "imports") else "right")
    for i, f in enumerate(expl.features, 1):
        row = [
            str(i),
            f.name,
            f"{f.value:.4g}",
            f"{f.typical:.4g}",
            f"{f.attribution:+.4f}",
            f"{f.share:.1%}",
        ]
        table.add_row(*row, *((names(f.imports),) if named else ()))
    return table


def range_table(expl: Any) -> Table:
    """A byte or sequence model's explanation: the top ranges with their sections."""
    table = Table(title=f"top {len(expl.ranges)} {expl.unit} ranges by share of positive attribution")
    for col in ("#", "start", "end", "length", "share", "section", "entropy"):
        table.add_column(col, justify="left" if col == "section" else "right")
    for i, r in enumerate(expl.ranges, 1):
        fmt = hex if r.unit == "byte" else str
        ent = "" if r.section_entropy is None else f"{r.section_entropy:.2f}"
        table.add_row(
            str(i), fmt(r.start), fmt(r.end), f"{r.end - r.start:,}", f"{r.share:.1%}",
            escape(" + ".join(r.sections)), ent,
        )  # fmt: skip
    return table


def operating_table(header: list[str], rows: list[list[str]]) -> Table:
    """A detector card's operating points with their intervals."""
    table = Table(title="out-of-fold detection at the card's operating points (its protocol)")
    for col in header:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(escape(clean(c)) for c in r))
    return table


def plain_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """A titled table of text cells, the first column left-aligned."""
    table = Table(title=title)
    for k, col in enumerate(header):
        table.add_column(col, justify="left" if k == 0 else "right")
    for r in rows:
        table.add_row(*(escape(clean(c)) for c in r))
    return table


def group_table(header: list[str], rows: list[list[str]], title: str) -> Table:
    """A detector's out-of-fold results per malware family and benign project."""
    table = Table(title=title)
    for col in header:
        table.add_column(col, justify="left" if col in ("class", "group") else "right")
    for r in rows:
        table.add_row(*(escape(clean(c)) for c in r))
    return table


def models_table(infos: list[Any]) -> Table:
    """The registered models: name, protocol, inputs, description."""
    table = Table(title="models")
    for col in ("name", "trained by", "inputs", "description"):
        table.add_column(col)
    for info in infos:
        how = "one fit" if info.fitted else "gradient steps"
        table.add_row(info.name, how, ", ".join(info.input_kinds), info.description)
    return table
