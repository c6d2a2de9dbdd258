"""``ufop-sdk routes``: the route table, in the order routes are tried."""

import re

import attrs
import click

from ..app.routing import Route
from .common import load_project, load_settings, project_options

HEADINGS = ("#", "processor", "route", "accepts", "timeout", "notes")
DEFAULT_MAX_CMD_BYTES = attrs.fields(Route).max_cmd_bytes.default


@click.command("routes")
@project_options
def routes_command(project, app):
    """Print the routes in the order they are tried: the first full match wins."""
    settings = load_settings(project, app=app)
    rows = [HEADINGS] + [
        (str(order), route.name, _route_text(route.pattern), ", ".join(route.accepts) or "*/*",
         f"{route.timeout:g}s", _notes(route))
        for order, route in enumerate(load_project(settings).routes, start=1)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _notes(route):
    """What a route does unlike the default: streams its source, runs async, takes long cmds."""
    notes = [] if route.prefetch else ["streams its source (prefetch=False)"]
    if route.concurrency is not None:
        notes.append(f"async, {route.concurrency} at once per worker")
    if route.max_cmd_bytes != DEFAULT_MAX_CMD_BYTES:
        notes.append(f"cmds up to {route.max_cmd_bytes} bytes")
    return "; ".join(notes)


def _route_text(pattern):
    """A regex as written; any other matcher as it says it was built (``search_route('abc')``)."""
    return pattern.pattern if isinstance(pattern, re.Pattern) else repr(pattern)
