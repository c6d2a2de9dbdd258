"""What ``publish`` adds to the project before ``docker build``, and what it checks stays out.

The image installs the ufop-sdk that publish runs from, as a wheel in ``.ufop/wheels/``,
with every other distribution pinned to the version installed beside it
(``.ufop/constraints.txt``): the image runs what was tested, whether or not that
version is on the package index. The wheel is packed from the imported package's
own files, so an editable install or a checkout on ``PYTHONPATH`` ships exactly
the code that runs, and no build tool is needed.

``.env`` and ``.env.*`` often hold secrets: :func:`copied_secrets` lists those
the project's ``.dockerignore`` would let into the image.
"""

import base64
import hashlib
import importlib.metadata
import importlib.util
import os
import posixpath
import re
import zipfile
from pathlib import Path

from .. import __version__

BUILD_FOLDER = ".ufop"
WHEELS = f"{BUILD_FOLDER}/wheels"
CONSTRAINTS = f"{BUILD_FOLDER}/constraints.txt"
SDK_DISTRIBUTION = "ufop-sdk"
SDK_PACKAGES = ("ufop_sdk", "qiniu_ufop")
SECRET_NAME = re.compile(r"\.env(?:\..+)?")
WHEEL_INFO = "Wheel-Version: 1.0\nGenerator: ufop-sdk publish\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def write_build_files(project):
    """Write the wheel and the constraints into ``project/.ufop/``, replacing earlier ones.

    Returns their paths relative to `project`. Raises LookupError when ufop-sdk's
    distribution metadata cannot be found (it is not installed).
    """
    wheels = Path(project) / WHEELS
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("*.whl"):
        old.unlink()
    wheel = write_sdk_wheel(wheels)
    (Path(project) / CONSTRAINTS).write_text(constraints(), encoding="utf-8")
    return [f"{WHEELS}/{wheel.name}", CONSTRAINTS]


def write_sdk_wheel(folder):
    """Pack the running ufop-sdk as ``ufop_sdk-<version>-py3-none-any.whl`` in `folder`; returns its path."""
    dist_info = f"ufop_sdk-{__version__}.dist-info"
    files = {**_package_files(), **_dist_info_files(dist_info)}
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    path = Path(folder) / f"ufop_sdk-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


def _package_files():
    files = {}
    for package in SDK_PACKAGES:
        root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[f"{package}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return files


def _dist_info_files(dist_info):
    try:
        installed = importlib.metadata.distribution(SDK_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise LookupError("ufop-sdk is not installed in this environment (pip install ufop-sdk, or "
                          "pip install -e . in its checkout): its metadata goes into the image") from None
    # the running code's version wins over an older install's (a checkout on PYTHONPATH)
    # An egg-info (``pip install -e .`` leaves one in the checkout, first on sys.path there) keeps
    # the same core metadata as PKG-INFO.
    installed_metadata = installed.read_text("METADATA") or installed.read_text("PKG-INFO")
    metadata = re.sub(r"(?m)^Version: .*$", f"Version: {__version__}", installed_metadata, count=1)
    return {f"{dist_info}/METADATA": metadata.encode(),
            f"{dist_info}/entry_points.txt": (installed.read_text("entry_points.txt") or "").encode(),
            f"{dist_info}/WHEEL": WHEEL_INFO.encode()}


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def constraints():
    """A pip constraints file pinning every distribution installed here (ufop-sdk aside: the wheel is it)."""
    pins = {}
    for distribution in importlib.metadata.distributions():  # in sys.path order: the first one is imported
        name, version = distribution.metadata["Name"], distribution.version
        if name and version:
            pins.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={version}")
    pins.pop(SDK_DISTRIBUTION, None)
    header = "# The versions installed where `ufop-sdk publish` ran: the image installs the same.\n"
    return header + "".join(f"{pin}\n" for _, pin in sorted(pins.items()))


class DockerIgnore:
    """A .dockerignore's rules, matched as Docker matches them: the last matching line wins, ``!``
    lets a path back in, a rule matching a folder matches what is inside it, ``*`` and ``?`` stay
    within one path segment and ``**`` spans any number of them."""

    def __init__(self, text):
        self.rules = []
        for line in text.splitlines():
            pattern = line.strip()
            if not pattern or pattern.startswith("#"):
                continue
            negated = pattern.startswith("!")
            pattern = posixpath.normpath(pattern.removeprefix("!").strip().lstrip("/"))
            self.rules.append((negated, _pattern_regex(pattern)))

    @classmethod
    def of(cls, project):
        """The rules of `project`'s .dockerignore (none if it has none)."""
        path = Path(project) / ".dockerignore"
        return cls(path.read_text(encoding="utf-8") if path.is_file() else "")

    def excludes(self, path):
        """Whether the relative, ``/``-separated `path` stays out of the build context."""
        parts = path.split("/")
        candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
        excluded = False
        for negated, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not negated
        return excluded

    @property
    def has_exceptions(self):
        return any(negated for negated, _ in self.rules)


def _pattern_regex(pattern):
    parts, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        else:
            token, index = _pattern_token(pattern, index)
            parts.append(token)
    return re.compile("".join(parts))


def _pattern_token(pattern, index):
    character = pattern[index]
    if character == "*":
        return "[^/]*", index + 1
    if character == "?":
        return "[^/]", index + 1
    if character == "\\" and index + 1 < len(pattern):
        return re.escape(pattern[index + 1]), index + 2
    end = pattern.find("]", index + 2)
    if character == "[" and end > 0:
        return "[" + pattern[index + 1:end].replace("\\", "\\\\") + "]", end + 1
    return re.escape(character), index + 1


def copied_secrets(project, rules):
    """The ``.env`` and ``.env.*`` files under `project` that `rules` (a :class:`DockerIgnore`) let into
    the image, as sorted relative paths."""
    found = []
    for folder, subfolders, files in os.walk(project):
        relative = Path(folder).relative_to(project).as_posix()
        prefix = "" if relative == "." else relative + "/"
        if not rules.has_exceptions:  # nothing inside an excluded folder can come back
            subfolders[:] = [name for name in subfolders if not rules.excludes(prefix + name)]
        found += [prefix + name for name in files
                  if SECRET_NAME.fullmatch(name) and not rules.excludes(prefix + name)]
    return sorted(found)
