"""The ``ufop-sdk`` command line: the only layer that imports click."""

from .main import main

__all__ = ["main"]
