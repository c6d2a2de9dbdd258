"""``ufop-sdk dockerfile``: print the project's Dockerfile."""

from pathlib import Path

import click

from ..packaging import dockerfile


@click.command("dockerfile")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="The project folder.")
def dockerfile_command(project):
    """Print the project's Dockerfile: its own if it has one, else the one ufop-sdk writes."""
    own = project / "Dockerfile"
    click.echo(own.read_text(encoding="utf-8") if own.is_file() else dockerfile(), nl=False)
