"""Helpers for a project's own tests.

    from pathlib import Path
    from ufop_sdk.testing import run

    PROJECT = Path(__file__).parent.parent

    def test_hello():
        response = run("hello/qq", b"", project=PROJECT)
        assert response.status == 200
        assert response.body == b"hello qq"
"""

import io
import os
from functools import cache
from pathlib import Path

from .app.project import load_app
from .app.routing import join_cmd
from .app.runner import ProcessorRunner
from .app.settings import Settings, load_env_file


def run(cmd, data, *, app="processors", content_type=None, project=".", headers=None):
    """Run `cmd` (without the ufop name) on `data` as the server would; return the Response.

    `data` is bytes or a path to a file; `headers` ({name: value}) are the
    request's, as ``req.headers`` and ``req.qiniu`` see them. Errors come back as Responses with
    their status and JSON body, as a client would see them. The project is
    loaded, and its processors set up, once per (app, project) in a process;
    its ``.env`` goes into ``os.environ`` first, under variables already set.
    """
    runner, name = _load(app, str(Path(project).resolve()))
    full_cmd = join_cmd(name, cmd)
    is_path = isinstance(data, (str, os.PathLike))
    with open(data, "rb") if is_path else io.BytesIO(bytes(data)) as buffer:
        return runner.process_cmd(full_cmd, buffer, declared_content_type=content_type,
                                  headers=headers).kept_whole()


@cache
def _load(app, project):
    load_env_file(project)
    settings = Settings.load(project, app=app)
    from .sources.blocking import BlockingFetcher  # here: importing ufop_sdk.testing loads no Tornado

    fetcher = BlockingFetcher(settings)
    return ProcessorRunner(load_app(settings), debug=True, fetcher=fetcher, settings=settings), settings.name
