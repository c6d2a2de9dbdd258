"""``GET /`` in ``dev``: a page to try processors on files and see what they answer."""

import json
from importlib import resources

from ..http.handlers import JsonHandler


class PlaygroundHandler(JsonHandler):
    """The playground: plain HTML and JavaScript, nothing from a CDN, no build step."""

    def get(self):
        page = resources.files("ufop_sdk").joinpath("templates", "playground.html").read_text("utf-8")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page.replace("/*PROJECT*/null", _project_json(self.server)))


def _project_json(server):
    app = server.app
    routes = [] if app is None else [
        {"order": order, "processor": route.name, "route": route.pattern.pattern,
         "accepts": list(route.accepts), "timeout": route.timeout}
        for order, route in enumerate(app.routes, start=1)]
    project = {"name": server.settings.name or "ufop", "routes": routes,
               "buckets": [bucket.name for bucket in server.platform.buckets] if server.platform else [],
               "load_error": server.load_error.strip().splitlines()[-1] if server.load_error else None}
    # "</" would end the <script> element the JSON sits in
    return json.dumps(project).replace("</", "<\\/")
