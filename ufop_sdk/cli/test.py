"""``ufop-sdk test``: run a processor on a file, or on every file in a folder."""

import contextlib
import json
import logging
import sys
from pathlib import Path

import attrs
import click

from ..app.bodies import read_body
from ..app.media import is_textual
from ..app.routing import join_cmd
from ..app.runner import ProcessorRunner
from ..sources.blocking import BlockingFetcher
from .common import EXIT_FAILED, load_project, load_settings, project_options


@click.command("test")
@click.argument("source", metavar="FILE", type=click.Path(exists=True, path_type=Path))
@click.argument("cmd", required=False, default="")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the result here (a folder when FILE is a folder).")
@click.option("--content-type", help="The Content-Type to declare for the input.")
@click.option("-H", "--header", "headers", multiple=True,
              callback=lambda _context, _parameter, given: _headers(given),
              help="A request header, 'Name: value' as curl takes it (X-Qiniu-*: req.qiniu). Repeatable.")
@project_options
def test_command(source, cmd, output, content_type, headers, project, app):
    """Run CMD (without the ufop name) on FILE in-process, exactly as the server would.

    \b
      ufop-sdk test photo.jpg thumbnail/200x200 -o thumb.jpg
      ufop-sdk test photos/ thumbnail/200x200 -o thumbs/
      ufop-sdk test photo.jpg info -H 'X-Qiniu-Uid: MTM0OTg1Nw=='
    """
    # The error's traceback is printed with its JSON; the runner's log would repeat it.
    logging.getLogger("ufop_sdk.runner").disabled = True
    settings = load_settings(project, app=app)
    fetcher = BlockingFetcher(settings)
    runner = ProcessorRunner(load_project(settings), debug=True, fetcher=fetcher, settings=settings)
    full_cmd = join_cmd(settings.name, cmd)
    request = {"declared_content_type": content_type, "headers": headers}
    if source.is_dir():
        _test_folder(runner, full_cmd, source, output, request)
    else:
        _test_file(runner, full_cmd, source, output, request)


def _headers(values):
    """-H values ('Name: value') as a list of (name, value); BadParameter (exit 2) for one without a name."""
    pairs = []
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {value!r}", param_hint="'-H' / '--header'")
        pairs.append((name.strip(), text.strip()))
    return pairs


@contextlib.contextmanager
def _running(runner, cmd, path, request):
    """Process the file at `path`; `request` holds process_cmd's keywords (the declared type, headers).
    Gives the Response; a file or stream in it is written out chunk by chunk, never held whole."""
    with open(path, "rb") as buffer:
        outcome = runner.process_cmd(cmd, buffer, **request)
        try:
            yield outcome.response
        finally:
            outcome.close()


def _test_file(runner, cmd, path, output, request):
    with _running(runner, cmd, path, request) as response:
        if response.status >= 400:
            _print_error(response)
            sys.exit(EXIT_FAILED)
        if output:
            size = _write(output, response.body)
            click.echo(f"{response.status} {response.content_type}, {size} bytes -> {output}", err=True)
        elif is_textual(response.content_type) or response.body == b"":
            _write_stdout(response.body)
        elif sys.stdout.isatty():
            size = f"{len(response.body)} bytes" if isinstance(response.body, bytes) else "a file or stream"
            raise click.UsageError(f"the result is binary ({response.content_type}, {size}): "
                                   "save it with -o FILE")
        else:
            _write_stdout(response.body)


def _test_folder(runner, cmd, folder, output, request):
    if output is None:
        raise click.UsageError("FILE is a folder: name an output folder with -o DIR")
    if output.exists() and not output.is_dir():
        raise click.UsageError(f"-o {output} is a file; with a folder as FILE it must be a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _is_inside(p, output))
    failures = []
    with click.progressbar(files, label="processing", file=sys.stderr) as bar:
        for path in bar:
            relative = path.relative_to(folder)
            with _running(runner, cmd, path, request) as response:
                if response.status >= 400:
                    failures.append((relative, attrs.evolve(response, body=read_body(response.body))))
                    continue
                _write(output / relative, response.body)
    for relative, response in failures:
        click.echo(f"{relative}: ", err=True, nl=False)
        _print_error(response)
    click.echo(f"{len(files) - len(failures)} ok, {len(failures)} failed", err=True)
    if failures:
        sys.exit(EXIT_FAILED)


def _write(path, body):
    """Write an output file (and its folders) from a body; its size, or stop with a clean error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as file:
            return sum(file.write(chunk) for chunk in _chunks(body))
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


def _chunks(body):
    return [body] if isinstance(body, bytes) else body.chunks()


def _print_error(response):
    """The status and JSON error on stderr; a traceback, if any, below it as text.

    A processor's own error answer need not be JSON: it is shown as its
    content type and text.
    """
    body = read_body(response.body)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        text = body.decode("utf-8", errors="replace")
        click.echo(f"{response.status} {response.content_type}: {text}", err=True)
        return
    details = payload.pop("traceback", None)
    click.echo(f"{response.status} {json.dumps(payload, ensure_ascii=False)}", err=True)
    if details:
        click.echo(details.rstrip(), err=True)


def _write_stdout(body):
    stream = click.get_binary_stream("stdout")
    last = b""
    for chunk in _chunks(body):
        stream.write(chunk)
        last = bytes(chunk[-1:]) or last
    if last and last != b"\n" and sys.stdout.isatty():
        stream.write(b"\n")
    stream.flush()


def _is_inside(path, folder):
    return folder is not None and folder.resolve() in path.resolve().parents
