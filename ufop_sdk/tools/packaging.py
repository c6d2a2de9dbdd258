"""What a release is made of: the Dockerfile, its .dockerignore and the platform's dora.yml."""

import json
import re
from importlib import resources

import attrs

from ..app.settings import UFOP_NAME_RULE, parse_flavor_cores

LOG_DIR = "/var/log/ufop/"
# A Docker tag: the version becomes one, and goes into dora.yml as it is.
VERSION_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
REGION_RULE = re.compile(r"[a-z0-9-]{1,32}")
DEFAULT_BASE_IMAGE = "python:3.12-slim"
# The Docker way to choose the base at build time: `ARG BASE_IMAGE=...` before `FROM ${BASE_IMAGE}`.
BASE_IMAGE_ARG = re.compile(r"^[ \t]*ARG[ \t]+BASE_IMAGE(?:=(\S*))?[ \t]*$", re.MULTILINE | re.IGNORECASE)
BASE_IMAGE_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")


def dockerfile(base_image=DEFAULT_BASE_IMAGE):
    """The Dockerfile ``init`` and ``publish`` write and ``dockerfile`` prints, built on `base_image`."""
    text = resources.files("ufop_sdk").joinpath("templates", "Dockerfile").read_text("utf-8")
    return BASE_IMAGE_ARG.sub(f"ARG BASE_IMAGE={base_image}", text, count=1)


def dockerignore():
    """The .dockerignore ``init`` and ``publish`` write: no secrets, history, environments or tests."""
    return resources.files("ufop_sdk").joinpath("templates", "project", "dockerignore").read_text("utf-8")


def takes_base_image(dockerfile_text):
    """Whether a Dockerfile declares ``ARG BASE_IMAGE`` before its first ``FROM``, so a build argument
    chooses its base."""
    first_from = re.search(r"^[ \t]*FROM[ \t]+(.*)$", dockerfile_text, re.MULTILINE | re.IGNORECASE)
    declared = BASE_IMAGE_ARG.search(dockerfile_text)
    return bool(declared and first_from and declared.start() < first_from.start()
                and re.search(r"\$\{?BASE_IMAGE\b", first_from[1]))


def check_base_image(text):
    """`text` if it names an image (``python:3.12-slim``, ``registry.example.com/team/py@sha256:...``);
    raises ValueError otherwise."""
    if not BASE_IMAGE_RULE.fullmatch(text or ""):
        raise ValueError(f"invalid base image {text!r}: expected an image such as {DEFAULT_BASE_IMAGE}")
    return text


@attrs.frozen
class Release:
    """One version of a ufop to build, push, release and deploy. Validated when built."""

    name: str = attrs.field()
    version: str = attrs.field()
    image: str = attrs.field()
    flavor: str = attrs.field(default="C1M1", converter=lambda text: str(text).strip().upper())
    desc: str = ""

    @name.validator
    def _check_name(self, attribute, value):
        if not UFOP_NAME_RULE.fullmatch(value or ""):
            raise ValueError(f"invalid name {value!r}: the platform allows 5-20 of lowercase letters, "
                             "digits, '-' and '_'")

    @version.validator
    def _check_version(self, attribute, value):
        if not VERSION_RULE.fullmatch(value or ""):
            raise ValueError(f"invalid version {value!r}: use letters, digits, '.', '-' and '_' "
                             "(it becomes the image tag), e.g. 1.0.0")

    @flavor.validator
    def _check_flavor(self, attribute, value):
        try:
            parse_flavor_cores(value)
        except ValueError:
            raise ValueError(f"invalid flavor {value!r}: expected one such as C1M1 or C2M4 "
                             "(`qdoractl flavor` lists them)") from None

    def dora_yml(self):
        """The release config `qdoractl release --config` reads."""
        def quote(text):  # a JSON string is a valid YAML scalar, quoting and all
            return json.dumps(text, ensure_ascii=False)  # (YAML would split an escaped emoji in two)

        return (f"ufopname: {quote(self.name)}\n"
                f"verstr: {quote(self.version)}\n"
                f"image: {quote(self.image)}\n"
                f"desc: {quote(self.desc)}\n"
                f"flavor: {quote(self.flavor)}\n"
                "health_check:\n"
                "  path: /health\n"
                "  timeout: 3\n"
                "env:\n"
                "  global:\n"
                "    - key: FLAVOR\n"
                f"      value: {quote(self.flavor)}\n"
                "log_file_paths:\n"
                f"  - {LOG_DIR}\n")
