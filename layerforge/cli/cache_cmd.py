"""`layerforge cache info` and `layerforge cache prune`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..cache import default_cache_dir
from ..cache_admin import cache_info, parse_age, prune
from ..report.size_report import human_bytes, parse_byte_size
from . import main
from .options import cache_option
from .output import Output, json_option, quiet_option, reporting


@main.group("cache")
def cache_group() -> None:
    """What the cache holds (wheels, compressed zip members, processed wheels), and pruning it."""


@cache_group.command("info")
@cache_option
@json_option
def info_command(cache_dir: Path | None, json_mode: bool) -> None:
    """Where the cache is, and its size and entries by kind."""
    output = Output(json_mode=json_mode)
    with reporting(output):
        info = cache_info(cache_dir or default_cache_dir())
        if json_mode:
            output.emit_json(info.as_dict())
            return
        table = Table("kind", "entries", "size", box=None)
        for kind, found in info.kinds.items():
            table.add_row(kind, f"{found.entries:,}", human_bytes(found.bytes))
        if info.temporary_bytes:
            table.add_row("unfinished writes", "", human_bytes(info.temporary_bytes))
        output.console.print(f"location: {info.location}")
        output.console.print(table)
        output.console.print(f"total: {human_bytes(info.total_bytes)}")


@cache_group.command("prune")
@cache_option
@click.option("--older-than", metavar="AGE", help="Remove entries not used for AGE: 45s, 90m, 12h, 30d, 2w.")
@click.option(
    "--max-size",
    metavar="BYTES",
    help="Then remove the least recently used until the rest fit: 2GB (10^9), 1.5GiB (2^30), bytes.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@json_option
@quiet_option
def prune_command(
    cache_dir: Path | None,
    older_than: str | None,
    max_size: str | None,
    dry_run: bool,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Remove cache entries by age and by size budget, least recently used first.

    Safe while builds run: an entry a build holds is skipped and reported as busy.
    """
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        if older_than is None and max_size is None:
            raise click.UsageError("say what to remove: --older-than AGE, --max-size BYTES, or both")
        result = prune(
            cache_dir or default_cache_dir(),
            older_than=parse_age(older_than) if older_than is not None else None,
            max_bytes=parse_byte_size(max_size) if max_size is not None else None,
            dry_run=dry_run,
        )
        if json_mode:
            output.emit_json(result.as_dict())
            return
        verb = "would remove" if dry_run else "removed"
        for entry in result.removed:
            output.info(f"{verb} {entry.kind} {entry.path} ({human_bytes(entry.size)})")
        for entry in result.busy:
            output.warn(f"left {entry.path}: a build is using it")
        output.console.print(
            f"{verb} {len(result.removed):,} entries ({human_bytes(result.removed_bytes)}) and "
            f"{len(result.temporaries):,} abandoned temporary files; {human_bytes(result.kept_bytes)} kept"
        )
