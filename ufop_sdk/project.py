"""Loading a project: import its module and collect its processors."""

import importlib
import re
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

    A class bound under two names counts once. An object holding
    ``ufop_processors`` (a qiniu-ufop app, see ufop_sdk.compat) contributes
    those. Nothing is registered globally, so two projects loaded in one
    process never see each other's.
    """
    found = []
    for value in vars(module).values():
        candidates = getattr(value, "ufop_processors", None) if not isinstance(value, type) else [value]
        for candidate in candidates or ():
            if (isinstance(candidate, type) and issubclass(candidate, Processor)
                    and candidate.route is not None and candidate not in found):
                found.append(candidate)
    return found


# Folders this process has loaded projects from. Only the current one stays on
# sys.path, so a module name never resolves into another project's folder.
_project_folders = set()
_INSTALLED = re.compile(r"[/\\\\](site|dist)-packages[/\\\\]")


def import_project_module(module_name, project_dir):
    """Import `module_name` fresh from `project_dir`, which goes first on sys.path.

    Modules imported earlier from a project folder, this one before an edit
    or another project, are dropped first, so the project's current files are
    the ones used, sibling modules included.
    """
    folder = Path(project_dir).resolve()
    if not folder.is_dir():
        raise ProjectError(f"project folder {folder} does not exist")
    _project_folders.add(folder)
    _forget_project_modules(_project_folders)
    sys.path[:] = [folder_text for folder_text in sys.path
                   if Path(folder_text or ".").resolve() not in _project_folders]
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ProjectError(
                f"cannot find module {module_name!r} in {folder}: create "
                f"{module_name.replace('.', '/')}.py there, or name another module with --app or UFOP_APP"
            ) from None
        raise ProjectError(_import_failure(module_name)) from exc
    except Exception as exc:
        raise ProjectError(_import_failure(module_name)) from exc


def _forget_project_modules(folders):
    """Drop the project's own modules; never ufop_sdk or installed packages (a venv inside it)."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name.partition(".")[0] == "ufop_sdk" or _INSTALLED.search(path):
            continue
        if any(folder in Path(path).resolve().parents for folder in folders):
            del sys.modules[name]


def _import_failure(module_name):
    return f"cannot import {module_name!r}:\n{traceback.format_exc()}"
