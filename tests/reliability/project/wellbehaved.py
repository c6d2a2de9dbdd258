"""The processors that answer every input with 2xx or 4xx: what the fuzzing server runs (--app wellbehaved).

A 5xx from this app is a bug in ufop-sdk, never a processor doing as told.
"""

from processors import Describe, Echo, Picture, Typed

__all__ = ["Describe", "Echo", "Picture", "Typed"]
