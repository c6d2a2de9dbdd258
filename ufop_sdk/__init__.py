"""ufop-sdk: write Qiniu custom data processing services (UFOP) as Python classes."""

from .arguments import base64_text, choice, integer
from .errors import (
    BadRequest,
    ConfigError,
    Forbidden,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ProcessingTimeout,
    ProjectError,
    SourceError,
    UfopError,
    UnsupportedMediaType,
)
from .key_values import key_values, records, repeated
from .processor import Processor
from .qiniu import Headers, QiniuInfo
from .request import FetchedUrl, Request
from .response import Response

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "ConfigError",
    "FetchedUrl",
    "Forbidden",
    "Headers",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ProcessingTimeout",
    "Processor",
    "ProjectError",
    "QiniuInfo",
    "Request",
    "Response",
    "SourceError",
    "UfopError",
    "UnsupportedMediaType",
    "__version__",
    "base64_text",
    "choice",
    "integer",
    "key_values",
    "records",
    "repeated",
]
