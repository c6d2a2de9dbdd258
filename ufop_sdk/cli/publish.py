"""``ufop-sdk publish``: build, push, release and deploy one version, one numbered step at a time."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from ..tools.build_context import BUILD_FOLDER, CONSTRAINTS, DockerIgnore, copied_secrets, write_build_files
from ..tools.packaging import (
    DEFAULT_BASE_IMAGE,
    REGION_RULE,
    Release,
    check_base_image,
    dockerfile,
    dockerignore,
    takes_base_image,
)
from .common import EXIT_USAGE

STEPS = 6
# The platform runs x86-64 machines: an image built on an ARM laptop for its own CPU would not start there.
PLATFORM = "linux/amd64"
WHERE_TO_GET = {
    "docker": "install Docker: https://docs.docker.com/engine/install/",
    "qdoractl": "download qdoractl from Qiniu's developer site (developer.qiniu.com, Dora / UFOP tools) "
                "and run `qdoractl login` once",
}
REQUIREMENTS = "ufop-sdk\n"


def base_image_option(function):
    """``--base-image``, shared with ``ufop-sdk dockerfile``; None when not given."""
    def check(context, parameter, value):
        try:
            return None if value is None else check_base_image(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option("--base-image", callback=check, metavar="IMAGE",
                        help=f"The image to build on [default: {DEFAULT_BASE_IMAGE}], e.g. a mirror's copy "
                             "when Docker Hub is out of reach.")(function)


@click.command("publish")
@click.option("--name", required=True, help="The ufop name (5-20 of a-z, 0-9, '-' and '_').")
@click.option("--version", "version", required=True, help="The version, e.g. 1.0.0 (also the image tag).")
@click.option("--tag", help="The image to build and push [default: NAME:VERSION].")
@click.option("--flavor", default="C1M1", show_default=True, help="Instance cores and memory.")
@click.option("--region", default="z0", show_default=True, help="Region to deploy in.")
@click.option("--expect", type=click.IntRange(min=0), default=1, show_default=True,
              help="Instances to run (0 stops them).")
@click.option("--desc", default="", help="A description for the release.")
@base_image_option
@click.option("--project", type=click.Path(file_okay=False, exists=True, path_type=Path), default=".",
              show_default=True, help="The project folder.")
@click.option("--dry-run", is_flag=True, help="Print the files and commands; write and run nothing.")
@click.option("--no-deploy", is_flag=True, help="Stop after the release; deploy later.")
@click.option("--build-only", is_flag=True, help="Stop after building the image (to try it locally).")
def publish_command(name, version, tag, flavor, region, expect, desc, base_image, project, dry_run,
                    no_deploy, build_only):
    """Build the image, push it, release it and deploy it on Qiniu, in six numbered steps.

    Safe to re-run: each step repeats the platform's own idempotent command.
    It stops at the first step that fails, with that step's exit code.
    """
    release = _release(name, version, tag or f"{name}:{version}", flavor, desc)
    if not REGION_RULE.fullmatch(region):
        raise click.BadParameter(f"{region!r} is not a region such as z0", param_hint="--region")
    files = _files_to_write(project, release)
    _check_dockerignore(project, files)
    commands = [_build_command(project, release.image, base_image)]
    if not build_only:
        commands += [["qdoractl", "push", release.image], ["qdoractl", "release", "--config", str(project)],
                     ["qdoractl", "deploy", name, version, "--region", region, "--expect", str(expect)]]
    if no_deploy and not build_only:
        commands.pop()
    if dry_run:
        _show(project, files, commands)
        return
    _step(1, "checking that " + " and ".join(_tools(build_only)) + " are installed")
    _require_tools(_tools(build_only))
    _step(2, "writing " + _write_files(project, files))
    _run(commands)
    if build_only:
        click.echo(f"built {release.image}")
        return
    if no_deploy:
        _step(6, "deploy skipped (--no-deploy)")
    click.echo(f"published {name} {version}")


def _release(name, version, image, flavor, desc):
    try:
        return Release(name=name, version=version, image=image, flavor=flavor, desc=desc)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _files_to_write(project, release):
    """{name: text} of the project files publish writes: those missing, and dora.yml every time."""
    defaults = {"Dockerfile": dockerfile(), ".dockerignore": dockerignore(), "requirements.txt": REQUIREMENTS}
    files = {name: text for name, text in defaults.items() if not (project / name).exists()}
    return {**files, "dora.yml": release.dora_yml()}


def _check_dockerignore(project, files):
    """Exit 2 when the build would copy ``.env`` files, or leave out ``.ufop/``."""
    ignore = DockerIgnore(files[".dockerignore"]) if ".dockerignore" in files else DockerIgnore.of(project)
    secrets = copied_secrets(project, ignore)
    if secrets:
        click.echo(f"Error: the image would contain {', '.join(secrets)}, which often hold secrets. "
                   "Add `**/.env` and `**/.env.*` to .dockerignore (or move the files out of the project), "
                   "and give production settings through dora.yml's env.global.", err=True)
        sys.exit(EXIT_USAGE)
    if ignore.excludes(CONSTRAINTS):
        click.echo(f"Error: .dockerignore leaves out {BUILD_FOLDER}/, the ufop-sdk the image installs: "
                   f"add the line `!{BUILD_FOLDER}` after the rule that matches it.", err=True)
        sys.exit(EXIT_USAGE)


def _build_command(project, image, base_image):
    """``docker build``, with the base image as a build argument when the Dockerfile takes one.

    Exits 2 when --base-image was given for a Dockerfile without ``ARG BASE_IMAGE``:
    Docker would ignore the argument and build on the Dockerfile's own base.
    """
    own = project / "Dockerfile"
    text = own.read_text(encoding="utf-8") if own.is_file() else dockerfile()
    build = ["docker", "build", "--platform", PLATFORM]
    if takes_base_image(text):
        build += ["--build-arg", f"BASE_IMAGE={base_image or DEFAULT_BASE_IMAGE}"]
    elif base_image:
        click.echo(f"Error: --base-image: {own} does not take a base image. Replace its FROM line with\n"
                   f"    ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}\n    FROM ${{BASE_IMAGE}}\n"
                   "(as `ufop-sdk dockerfile` prints in a folder without a Dockerfile), "
                   "or drop --base-image.", err=True)
        sys.exit(EXIT_USAGE)
    return [*build, "-t", image, str(project)]


def _tools(build_only):
    return ["docker"] if build_only else list(WHERE_TO_GET)


def _require_tools(tools):
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        for tool in missing:
            click.echo(f"Error: {tool} is not on PATH: {WHERE_TO_GET[tool]}", err=True)
        sys.exit(EXIT_USAGE)


def _write_files(project, files):
    for name, text in files.items():
        (project / name).write_text(text, encoding="utf-8")
    try:
        built = write_build_files(project)
    except LookupError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    own = project / "Dockerfile"
    if "Dockerfile" not in files and BUILD_FOLDER not in own.read_text(encoding="utf-8"):
        click.echo(f"Warning: {own} does not install from {BUILD_FOLDER}/ (the ufop-sdk this runs and the "
                   "versions of this environment); `ufop-sdk dockerfile` in an empty folder prints one that "
                   "does.", err=True)
    return ", ".join([*files, *built])


def _run(commands):
    for number, command in enumerate(commands, start=3):
        _step(number, shlex.join(command))
        result = subprocess.run(command)
        if result.returncode != 0:
            # killed by a signal N: exit 128 + N, as a shell would
            code = result.returncode if result.returncode > 0 else 128 - result.returncode
            click.echo(f"step {number} failed with exit code {code}: {shlex.join(command)}", err=True)
            sys.exit(code)


def _show(project, files, commands):
    click.echo("Dry run: nothing is written or run.\n")
    for name, text in files.items():
        click.echo(f"--- would write {project / name} ---\n{text}")
    click.echo(f"--- would write {project / BUILD_FOLDER} ---\n"
               "a wheel of this ufop-sdk, and constraints.txt pinning the versions installed here\n")
    click.echo("--- would run ---")
    for command in commands:
        click.echo(shlex.join(command))


def _step(number, text):
    click.echo(f"[{number}/{STEPS}] {text}", err=True)
