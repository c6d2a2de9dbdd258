"""Helpers shared by the tests: running the real ``ufop-sdk`` command."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def run_cli(*args, cwd=None, env=None, input=None, timeout=60):
    """Run ``ufop-sdk ARGS`` in a real subprocess; returns the CompletedProcess (bytes)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("UFOP_", "CPU_COUNT", "FLAVOR"))}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "ufop_sdk", *map(str, args)], cwd=cwd, env=environment,
                          input=input, capture_output=True, timeout=timeout)
