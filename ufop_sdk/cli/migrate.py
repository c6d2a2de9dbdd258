"""``ufop-sdk migrate``: rewrite a qiniu-ufop app.py as a processors.py."""

from pathlib import Path

import click

from ..tools.migrate import migrate
from .common import EXIT_FAILED


@click.command("migrate")
@click.argument("app_file", metavar="APP.py", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write [default: processors.py beside APP.py]. Never overwritten.")
def migrate_command(app_file, output):
    """Write the class-style processors.py equivalent of a qiniu-ufop app.

    Routes are rewritten for re.fullmatch without the leading slash; what
    cannot be converted exactly keeps working as it did and is marked
    `# TODO(migrate)`. The app itself runs unchanged too: `ufop-sdk serve --app app`.
    """
    output = output or app_file.with_name("processors.py")
    if output.exists():
        click.echo(f"{output} already exists: nothing was written. Name another file with -o.", err=True)
        raise SystemExit(EXIT_FAILED)
    try:
        text, notes = migrate(app_file.read_text(encoding="utf-8"))
    except SyntaxError as exc:
        raise click.ClickException(f"{app_file} is not valid Python: {exc}") from None
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}")
    for note in notes:
        click.echo(f"  needs a look: {note}", err=True)
    click.echo(f"Try it: ufop-sdk routes --app {output.stem} --project {output.parent}")
