"""Loading a project: import its module and collect its processors."""

import importlib
import re
import sys
import traceback
from pathlib import Path

import attrs

from ..errors import ProjectError
from ..processor import Processor
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
# Modules that loading a project imported from its folder; the next load drops them.
_loaded_project_modules = set()
_INSTALLED = re.compile(r"[/\\\\](site|dist)-packages[/\\\\]")


def import_project_module(module_name, project_dir):
    """Import `module_name` fresh from `project_dir`, which goes first on sys.path.

    Loading again (``dev`` after an edit, or another project) first drops
    the modules the last load imported from its folder, sibling modules
    included, so the current files are the ones used. Modules the project
    did not load (``__main__``, the user's own test modules) are never dropped.
    """
    folder = Path(project_dir).resolve()
    if not folder.is_dir():
        raise ProjectError(f"project folder {folder} does not exist")
    _project_folders.add(folder)
    _forget_loaded_project_modules()
    sys.path[:] = [folder_text for folder_text in sys.path
                   if Path(folder_text or ".").resolve() not in _project_folders]
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    already_imported = set(sys.modules)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ProjectError(
                f"cannot find module {module_name!r} in {folder}: create "
                f"{module_name.replace('.', '/')}.py there, or name another module with --app or UFOP_APP"
            ) from None
        raise ProjectError(_import_failure(module_name)) from exc
    except ProjectError:
        raise  # what ufop_sdk found wrong while the module ran (ufop_sdk.compat): its message says it all
    except Exception as exc:
        raise ProjectError(_import_failure(module_name)) from exc
    finally:
        _remember_project_modules(set(sys.modules) - already_imported, folder)


def _remember_project_modules(names, folder):
    """Remember which of the modules just imported are the project's own.

    Never ufop_sdk or installed packages, even from a venv inside the folder.
    """
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        if not path or name.partition(".")[0] == "ufop_sdk" or _INSTALLED.search(path):
            continue
        if folder in Path(path).resolve().parents:
            _loaded_project_modules.add(name)


def _forget_loaded_project_modules():
    for name in _loaded_project_modules:
        sys.modules.pop(name, None)
    _loaded_project_modules.clear()


def _import_failure(module_name):
    return f"cannot import {module_name!r}:\n{traceback.format_exc()}"
