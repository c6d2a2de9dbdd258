"""Keeping a long-lived process's loaded objects out of the garbage collector's way."""

import gc

# The first generation's threshold: Python's default (700) collects a busy
# server's short-lived request objects many times a second.
FIRST_GENERATION = 10_000


def settle_garbage_collector():
    """Call once everything long-lived is loaded (modules, models, fonts).

    Freezing what exists spares every later collection from scanning it, and
    a larger first generation collects request garbage less often. Together
    they cut the server's CPU per request by about a sixth (benchmarks/).
    """
    gc.freeze()
    gc.set_threshold(FIRST_GENERATION, *gc.get_threshold()[1:])
