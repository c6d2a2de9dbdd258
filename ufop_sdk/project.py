"""Loading a project: import its module and collect its processors."""

import importlib
import sys
import traceback
from pathlib import Path

import attrs

from .errors import ProjectError
from .processor import Processor
from .routing import RouteTable


@attrs.frozen
class App:
    """A loaded project: its module's name, folder and route table."""

    module_name: str
    project_dir: Path
    routes: RouteTable

    @property
    def processors(self):
        return tuple(route.processor for route in self.routes)


def load_app(settings):
    """Import the project that `settings` names and build its route table.

    Raises ProjectError naming the module and the fix when it cannot.
    """
    module = import_project_module(settings.app, settings.project_dir)
    processors = collect_processors(module)
    if not processors:
        raise ProjectError(
            f"no processors in module {settings.app!r} ({getattr(module, '__file__', '?')}): "
            "define a subclass of ufop_sdk.Processor with a route"
        )
    routes = RouteTable(processors, settings.timeout)
    return App(settings.app, Path(settings.project_dir).resolve(), routes)


def collect_processors(module):
    """Processor subclasses with a route bound in `module`'s namespace, in order.

    A class bound under two names counts once. Nothing is registered
    globally, so two projects loaded in one process never see each other's.
    """
    found = []
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, Processor)
                and value.route is not None and value not in found):
            found.append(value)
    return found


def import_project_module(module_name, project_dir):
    """Import `module_name` fresh from `project_dir` (which goes first on sys.path).

    A module of the same name imported earlier, from another project or
    before an edit, is dropped first so the project's current file is used.
    """
    folder = str(Path(project_dir).resolve())
    if not Path(folder).is_dir():
        raise ProjectError(f"project folder {folder} does not exist")
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    _forget_module(module_name)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ProjectError(
                f"cannot find module {module_name!r} in {folder}: create {module_name.replace('.', '/')}.py "
                "there, or name another module with --app or UFOP_APP"
            ) from None
        raise ProjectError(_import_failure(module_name)) from exc
    except Exception as exc:
        raise ProjectError(_import_failure(module_name)) from exc


def _forget_module(module_name):
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]


def _import_failure(module_name):
    return f"cannot import {module_name!r}:\n{traceback.format_exc()}"
