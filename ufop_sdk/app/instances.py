"""The processors of a loaded App as instances: each made and its ``setup()`` run once, on first use
or by `setup_all`, and asked for its ``health()``."""

import logging

from ..errors import UfopError

log = logging.getLogger("ufop_sdk.runner")


class ProcessorInstances:
    """One instance per processor of `app`, and the setups that failed (`failures`, by name)."""

    def __init__(self, app):
        self.app = app
        self.instances = {}
        self.failures = {}

    def get(self, route):
        """The set-up instance of `route`'s processor; UfopError when its setup() failed (now or before)."""
        instance = self.instances.get(route.name)
        if instance is not None:
            return instance
        if route.name in self.failures:
            raise UfopError(f"processor {route.name!r} is unavailable: its setup() failed")
        try:
            instance = route.processor()
            instance.setup()
        except Exception as exc:
            log.exception("setup of processor %s failed", route.name)
            self.failures[route.name] = f"setup() failed: {type(exc).__name__}: {exc}"
            raise UfopError(f"processor {route.name!r} is unavailable: its setup() failed") from None
        self.instances[route.name] = instance
        return instance

    def setup_all(self):
        """Set up every processor now; returns {processor name: failure}."""
        for route in self.app.routes:
            try:
                self.get(route)
            except UfopError:
                pass
        return dict(self.failures)

    def health_problems(self, checking=None):
        """Why this process is unhealthy: failed setups and failing ``health()`` calls.

        `checking(name)`, if given, is called before each processor's health() runs.
        """
        problems = self.setup_all()
        for route in self.app.routes:
            if route.name in problems:
                continue
            if checking is not None:
                checking(route.name)
            try:
                self.get(route).health()
            except Exception as exc:  # noqa: BLE001 - any failure is a health problem
                problems[route.name] = f"health() failed: {type(exc).__name__}: {exc}"
        return problems
