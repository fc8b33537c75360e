"""Terminal rendering: the tables the commands print, built from library records (no I/O here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from malvision.cli.app import clean

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "names",
    "scan_table",
    "brief_line",
    "short_path",
    "class_table",
    "feature_table",
    "range_table",
    "operating_table",
    "group_table",
    "plain_table",
    "feature_list_table",
    "models_table",
    "escape",
]

VERDICT_STYLE = {"malware": "bold red", "benign": "green", "unknown": "yellow"}
BAND_STYLE = {"clean": "green", "suspicious": "yellow", "malicious": "bold red"}


# rich is imported when a table is drawn, not with the commands: a cold `scan --json` never loads it.
def escape(text: str) -> str:
    """``text`` with rich markup escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _table(**options: Any) -> Table:
    from rich.table import Table

    return Table(**options)


def names(items: list[str], most: int = 4) -> str:
    """``a, b, c, d +3 more``: a short list for a table cell."""
    more = f" +{len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def short_path(path: str, roots: list[str], width: int = 60) -> str:
    """``path`` relative to the folder argument it came from, its middle elided past ``width``."""
    for root in roots:
        base = root.rstrip("/\\") + "/"
        if path.startswith(base) and len(path) > len(base):
            path = path[len(base) :]
            break
    if len(path) > width:
        keep = width - 1
        path = path[: keep // 3] + "…" + path[-(keep - keep // 3) :]
    return path


def _score_cell(r: Any) -> str:
    if r.score is None:
        return ""
    if r.threshold is None:
        return f"{r.score:.4f}"
    return f"{r.score:.4f} {'≥' if r.score >= r.threshold else '<'} {r.threshold:.4f}"


def scan_table(records: list[Any], title: str, roots: list[str] | None = None, width: int = 80) -> Table:
    """One row per verdict: path (relative to its folder argument, elided in the middle to fit),
    verdict, band, score against the threshold, family, reason; empty columns left out."""
    table = _table(title=escape(title))
    bands = any(r.band for r in records)
    families = any(r.family for r in records)
    reasons = any(r.reason for r in records)
    # the path gets what the other columns leave (elided in the middle beyond that); reasons fold
    others = 3 * (4 + bands + families + reasons) + 1 + 7 + 10 * bands + 15 + 16 * families + 20 * reasons
    path_width = max(20, width - others)
    longest = max((len(short_path(r.path, roots or [], 10**6)) for r in records), default=4)
    table.add_column("path", no_wrap=True, min_width=min(path_width, longest))
    table.add_column("verdict", no_wrap=True)
    if bands:
        table.add_column("band", no_wrap=True)
    table.add_column("score", no_wrap=True, justify="right")
    if families:
        table.add_column("family", overflow="fold")
    table.add_column("reason", overflow="fold")
    for r in records:
        fam = r.family or ""
        if r.family_score is not None:
            fam += f" ({r.family_score:.2f})"
        path = escape(clean(short_path(r.path, roots or [], path_width)))
        row = [path, f"[{VERDICT_STYLE[r.verdict]}]{r.verdict}[/]"]
        if bands:
            row.append(f"[{BAND_STYLE[r.band]}]{r.band}[/]" if r.band else "")
        row.append(_score_cell(r))
        if families:
            row.append(escape(clean(fam)))
        row.append(escape(clean(r.reason or "")))
        table.add_row(*row)
    return table


def brief_line(r: Any) -> str:
    """One line per file, as ``clamscan`` prints: ``path: verdict score band`` (for grep)."""
    parts = [r.verdict]
    if r.family:
        parts.append(r.family)
    score = r.score if r.score is not None else r.family_score
    if score is not None:
        parts.append(f"{score:.4f}")
    if r.band:
        parts.append(r.band)
    if r.reason:
        parts.append(f"({r.reason})")
    return f"{clean(r.path)}: {' '.join(parts)}"


def class_table(m: dict[str, Any], title: str) -> Table:
    """Per-class precision, recall, F1 and support of an ``evaluate`` record."""
    table = _table(title=escape(title))
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, r in m["per_class"].items():
        table.add_row(
            escape(c), f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"])
        )
    return table


def feature_table(expl: Any) -> Table:
    """A feature model's explanation: the top features by their analysts' names, with the imports
    (``dll!function``) behind import features."""
    table = _table(title=f"top {len(expl.features)} features by share of attribution")
    named = any(f.imports for f in expl.features)  # a column for hashed import buckets, when shown
    for col in ("#", "feature", "value", "typical", "attribution", "share") + (("imports",) if named else ()):
        table.add_column(col, justify="left" if col in ("feature", "imports") else "right")
    for i, f in enumerate(expl.features, 1):
        row = [
            str(i),
            escape(clean(f.label or f.name)),
            f"{f.value:.4g}",
            f"{f.typical:.4g}",
            f"{f.attribution:+.4f}",
            f"{f.share:.1%}",
        ]
        table.add_row(*row, *((escape(clean(names(f.imports, 3))),) if named else ()))
    return table


def range_table(expl: Any) -> Table:
    """A byte or sequence model's explanation: the top ranges with their sections."""
    table = _table(title=f"top {len(expl.ranges)} {expl.unit} ranges by share of positive attribution")
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
    table = _table(title="out-of-fold detection at the card's operating points (its protocol)")
    for col in header:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(escape(clean(c)) for c in r))
    return table


def feature_list_table(title: str, rows: list[list[str]]) -> Table:
    """A features model's inputs: id, analyst name, description, splits (trees)."""
    table = _table(title=escape(title))
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("what it is", overflow="fold", ratio=1)
    table.add_column("splits", justify="right")
    for r in rows:
        table.add_row(*(escape(clean(c)) for c in r))
    return table


def plain_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """A titled table of text cells, the first column left-aligned."""
    table = _table(title=title)
    for k, col in enumerate(header):
        table.add_column(col, justify="left" if k == 0 else "right")
    for r in rows:
        table.add_row(*(escape(clean(c)) for c in r))
    return table


def group_table(header: list[str], rows: list[list[str]], title: str) -> Table:
    """A detector's out-of-fold results per malware family and benign project."""
    table = _table(title=title)
    for col in header:
        table.add_column(col, justify="left" if col in ("class", "group") else "right")
    for r in rows:
        table.add_row(*(escape(clean(c)) for c in r))
    return table


def models_table(infos: list[Any]) -> Table:
    """The registered models: name, protocol, inputs, description."""
    table = _table(title="models")
    for col in ("name", "trained by", "inputs", "description"):
        table.add_column(col)
    for info in infos:
        how = "one fit" if info.fitted else "gradient steps"
        table.add_row(info.name, how, ", ".join(info.input_kinds), info.description)
    return table
