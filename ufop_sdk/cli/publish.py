"""``ufop-sdk publish``: build, push, release and deploy one version, one numbered step at a time."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from ..packaging import REGION_RULE, Release, dockerfile
from .common import EXIT_USAGE

STEPS = 6
WHERE_TO_GET = {
    "docker": "install Docker: https://docs.docker.com/engine/install/",
    "qdoractl": "download qdoractl from Qiniu's developer site (developer.qiniu.com, Dora / UFOP tools) "
                "and run `qdoractl login` once",
}


@click.command("publish")
@click.option("--name", required=True, help="The ufop name (5-20 of a-z, 0-9, '-' and '_').")
@click.option("--version", "version", required=True, help="The version, e.g. 1.0.0 (also the image tag).")
@click.option("--tag", help="The image to build and push [default: NAME:VERSION].")
@click.option("--flavor", default="C1M1", show_default=True, help="Instance cores and memory.")
@click.option("--region", default="z0", show_default=True, help="Region to deploy in.")
@click.option("--expect", type=click.IntRange(min=0), default=1, show_default=True,
              help="Instances to run (0 stops them).")
@click.option("--desc", default="", help="A description for the release.")
@click.option("--project", type=click.Path(file_okay=False, exists=True, path_type=Path), default=".",
              show_default=True, help="The project folder.")
@click.option("--dry-run", is_flag=True, help="Print the files and commands; write and run nothing.")
@click.option("--no-deploy", is_flag=True, help="Stop after the release; deploy later.")
def publish_command(name, version, tag, flavor, region, expect, desc, project, dry_run, no_deploy):
    """Build the image, push it, release it and deploy it on Qiniu, in six numbered steps.

    Safe to re-run: each step repeats the platform's own idempotent command.
    It stops at the first step that fails, with that step's exit code.
    """
    release = _release(name, version, tag or f"{name}:{version}", flavor, desc)
    if not REGION_RULE.fullmatch(region):
        raise click.BadParameter(f"{region!r} is not a region such as z0", param_hint="--region")
    commands = [
        ["docker", "build", "-t", release.image, str(project)],
        ["qdoractl", "push", release.image],
        ["qdoractl", "release", "--config", str(project)],
        ["qdoractl", "deploy", name, version, "--region", region, "--expect", str(expect)],
    ]
    if no_deploy:
        commands.pop()
    if dry_run:
        _show(project, release, commands)
        return
    _step(1, "checking that docker and qdoractl are installed")
    _require_tools()
    _step(2, "writing " + _write_files(project, release))
    for number, command in enumerate(commands, start=3):
        _step(number, shlex.join(command))
        result = subprocess.run(command)
        if result.returncode != 0:
            # killed by a signal N: exit 128 + N, as a shell would
            code = result.returncode if result.returncode > 0 else 128 - result.returncode
            click.echo(f"step {number} failed with exit code {code}: {shlex.join(command)}", err=True)
            sys.exit(code)
    if no_deploy:
        _step(6, "deploy skipped (--no-deploy)")
    click.echo(f"published {name} {version}")


def _release(name, version, image, flavor, desc):
    try:
        return Release(name=name, version=version, image=image, flavor=flavor, desc=desc)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _require_tools():
    missing = [tool for tool in WHERE_TO_GET if shutil.which(tool) is None]
    if missing:
        for tool in missing:
            click.echo(f"Error: {tool} is not on PATH: {WHERE_TO_GET[tool]}", err=True)
        sys.exit(EXIT_USAGE)


def _write_files(project, release):
    written = []
    if not (project / "Dockerfile").exists():
        (project / "Dockerfile").write_text(dockerfile(), encoding="utf-8")
        written.append("Dockerfile")
    (project / "dora.yml").write_text(release.dora_yml(), encoding="utf-8")
    written.append("dora.yml")
    return " and ".join(written)


def _show(project, release, commands):
    click.echo("Dry run: nothing is written or run.\n")
    if not (project / "Dockerfile").exists():
        click.echo(f"--- would write {project / 'Dockerfile'} ---\n{dockerfile()}")
    click.echo(f"--- would write {project / 'dora.yml'} ---\n{release.dora_yml()}")
    click.echo("--- would run ---")
    for command in commands:
        click.echo(shlex.join(command))


def _step(number, text):
    click.echo(f"[{number}/{STEPS}] {text}", err=True)
