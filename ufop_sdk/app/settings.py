"""Settings, read once from flags, the environment and the project's ``.env``.

Precedence: a command-line flag, then the process environment, then ``.env``
in the project folder, then the default. An invalid value raises ConfigError
naming the variable and the value.

Every command also puts ``.env`` into its own process's environment
(`load_env_file`), under the real environment, so a project module reading
``os.environ`` at import works the same under serve, dev, test and routes.
"""

import logging
import os
import re
from pathlib import Path

import attrs
from dotenv import dotenv_values
from dotenv.parser import parse_stream

from ..errors import ConfigError
from ..sources.networks import parse_networks

log = logging.getLogger("ufop_sdk.settings")

UFOP_NAME_RULE = re.compile(r"[a-z0-9_-]{5,20}")
_FLAVOR = re.compile(r"C(?P<cores>\d+)M(?P<mem>\d+)|M(?P<mem2>\d+)C(?P<cores2>\d+)", re.IGNORECASE)
_SIZE = re.compile(r"(?P<number>\d+)\s*(?P<unit>[kmg]i?)?b?", re.IGNORECASE)
_UNITS = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_ufop_name(text):
    if not UFOP_NAME_RULE.fullmatch(text):
        raise ValueError("expected 5-20 of lowercase letters, digits, '-' and '_'")
    return text


def parse_positive_int(text):
    if not text.strip().isdecimal() or int(text) < 1:
        raise ValueError("expected a positive integer")
    return int(text)


def parse_port(text):
    if not text.strip().isdecimal() or not 1 <= int(text) <= 65535:
        raise ValueError("expected a port number 1-65535")
    return int(text)


def parse_seconds(text):
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ValueError("expected a positive number of seconds")
    return seconds


def parse_size(text):
    """Bytes, with an optional binary unit: ``1048576``, ``100M``, ``1GiB``."""
    found = _SIZE.fullmatch(text.strip())
    if not found or int(found["number"]) < 1:
        raise ValueError("expected a positive size in bytes such as 104857600 or 100MiB")
    unit = (found["unit"] or "")[:1].lower() or None
    return int(found["number"]) * _UNITS[unit]


def parse_flavor_cores(text):
    """The core count of a flavor: ``C2M4`` and the older ``M4C2`` give 2."""
    found = _FLAVOR.fullmatch(text.strip())
    if not found or int(found["cores"] or found["cores2"]) < 1:
        raise ValueError("expected a flavor such as C1M1 or M1C1")
    return int(found["cores"] or found["cores2"])


def parse_module_name(text):
    """A dotted module name; a trailing ``.py`` is forgiven (``processors.py``)."""
    name = text.strip().removesuffix(".py")
    if not all(part.isidentifier() for part in name.split(".")):
        raise ValueError("expected a module name such as processors or mypackage.processors")
    return name


def parse_optional(text):
    return text.strip() or None


def parse_host_patterns(text):
    """Comma-separated host names; ``*.example.com`` matches its subdomains."""
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def parse_directory(text):
    return Path(text.strip()) if text.strip() else None


# field -> (environment variable, parser)
ENVIRONMENT = {
    "name": ("UFOP_NAME", parse_ufop_name),
    "app": ("UFOP_APP", parse_module_name),
    "port": ("UFOP_PORT", parse_port),
    "workers": ("UFOP_WORKERS", parse_positive_int),
    "cpu_count": ("CPU_COUNT", parse_positive_int),
    "flavor_cores": ("FLAVOR", parse_flavor_cores),
    "timeout": ("UFOP_TIMEOUT", parse_seconds),
    "max_body_bytes": ("UFOP_MAX_BODY_BYTES", parse_size),
    "max_source_bytes": ("UFOP_MAX_SOURCE_BYTES", parse_size),
    "max_upload_bytes": ("UFOP_MAX_UPLOAD_BYTES", parse_size),
    "broker_url": ("UFOP_BROKER_URL", parse_optional),
    "inline_bytes": ("UFOP_INLINE_BYTES", parse_size),
    "host": ("UFOP_HOST", str.strip),
    "fetch_timeout": ("UFOP_FETCH_TIMEOUT", parse_seconds),
    "blocked_networks": ("UFOP_BLOCKED_NETWORKS", parse_networks),
    "allowed_source_hosts": ("UFOP_ALLOWED_SOURCE_HOSTS", parse_host_patterns),
    "max_pending": ("UFOP_MAX_PENDING", parse_positive_int),
    "queue_timeout": ("UFOP_QUEUE_TIMEOUT", parse_seconds),
    "grace": ("UFOP_GRACE", parse_seconds),
    "idle_timeout": ("UFOP_IDLE_TIMEOUT", parse_seconds),
    "body_timeout": ("UFOP_BODY_TIMEOUT", parse_seconds),
    "write_timeout": ("UFOP_WRITE_TIMEOUT", parse_seconds),
    "log_dir": ("UFOP_LOG_DIR", parse_directory),
    "spool_dir": ("UFOP_SPOOL_DIR", parse_directory),
    "max_output_bytes": ("UFOP_MAX_OUTPUT_BYTES", parse_size),
    "max_cmd_bytes": ("UFOP_MAX_CMD_BYTES", parse_size),
}


@attrs.frozen
class Settings:
    """Everything configurable, with its default. Build it with `Settings.load`."""

    project_dir: Path = Path(".")
    name: str | None = None
    app: str = "processors"
    port: int = 9100
    workers: int | None = None
    cpu_count: int | None = None
    flavor_cores: int | None = None
    timeout: float = 30.0
    max_body_bytes: int = 100 << 20
    max_source_bytes: int = 100 << 20
    # dev's form upload at POST / (Qiniu's up host takes at most 1 GB in one form)
    max_upload_bytes: int = 1 << 30
    broker_url: str | None = None
    inline_bytes: int = 256 << 10
    host: str = "0.0.0.0"
    fetch_timeout: float = 20.0
    # None: the command's default (serve blocks internal networks, dev nothing)
    blocked_networks: tuple | None = None
    allowed_source_hosts: tuple = ()
    max_pending: int | None = None
    # how long a job may wait for a free worker before it is answered 503 (as long as a job may run)
    queue_timeout: float = 30.0
    grace: float = 30.0
    # a client's time to send a request's headers (and so an idle keep-alive
    # connection's life), then its body
    idle_timeout: float = 60.0
    body_timeout: float = 600.0
    # a client's time to take an answer once it is being written: as long as the
    # body's, so an answer as large as the largest body gets through as slowly
    write_timeout: float = 600.0
    log_dir: Path | None = None
    spool_dir: Path | None = None
    # an answer past this is refused before it is sent (bytes, a file) or cut off (a stream)
    max_output_bytes: int = 4 << 30
    # A longer cmd is 414 before any route runs. mkzip's 1000 URLs of ~75 characters with aliases
    # make 140 KB. Routes are matched on the server's event loop: at 256 KiB each sample's routes take
    # under 1 ms and a `(?P<x>.*)` 0.08 ms, but one that backtracks quadratically (`(?P<a>.+)/(?P<b>.+)x`
    # failing) 50 ms at 4 KiB, 8 s at 64 KiB and 2 minutes at 256 KiB (benchmarks/cmd_routes.py):
    # so a route is tried on a cmd over 4 KiB only when its processor's max_cmd_bytes says it takes one.
    max_cmd_bytes: int = 256 << 10

    @classmethod
    def load(cls, project_dir=".", environ=None, **flags):
        """Read settings for the project in `project_dir`.

        `environ` defaults to ``os.environ``. `flags` are command-line values by
        field name; None means "not given". Raises ConfigError.
        """
        project_dir = Path(project_dir)
        merged = dict(read_env_file(project_dir))
        merged.update(os.environ if environ is None else environ)
        values = {}
        for field, (variable, parse) in ENVIRONMENT.items():
            if flags.get(field) is not None:
                values[field] = _parse(parse, str(flags[field]), f"--{field.replace('_', '-')}")
            elif merged.get(variable) is not None:
                values[field] = _parse(parse, merged[variable], variable)
        return cls(project_dir=project_dir, **values)

    @property
    def concurrency(self):
        """Worker processes: UFOP_WORKERS, else CPU_COUNT, else FLAVOR's cores, else the CPUs."""
        for value in (self.workers, self.cpu_count, self.flavor_cores):
            if value:
                return value
        return os.cpu_count() or 1

    @property
    def pending_limit(self):
        """Requests admitted and not yet answered: UFOP_MAX_PENDING, else 32 per worker."""
        return self.max_pending or 32 * self.concurrency


def read_env_file(project_dir):
    """The variables in the project's ``.env`` ({} without one); raises ConfigError.

    A bare key (a line ``FEATURE_FLAG`` without ``=``) has no value and is
    left out; `load_env_file` warns about it.
    """
    return {key: value for key, value in _read_env_file(project_dir).items() if value is not None}


# Variables that load_env_file put into os.environ, with the values it put there.
_loaded_from_env_file = {}


def load_env_file(project_dir):
    """Put the project's ``.env`` into os.environ, never over a variable already set.

    Called again (``dev`` reloads after an edit), it first takes back what
    the last call put there, so an edited or removed line counts. Bare keys
    are ignored with a warning naming the file and the line. Raises ConfigError.
    """
    values = _read_env_file(project_dir)
    for key, value in _loaded_from_env_file.items():
        if os.environ.get(key) == value:
            del os.environ[key]
    _loaded_from_env_file.clear()
    for key, value in values.items():
        if value is not None and key not in os.environ:
            try:
                os.environ[key] = value
            except ValueError as exc:  # a NUL, say: an environment cannot hold it
                raise ConfigError(f"{Path(project_dir) / '.env'}: {key!r} cannot be an environment "
                                  f"variable: {exc}") from None
            _loaded_from_env_file[key] = value
    if None in values.values():
        _warn_about_bare_keys(Path(project_dir) / ".env")


def _read_env_file(project_dir):
    path = Path(project_dir) / ".env"
    try:
        return dotenv_values(path, encoding="utf-8") if path.is_file() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _warn_about_bare_keys(path):
    with open(path, encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.key is not None and binding.value is None:
                log.warning("%s line %d: %r has no '=' and is ignored (write %s= for an empty value)",
                            path, binding.original.line, binding.key, binding.key)


def _parse(parse, text, source):
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"invalid {source}: {exc}, got {text!r}") from None
