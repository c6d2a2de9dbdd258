"""The ``ufop-sdk`` command group."""

import click

from .. import __version__
from .dev import dev_command
from .dockerfile import dockerfile_command
from .init import init_command
from .migrate import migrate_command
from .publish import publish_command
from .routes import routes_command
from .serve import serve_command
from .test import test_command
from .worker import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ufop-sdk")
def main():
    """Write, try and serve Qiniu custom data processing services (UFOP)."""


main.add_command(init_command)
main.add_command(test_command)
main.add_command(routes_command)
main.add_command(serve_command)
main.add_command(dev_command)
main.add_command(worker_command)
main.add_command(dockerfile_command)
main.add_command(publish_command)
main.add_command(migrate_command)
