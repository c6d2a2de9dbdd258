"""The code base stays ``ruff check`` clean (rules in pyproject.toml)."""

import subprocess
import sys

from support import REPO


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "ufop_sdk", "samples", "tests"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
