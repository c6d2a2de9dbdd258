"""``GET /`` in ``ufop-sdk dev``: the playground page, read as HTML and driven in headless Chromium.

The browser tests start Debian's ``chromium`` and speak the Chrome DevTools
Protocol to it over a websocket (Tornado's client): they pick a real JPEG in
the page's file input, type a cmd, press Run and read what the page shows.
Without chromium they skip, except in CI (CI=true), where they fail.
"""

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image
from support import REPO, SAMPLES, Server, save_image
from tornado.websocket import websocket_connect

THUMBNAIL = SAMPLES / "thumbnail"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
WAIT_SECONDS = 20.0  # the bound on every wait: the browser starting, a page loading, a result showing
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")
THUMBNAIL_ROUTE = (r"(?P<mode>thumbnail|fit)/(?P<width>[^/x]+)x(?P<height>[^/]+)"
                   r"(?:/format/(?P<format>[^/]+))?(?:/q/(?P<quality>[^/]+))?")


# -- the page as HTML ------------------------------------------------------------------------------

def embedded_project(page):
    """The project JSON the page was served with (``const PROJECT = {...};``)."""
    found = re.search(r"const PROJECT = (.*?);\n", page)
    assert found, "the page embeds no project"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground-bucket")
    save_image(folder / "a dir" / "my photo ü.jpg", (640, 480))
    return folder


@pytest.fixture(scope="module")
def dev_server(bucket):
    with Server(THUMBNAIL, "--bucket", str(bucket), command="dev") as server:
        yield server


def test_the_playground_lists_the_projects_processors_and_routes(dev_server, bucket):
    status, headers, body = dev_server.request("GET", "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode("utf-8")
    assert embedded_project(page) == {
        "name": "thumbnail", "buckets": [bucket.name], "load_error": None,
        "routes": [{"order": 1, "processor": "Thumbnail", "route": THUMBNAIL_ROUTE,
                    "accepts": ["image/jpeg", "image/png", "image/webp", "image/gif"], "timeout": 20.0}]}
    for element in ('id="file"', 'id="key"', 'id="cmd"', 'id="run"', 'id="routes"', 'id="output"'):
        assert element in page


def test_the_playground_loads_nothing_from_elsewhere(dev_server):
    page = dev_server.request("GET", "/")[2].decode("utf-8")
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page, re.IGNORECASE)
    for tag in tags:
        assert not re.search(r"""\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", tag, re.IGNORECASE), tag
    assert not re.search(r"""(?:@import|url\(\s*["']?)(?:https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"""\bimport\s*\(|fetch\(\s*["'](?:https?:)?//""", page)
    assert "<script>" in page  # the page's own script, inline


def test_without_a_bucket_the_playground_offers_no_key(tmp_path):
    with Server(THUMBNAIL, command="dev", workers=1) as server:
        project = embedded_project(server.request("GET", "/")[2].decode("utf-8"))
    assert project["buckets"] == [] and project["name"] == "thumbnail"


def test_serve_has_no_playground():
    with Server(THUMBNAIL, command="serve", workers=1) as server:
        status, headers, body = server.request("GET", "/")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert "no such path '/'" in json.loads(body)["error"]
    assert b"<html" not in body


# -- the page in a browser -------------------------------------------------------------------------

def require_chromium():
    """Skip without /usr/bin/chromium, except in CI (CI=true), where it must be there."""
    if os.access(CHROMIUM, os.X_OK):
        return
    message = f"{CHROMIUM} is not installed: the browser tests need it (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{message}; in CI it must be there (.ci/run installs it)", pytrace=False)
    pytest.skip(message)


class Chromium:
    """A headless Chromium with a fresh profile; `devtools_url` is its browser websocket.

    It runs in its own process group, which is killed on exit.
    """

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="ufop-chromium-")
        self.log = open(Path(self.profile).with_suffix(".log"), "w+b")  # closed in __exit__
        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        self.devtools_url = self._wait_for_devtools()
        return self

    def __exit__(self, *exc_info):
        # The browser process shuts its helpers down and reaps them itself;
        # whatever of its group is left after that is killed.
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(5)
        _wait_until_dead(self.process.pid)
        self.log.close()
        os.unlink(self.log.name)
        shutil.rmtree(self.profile, ignore_errors=True)

    def output(self):
        return Path(self.log.name).read_text(errors="replace")

    def _wait_for_devtools(self):
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            found = DEVTOOLS_LINE.search(self.output())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        output = self.output()
        self.__exit__(None, None, None)
        raise AssertionError(f"chromium printed no DevTools address within {WAIT_SECONDS}s "
                             f"(exit code {self.process.returncode}):\n{output[-4000:]}")


def _wait_until_dead(group, seconds=5.0):
    """Wait (bounded) until every process of `group` has exited.

    Its orphans are left as zombies for init to reap, which may take a while:
    those count as dead.
    """
    deadline = time.monotonic() + seconds
    while _live_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _live_members(group), f"chromium's processes {_live_members(group)} outlived SIGKILL"


def _live_members(group):
    """The pids of `group`'s processes that are not zombies, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, process_group = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):  # it exited while we looked
            continue
        if int(process_group) == group and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


class DevToolsPage:
    """One new page (tab) of a Chromium, driven through the DevTools protocol.

        async with DevToolsPage(chromium.devtools_url) as page:
            await page.open(url)
            title = await page.evaluate("document.title")
    """

    def __init__(self, devtools_url):
        self.devtools_url = devtools_url
        self.ids = itertools.count(1)
        self.session = None

    async def __aenter__(self):
        self.connection = await asyncio.wait_for(
            websocket_connect(self.devtools_url, max_message_size=64 << 20), WAIT_SECONDS)
        self.target = (await self.send("Target.createTarget", url="about:blank"))["targetId"]
        self.session = (await self.send("Target.attachToTarget", targetId=self.target,
                                        flatten=True))["sessionId"]
        await self.send("Page.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=1280, height=860,
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc_info):
        try:
            self.session = None
            await self.send("Target.closeTarget", targetId=self.target)
        finally:
            self.connection.close()

    async def send(self, method, **params):
        """Send one command (to the page once attached) and return its result; events are dropped."""
        number = next(self.ids)
        message = {"id": number, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        await self.connection.write_message(json.dumps(message))
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            raw = await asyncio.wait_for(self.connection.read_message(), max(deadline - time.monotonic(), 0))
            if raw is None:
                raise AssertionError(f"the DevTools connection closed during {method}")
            answer = json.loads(raw)
            if answer.get("id") == number:
                if "error" in answer:
                    raise AssertionError(f"{method} failed: {answer['error']}")
                return answer["result"]

    async def evaluate(self, expression):
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression, what):
        """Poll `expression` every 50 ms until it is truthy; returns its value."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.05)
        page = await self.evaluate("document.body ? document.body.innerText : ''")
        raise AssertionError(f"timed out after {WAIT_SECONDS}s waiting for {what}; the page shows:\n{page}")

    async def open(self, url):
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && location.href.startsWith('http') "
                            "&& document.querySelectorAll('#routes tr').length > 0", f"{url} to load")

    async def choose_file(self, selector, path):
        root = (await self.send("DOM.getDocument"))["root"]["nodeId"]
        node = (await self.send("DOM.querySelector", nodeId=root, selector=selector))["nodeId"]
        assert node, f"no {selector} in the page"
        await self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    async def run(self, cmd, key=""):
        """Type `cmd` (and a bucket `key`), press Run, and wait until the result is shown."""
        await self.evaluate(f"""(() => {{
            document.getElementById("output").replaceChildren();
            document.getElementById("cmd").value = {json.dumps(cmd)};
            document.getElementById("key").value = {json.dumps(key)};
            document.getElementById("run").click();
        }})()""")
        return await self.wait_for("""(() => {
            const image = document.getElementById("result-image");
            const error = document.querySelector("#output pre"), meta = document.getElementById("meta");
            if (image && image.complete && image.naturalWidth && /px/.test(meta.textContent)) {
                return {image: [image.naturalWidth, image.naturalHeight], meta: meta.textContent,
                        badge: meta.querySelector(".badge").className};
            }
            if (error) {
                return {error: error.textContent, errorClass: error.className, meta: meta.textContent,
                        badge: (meta.querySelector(".badge") || {}).className};
            }
            return null;
        })()""", f"the result of {cmd!r}")

    async def screenshot(self, path):
        """Save a PNG of the page to `path`; returns its bytes."""
        data = base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data


@pytest.fixture(scope="module")
def chromium():
    require_chromium()
    with Chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("playground-upload") / "photo 1600x1200.jpg"
    save_image(path, (1600, 1200))
    return path


def drive(chromium, scenario):
    """Run `scenario(page)` on a new page of `chromium`, within a bound; returns what it returns."""
    async def main():
        async with DevToolsPage(chromium.devtools_url) as page:
            return await scenario(page)

    return asyncio.run(asyncio.wait_for(main(), 3 * WAIT_SECONDS))


def test_an_uploaded_image_is_run_and_rendered_at_the_cmds_size(chromium, dev_server, photo):
    async def scenario(page):
        await page.open(dev_server.url + "/")
        await page.choose_file("#file", photo)
        result = await page.run("thumbnail/64x64")
        return result, await page.screenshot(ARTIFACTS / "playground.png")

    result, screenshot = drive(chromium, scenario)
    assert result.get("image") == [64, 64], result
    assert "200 OK" in result["meta"] and "image/jpeg" in result["meta"] and "64 × 64 px" in result["meta"]
    assert result["badge"] == "badge"
    assert re.search(r"\d+(\.\d)? ms", result["meta"]), result["meta"]  # the time taken
    assert screenshot.startswith(b"\x89PNG\r\n\x1a\n") and len(screenshot) > 5000
    assert (ARTIFACTS / "playground.png").read_bytes() == screenshot


def test_a_failing_cmd_shows_its_status_and_error(chromium, dev_server, photo):
    expected_status, _, body = dev_server.post("thumbnail/thumbnail/0x10", photo.read_bytes())
    expected_error = json.loads(body)["error"]
    assert expected_status == 400 and "invalid argument 'width'" in expected_error

    async def scenario(page):
        await page.open(dev_server.url + "/")
        await page.choose_file("#file", photo)
        result = await page.run("thumbnail/0x10")
        await page.screenshot(ARTIFACTS / "playground-error.png")
        return result, await page.evaluate("!!document.getElementById('result-image')")

    result, has_image = drive(chromium, scenario)
    assert "error" in result, result
    assert result["meta"].startswith("400 Bad Request"), result["meta"]
    assert result["badge"] == "badge bad" and result["errorClass"] == "error"
    assert result["error"] == expected_error
    assert not has_image


def test_a_bucket_key_is_run_through_the_pipeline(chromium, dev_server):
    async def scenario(page):
        await page.open(dev_server.url + "/")
        shown = await page.evaluate("!document.getElementById('key-row').hidden")
        return shown, await page.run("thumbnail/32x24", key="a dir/my photo ü.jpg")

    key_shown, result = drive(chromium, scenario)
    assert key_shown
    assert result.get("image") == [32, 24], result
    assert "200 OK" in result["meta"]


def test_a_persistent_job_started_in_the_playground_is_listed_until_done_and_saved(chromium, dev_server,
                                                                                  bucket):
    bucket_name = embedded_project(dev_server.request("GET", "/")[2].decode())["buckets"][0]
    entry = base64.urlsafe_b64encode(f"{bucket_name}:jobs/small.jpg".encode()).decode()

    async def scenario(page):
        await page.open(dev_server.url + "/")
        await page.evaluate(f"""(() => {{
            document.getElementById("job-key").value = "a dir/my photo ü.jpg";
            document.getElementById("job-fops").value = "thumbnail/thumbnail/40x30|saveas/{entry}\\n"
                + "thumbnail/bogus";
            document.getElementById("job-start").click();
        }})()""")
        row = await page.wait_for("""(() => {
            const row = document.querySelector("#jobs tr.job");
            return row && /^3 /.test(row.children[2].textContent) ? row.innerText : null;
        })()""", "the job to end")
        await page.evaluate("document.getElementById('jobs-section').scrollIntoView()")
        await page.screenshot(ARTIFACTS / "playground-jobs.png")
        return row

    row = drive(chromium, scenario)
    assert "a dir/my photo ü.jpg" in row and "The fop is failed" in row
    assert "jobs/small.jpg" in row and "no processor matches 'bogus'" in row, row
    with Image.open(bucket / "jobs" / "small.jpg") as image:
        assert image.size == (40, 30)
