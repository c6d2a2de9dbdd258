"""``python -m ufop_sdk`` is ``ufop-sdk``."""

from .cli import main

main(prog_name="ufop-sdk")
