"""Draw a ``SizeReport``: a JSON object (schema_version 1), markdown, rich tables, or an HTML page.

Every renderer reads the same frozen report and computes nothing of its own beyond shares and bars,
so that the terminal, the job summary and the page never disagree.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .. import __version__
from ..errors import LayerforgeError
from ..limits import LAMBDA_UNZIPPED_BYTES
from . import html_page
from .size_report import (
    LIMIT_LABELS,
    SCHEMA_VERSION,
    BudgetLine,
    Comparison,
    DistributionSize,
    FileSize,
    Removal,
    SizeReport,
    SourceReport,
    human_bytes,
    limit_state,
    percent,
    signed,
)

_EIGHTHS = " ▏▎▍▌▋▊▉"
# Rows beyond these are summed into one "… N more" row: a report is read, not searched.
MAX_DISTRIBUTION_ROWS = 25


# --------------------------------------------------------------------------------------------------
# JSON


def report_json(report: SizeReport, *, error: LayerforgeError | None = None) -> dict[str, Any]:
    """The report as one JSON object; ``schema_version`` changes only when a key changes meaning."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "size_report",
        "layerforge_version": __version__,
        "unzipped_bytes": report.unzipped_bytes,
        "zipped_bytes": report.zipped_bytes,
        "files": report.files,
        "layers": sum(1 for source in report.sources if source.kind == "layer"),
        "over_budget": report.over_budget,
        "sources": [_source_json(report, source) for source in report.sources],
        "distributions": [_dist_json(report, dist) for dist in report.distributions],
        "top_files": [_file_json(report, item) for item in report.top_files],
        "limits": [_limit_json(line) for line in report.limits],
        "duplicates": [{"name": dist.name, "sources": list(dist.sources)} for dist in report.duplicates],
        "compare": _compare_json(report.comparison) if report.comparison else None,
        "error": (
            {"message": error.message, "hint": error.hint, "exit_code": error.exit_code} if error else None
        ),
    }


def _source_json(report: SizeReport, source: SourceReport) -> dict[str, Any]:
    return {
        "label": source.label,
        "kind": source.kind,
        "origin": source.origin,
        "location": source.location,
        "zipped_bytes": source.zipped_bytes,
        "zipped_estimated": source.zipped_estimated,
        "unzipped_bytes": source.unzipped_bytes,
        "compressed_bytes": source.compressed_bytes,
        "files": source.files,
        "share": _share(report, source.unzipped_bytes),
        "distributions": [_dist_json(report, dist) for dist in source.distributions],
        "top_files": [_file_json(report, item) for item in source.top_files],
        "removed": _removed_json(source.removed) if source.removed else None,
        "budget_bytes": source.budget_bytes,
        "fetched_bytes": source.fetched_bytes,
        "fetch_requests": source.fetch_requests,
    }


def _dist_json(report: SizeReport, dist: DistributionSize) -> dict[str, Any]:
    return {
        "name": dist.name,
        "version": dist.version,
        "owned": dist.owned,
        "unzipped_bytes": dist.unzipped_bytes,
        "compressed_bytes": dist.compressed_bytes,
        "files": dist.files,
        "share": _share(report, dist.unzipped_bytes),
        "sources": list(dist.sources),
    }


def _file_json(report: SizeReport, item: FileSize) -> dict[str, Any]:
    return {
        "path": item.path,
        "source": item.source,
        "distribution": item.distribution,
        "unzipped_bytes": item.unzipped_bytes,
        "compressed_bytes": item.compressed_bytes,
        "share": _share(report, item.unzipped_bytes),
    }


def _removed_json(removed: Removal) -> dict[str, Any]:
    return {
        "bytes": removed.bytes,
        "files": removed.files,
        "by_rule": dict(removed.by_rule),
        "by_package": dict(removed.by_package),
    }


def _limit_json(line: BudgetLine) -> dict[str, Any]:
    return {**line.check.as_dict(), "subject": line.subject}


def _compare_json(comparison: Comparison) -> dict[str, Any]:
    return {
        "baseline": list(comparison.baseline),
        "before_unzipped": comparison.before_unzipped,
        "after_unzipped": comparison.after_unzipped,
        "delta_unzipped": comparison.after_unzipped - comparison.before_unzipped,
        "before_zipped": comparison.before_zipped,
        "after_zipped": comparison.after_zipped,
        "distributions": [
            {
                "name": row.name,
                "owned": row.owned,
                "before": row.before,
                "after": row.after,
                "delta": row.delta,
                "files_before": row.files_before,
                "files_after": row.files_after,
                "status": row.status,
            }
            for row in comparison.rows
        ],
    }


def _share(report: SizeReport, size: int) -> float:
    return round(report.share(size), 6)


# --------------------------------------------------------------------------------------------------
# Shared wording


def text_bar(fraction: float, width: int = 20) -> str:
    """A bar of block characters, to an eighth of a cell."""
    cells = max(0.0, min(1.0, fraction)) * width
    full = int(cells)
    rest = _EIGHTHS[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + rest).rstrip()


def headline(report: SizeReport) -> str:
    layers = sum(1 for source in report.sources if source.kind == "layer")
    functions = len(report.sources) - layers
    parts = ([f"{functions} function"] if functions else []) + (
        [f"{layers} layer{'s' if layers != 1 else ''}"] if layers else []
    )
    used = report.unzipped_bytes / LAMBDA_UNZIPPED_BYTES
    zipped = f", {human_bytes(report.zipped_bytes)} zipped" if report.zipped_bytes is not None else ""
    return (
        f"{' + '.join(parts)}: {human_bytes(report.unzipped_bytes)} unzipped "
        f"({percent(used)} of Lambda's {human_bytes(LAMBDA_UNZIPPED_BYTES)}){zipped}, {report.files:,} files"
    )


def limit_label(line: BudgetLine) -> str:
    label = LIMIT_LABELS.get(line.check.name, line.check.name)
    return f"{label}: {line.subject}" if line.subject else label


def limit_value(line: BudgetLine, value: int) -> str:
    return str(value) if line.check.name == "layer_count" else human_bytes(value)


def limit_status(line: BudgetLine) -> str:
    return limit_state(line.check.exceeded, line.check.hard)


def _capped(dists: Sequence[DistributionSize]) -> tuple[Sequence[DistributionSize], DistributionSize | None]:
    """The biggest rows, and the rest summed into one, so that tables stay readable."""
    if len(dists) <= MAX_DISTRIBUTION_ROWS:
        return dists, None
    shown, rest = dists[: MAX_DISTRIBUTION_ROWS - 1], dists[MAX_DISTRIBUTION_ROWS - 1 :]
    other = DistributionSize(
        f"… {len(rest)} more",
        None,
        False,
        sum(d.unzipped_bytes for d in rest),
        sum(d.compressed_bytes for d in rest),
        sum(d.files for d in rest),
    )
    return shown, other


# --------------------------------------------------------------------------------------------------
# Markdown (for $GITHUB_STEP_SUMMARY)

_MD_STATUS = {"ok": "✅", "over": "❌", "warn": "⚠️"}


def render_markdown(report: SizeReport) -> str:
    verdict = "❌ over budget" if report.over_budget else "✅ within budget"
    lines = [f"## Lambda size report: {verdict}", "", f"**{_md(headline(report))}**", ""]
    lines += _md_limits(report)
    if len(report.sources) > 1:
        lines += _md_sources(report)
    lines += ["### Where the bytes go", "", *_md_dists(report, report.distributions)]
    if len(report.sources) > 1:
        for source in report.sources:
            lines += [f"<details><summary>{_md(source.label)}: by distribution</summary>", ""]
            lines += [*_md_dists(report, source.distributions), "</details>", ""]
    lines += _md_top_files(report)
    for source in report.sources:
        if source.removed:
            lines += _md_removed(source.label, source.removed)
    if report.comparison:
        lines += _md_comparison(report.comparison)
    if report.duplicates:
        lines += _md_duplicates(report.duplicates)
    lines.append(f"<sub>layerforge {__version__} size-report, schema {SCHEMA_VERSION}</sub>")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Text made safe in a markdown table cell: no pipes, no HTML, no stray emphasis."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _md_code(text: str) -> str:
    """Text as a code span in a table cell: literal inside, so only pipes and backticks need care."""
    body = text.replace("|", "\\|")
    # A backtick inside needs a double-backtick fence, padded with spaces.
    return f"`` {body} ``" if "`" in text else f"`{body}`"


def _md_table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _md_limits(report: SizeReport) -> list[str]:
    rows = [
        (
            _MD_STATUS[limit_status(line)],
            _md(limit_label(line)),
            limit_value(line, line.check.actual),
            limit_value(line, line.check.limit),
            limit_value(line, line.check.headroom),
            f"`{text_bar(line.check.actual / line.check.limit if line.check.limit else 1, 16):<16}` "
            + percent(line.check.actual / line.check.limit if line.check.limit else 1),
        )
        for line in report.limits
    ]
    return _md_table(("", "limit", "actual", "limit", "headroom", "used"), "clrrrl", rows)


def _md_sources(report: SizeReport) -> list[str]:
    rows = [
        (
            _md(source.label),
            source.kind,
            _zipped(source),
            human_bytes(source.unzipped_bytes),
            f"{source.files:,}",
            percent(report.share(source.unzipped_bytes)),
        )
        for source in report.sources
    ]
    return [
        "### Zips",
        "",
        *_md_table(("zip", "kind", "zipped", "unzipped", "files", "share"), "llrrrr", rows),
    ]


def _md_dists(report: SizeReport, dists: Sequence[DistributionSize]) -> list[str]:
    shown, other = _capped(dists)
    top = max((d.unzipped_bytes for d in dists), default=0) or 1
    rows = [
        (
            _md(dist.name) if dist.owned else f"*{_md(dist.name)}* (no distribution)",
            _md(dist.version or ""),
            human_bytes(dist.unzipped_bytes),
            human_bytes(dist.compressed_bytes),
            f"{dist.files:,}",
            percent(report.share(dist.unzipped_bytes)),
            f"`{text_bar(dist.unzipped_bytes / top, 16):<16}`",
        )
        for dist in [*shown, *([other] if other else [])]
    ]
    header = ("distribution", "version", "unzipped", "compressed", "files", "share", "")
    return _md_table(header, "llrrrrl", rows)


def _md_top_files(report: SizeReport) -> list[str]:
    if not report.top_files:
        return []
    rows = [
        (
            _md_code(item.path),
            _md(item.distribution),
            human_bytes(item.unzipped_bytes),
            human_bytes(item.compressed_bytes),
            percent(report.share(item.unzipped_bytes)),
        )
        for item in report.top_files
    ]
    title = f"### The {len(report.top_files)} biggest files"
    return [title, "", *_md_table(("file", "distribution", "unzipped", "compressed", "share"), "llrrr", rows)]


def _md_removed(label: str, removed: Removal) -> list[str]:
    lines = [
        f"### Slimming removed from {_md(label)}: {human_bytes(removed.bytes)} in {removed.files:,} files",
        "",
    ]
    if removed.by_rule:
        rows = [(_md_code(rule), human_bytes(size)) for rule, size in removed.by_rule]
        lines += _md_table(("rule", "removed"), "lr", rows)
    if removed.by_package:
        rows = [(_md(name), human_bytes(size)) for name, size in removed.by_package]
        lines += _md_table(("distribution", "removed"), "lr", rows)
    return lines


def _md_comparison(comparison: Comparison) -> list[str]:
    delta = comparison.after_unzipped - comparison.before_unzipped
    lines = [
        f"### Compared with {_md(', '.join(comparison.baseline))}",
        "",
        f"Unzipped {human_bytes(comparison.before_unzipped)} → {human_bytes(comparison.after_unzipped)} "
        f"(**{signed(delta)}**)",
        "",
    ]
    rows = [
        (
            _md(row.name),
            row.status,
            human_bytes(row.before),
            human_bytes(row.after),
            signed(row.delta),
            f"{row.files_after - row.files_before:+,}",
        )
        for row in comparison.rows
        if row.delta or row.files_after != row.files_before
    ][:MAX_DISTRIBUTION_ROWS]
    header = ("distribution", "change", "before", "after", "delta", "files")
    return lines + (_md_table(header, "llrrrr", rows) if rows else ["No distribution changed size.", ""])


def _md_duplicates(duplicates: Sequence[DistributionSize]) -> list[str]:
    items = [f"- **{_md(d.name)}** is in {_md(', '.join(d.sources))}" for d in duplicates]
    note = "Only the first on `sys.path` is imported; the other copies are dead weight."
    return ["### Distributions in more than one zip", "", note, "", *items, ""]


def _zipped(source: SourceReport) -> str:
    if source.zipped_bytes is None:
        return "?"
    return ("~" if source.zipped_estimated else "") + human_bytes(source.zipped_bytes)


# --------------------------------------------------------------------------------------------------
# rich, for the terminal (stderr)

_RICH_STATUS = {"ok": "[green]✓[/]", "over": "[bold red]✗[/]", "warn": "[yellow]![/]"}


def render_terminal(report: SizeReport, console: Console) -> None:
    bar = _bar_width(console)
    colour = "red" if report.over_budget else "green"
    verdict = "over budget" if report.over_budget else "within budget"
    console.print(f"[bold]Lambda size report[/]: [bold {colour}]{verdict}[/]")
    console.print(Text(headline(report)))
    parts: list[Any] = [_rich_limits(report, bar)]
    if len(report.sources) > 1:
        parts.append(_rich_sources(report, bar))
    parts.append(_rich_dists(report, report.distributions, "Where the bytes go", bar))
    if report.top_files:
        parts.append(_rich_top_files(report))
    parts += [_rich_removed(s.label, s.removed) for s in report.sources if s.removed]
    if report.comparison:
        parts.append(_rich_comparison(report.comparison))
    console.print(Group(*parts))
    for dist in report.duplicates:
        console.print(
            f"[yellow]note:[/] {dist.name} is in {', '.join(dist.sources)}: only one copy is imported"
        )


def _bar_width(console: Console) -> int:
    # Bars take what the numbers leave: a narrow terminal (or a CI log at 80 columns) gets short bars.
    return max(6, min(24, console.width - 84))


def _table(title: str, *columns: tuple[str, str]) -> Table:
    table = Table(
        title=title, title_justify="left", title_style="bold", header_style="dim", box=None, pad_edge=False
    )
    for name, justify in columns:
        # Names stay on one line (cut with an ellipsis): a wrapped row is hard to scan.
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    return table


def _rich_limits(report: SizeReport, bar: int) -> Table:
    table = _table("Limits", ("", "left"), ("limit", "left"), ("actual", "right"), ("limit", "right"))
    table.add_column("headroom", justify="right", no_wrap=True)
    table.add_column("used", no_wrap=True)
    for line in report.limits:
        check = line.check
        used = check.actual / check.limit if check.limit else 1.0
        colour = {"ok": "green", "over": "red", "warn": "yellow"}[limit_status(line)]
        table.add_row(
            _RICH_STATUS[limit_status(line)],
            limit_label(line),
            limit_value(line, check.actual),
            limit_value(line, check.limit),
            Text(limit_value(line, check.headroom), style="red" if check.headroom < 0 else ""),
            Text(f"{percent(used):>6} {text_bar(used, bar)}", style=colour),
        )
    return table


def _rich_sources(report: SizeReport, bar: int) -> Table:
    table = _table(
        "Zips",
        ("zip", "left"),
        ("kind", "left"),
        ("zipped", "right"),
        ("unzipped", "right"),
        ("files", "right"),
        ("share", "right"),
        ("", "left"),
    )
    for source in report.sources:
        share = report.share(source.unzipped_bytes)
        table.add_row(
            source.label,
            source.kind,
            _zipped(source),
            human_bytes(source.unzipped_bytes),
            f"{source.files:,}",
            percent(share),
            Text(text_bar(share, bar), style="cyan"),
        )
    return table


def _rich_dists(report: SizeReport, dists: Sequence[DistributionSize], title: str, bar: int) -> Table:
    table = _table(
        title,
        ("distribution", "left"),
        ("version", "left"),
        ("unzipped", "right"),
        ("compressed", "right"),
        ("files", "right"),
        ("share", "right"),
        ("", "left"),
    )
    shown, other = _capped(dists)
    for dist in [*shown, *([other] if other else [])]:
        share = report.share(dist.unzipped_bytes)
        name = Text(dist.name, style="bold" if dist.owned else "italic dim")
        table.add_row(
            name,
            dist.version or "",
            human_bytes(dist.unzipped_bytes),
            human_bytes(dist.compressed_bytes),
            f"{dist.files:,}",
            percent(share),
            Text(text_bar(share, bar), style="magenta" if dist.owned else "dim"),
        )
    return table


def _rich_top_files(report: SizeReport) -> Table:
    multi = len(report.sources) > 1
    columns = [("file", "left"), ("distribution", "left")] + ([("zip", "left")] if multi else [])
    table = _table(
        f"The {len(report.top_files)} biggest files",
        *columns,
        ("unzipped", "right"),
        ("compressed", "right"),
        ("share", "right"),
    )
    # A long path keeps its end, where the file's name is.
    table.columns[0].overflow = "fold"
    table.columns[0].no_wrap = False
    for item in report.top_files:
        table.add_row(
            item.path,
            item.distribution,
            *([Text(item.source, style="dim")] if multi else []),
            human_bytes(item.unzipped_bytes),
            human_bytes(item.compressed_bytes),
            percent(report.share(item.unzipped_bytes)),
        )
    return table


def _rich_removed(label: str, removed: Removal) -> Table:
    title = f"Slimming removed from {label}: {human_bytes(removed.bytes)} in {removed.files:,} files"
    table = _table(title, ("by rule", "left"), ("removed", "right"), ("by distribution", "left"))
    table.add_column("removed", justify="right")
    rules, packages = list(removed.by_rule), list(removed.by_package)
    for index in range(max(len(rules), len(packages))):
        rule = rules[index] if index < len(rules) else ("", None)
        package = packages[index] if index < len(packages) else ("", None)
        table.add_row(
            rule[0],
            human_bytes(rule[1]) if rule[1] is not None else "",
            package[0],
            human_bytes(package[1]) if package[1] is not None else "",
        )
    return table


def _rich_comparison(comparison: Comparison) -> Table:
    delta = comparison.after_unzipped - comparison.before_unzipped
    title = (
        f"Compared with {', '.join(comparison.baseline)}: {human_bytes(comparison.before_unzipped)} → "
        f"{human_bytes(comparison.after_unzipped)} ({signed(delta)})"
    )
    table = _table(
        title,
        ("distribution", "left"),
        ("change", "left"),
        ("before", "right"),
        ("after", "right"),
        ("delta", "right"),
        ("files", "right"),
    )
    for row in comparison.rows[:MAX_DISTRIBUTION_ROWS]:
        style = "red" if row.delta > 0 else "green" if row.delta < 0 else "dim"
        table.add_row(
            row.name,
            Text(row.status, style=style),
            human_bytes(row.before),
            human_bytes(row.after),
            Text(signed(row.delta), style=style),
            f"{row.files_after - row.files_before:+,}",
        )
    return table


# --------------------------------------------------------------------------------------------------
# HTML


def render_html(report: SizeReport, *, error: LayerforgeError | None = None) -> str:
    """One self-contained page: inline CSS, JS and SVG, nothing fetched."""
    return html_page.page(report_json(report, error=error), headline(report))
