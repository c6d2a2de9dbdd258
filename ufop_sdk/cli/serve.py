"""``ufop-sdk serve``: the production server on the embedded executor."""

import click

from ..sources.networks import DEFAULT_BLOCKED_NETWORKS
from . import serving
from .common import load_project, load_settings, project_options


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on [default: UFOP_HOST, else 0.0.0.0].")
@click.option("--port", type=int, default=None, help="Port [default: UFOP_PORT, else 9100].")
@click.option("--workers", type=int, default=None,
              help="Worker processes [default: UFOP_WORKERS, CPU_COUNT, FLAVOR, else the CPUs].")
@project_options
def serve_command(host, port, workers, project, app):
    """Serve POST /handler, GET /health and GET /metrics for the platform.

    Sources fetched from a url may not resolve to loopback, link-local,
    carrier-grade NAT, unique local, multicast or reserved addresses unless
    UFOP_BLOCKED_NETWORKS says otherwise ('none', or 'default,10.0.0.0/8').
    """
    settings = load_settings(project, app=app, host=host, port=port, workers=workers)
    serving.build_executor_and_serve(settings, load_project(settings), debug=False,
                                     default_blocked=DEFAULT_BLOCKED_NETWORKS)
