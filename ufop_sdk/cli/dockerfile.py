"""``ufop-sdk dockerfile``: print the project's Dockerfile."""

from pathlib import Path

import click

from ..tools.packaging import DEFAULT_BASE_IMAGE, dockerfile, takes_base_image
from .publish import base_image_option


@click.command("dockerfile")
@base_image_option
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="The project folder.")
def dockerfile_command(base_image, project):
    """Print the project's Dockerfile: its own if it has one, else the one ufop-sdk writes.

    The one ufop-sdk writes builds on ARG BASE_IMAGE (--base-image sets its default).
    """
    own = project / "Dockerfile"
    if not own.is_file():
        click.echo(dockerfile(base_image or DEFAULT_BASE_IMAGE), nl=False)
        return
    text = own.read_text(encoding="utf-8")
    click.echo(text, nl=False)
    if base_image and not takes_base_image(text):
        click.echo(f"Warning: {own} has no `ARG BASE_IMAGE` before `FROM ${{BASE_IMAGE}}`: "
                   "--base-image cannot change its base.", err=True)
