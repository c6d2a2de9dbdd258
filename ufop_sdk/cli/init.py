"""``ufop-sdk init``: write a new, working project."""

import re
from importlib import resources
from pathlib import Path
from string import Template

import click

from .. import __version__
from ..app.settings import UFOP_NAME_RULE
from .common import EXIT_FAILED

# project file -> template file (dotfiles are stored without their dot)
TEMPLATE_FILES = {
    "processors.py": "processors.py",
    "tests/test_processors.py": "tests/test_processors.py",
    ".env": "env",
    "requirements.txt": "requirements.txt",
    ".dockerignore": "dockerignore",
    "README.md": "README.md",
    "Dockerfile": "../Dockerfile",
}


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--name", help="The ufop name: 5-20 of a-z, 0-9, '-' and '_' [default: the folder's name].")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init_command(directory, name, force):
    """Write a working project in DIRECTORY: processors, a test, .env and more."""
    name = name or _name_from_folder(directory)
    if not UFOP_NAME_RULE.fullmatch(name):
        raise click.BadParameter(
            f"{name!r}: a ufop name is 5-20 of lowercase letters, digits, '-' and '_'",
            param_hint="--name")
    files = {path: _render(template, name) for path, template in TEMPLATE_FILES.items()}
    conflicts = [path for path in files if (directory / path).exists()]
    if conflicts and not force:
        click.echo(f"{directory} already has: {', '.join(conflicts)}", err=True)
        click.echo("Nothing was written. Use --force to overwrite them.", err=True)
        raise SystemExit(EXIT_FAILED)
    for path, text in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        click.echo(f"  wrote {target}")
    click.echo(f"\nNext: cd {directory} && ufop-sdk test processors.py && pytest")


def _name_from_folder(directory):
    """A valid ufop name from the folder's: ``demo`` -> ``demo-ufop``, ``My App`` -> ``my-app``."""
    name = re.sub(r"[^a-z0-9_-]+", "-", Path(directory).resolve().name.lower()).strip("-")[:20]
    return name if len(name) >= 5 else f"{name}-ufop".lstrip("-")


def _render(template, name):
    text = resources.files("ufop_sdk").joinpath("templates", "project", template).read_text("utf-8")
    return Template(text).safe_substitute(name=name, version=__version__)
