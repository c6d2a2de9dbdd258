"""What a Python developer would use instead of ufop-sdk: how to run each.

Each function takes a free port and the number of worker processes, and gives
the command line and environment that serve one of the apps in
benchmarks/contenders/ from their own venv (made on first use). Every app
answers `POST /handler?cmd=...` as `ufop-sdk serve` does. thumbor, from PyPI
in a venv of its own, serves the files of its working folder.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "contenders"
VENV = HERE / ".venv-contenders"
THUMBOR_VENV = HERE / ".venv-thumbor"
# attrs and python-magic: the thumbnail apps import the sample, which imports ufop_sdk.
PACKAGES = ["fastapi", "uvicorn[standard]", "flask", "gunicorn", "attrs", "python-magic"]


def executable(name):
    """`name` from the contenders' venv, made on first use. Its Pillow is the version this
    interpreter has, so every server runs the same codecs."""
    if not (VENV / "bin" / "uvicorn").exists():
        from PIL import __version__ as pillow

        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES, f"pillow=={pillow}"],
                       check=True)
    return str(VENV / "bin" / name)


def thumbor(port, processes):
    """thumbor from PyPI in its own venv (made on first use); run it in the images' folder."""
    executable = THUMBOR_VENV / "bin" / "thumbor"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
        subprocess.run([str(THUMBOR_VENV / "bin" / "pip"), "install", "-q", "thumbor"], check=True)
    return [str(executable), "-p", str(port), "-c", str(HERE / "thumbor" / "thumbor.conf"), "--processes",
            str(processes), "-l", "error"], {}


def environment():
    """The apps' shared commands, this checkout's ufop_sdk and the thumbnail sample, importable."""
    return {"PYTHONPATH": ":".join(str(path) for path in (APPS, HERE.parent, HERE.parent / "samples" /
                                                          "thumbnail"))}


def uvicorn(app, port, workers):
    return [executable("uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--workers",
            str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level",
            "warning"], environment()


def fastapi(port, workers):
    return uvicorn("fastapi_app:app", port, workers)


def raw_asgi(port, workers):
    command, env = uvicorn("raw_asgi:app", port, workers)
    return [*command, "--lifespan", "off"], env


def flask(port, workers):
    return [executable("gunicorn"), "flask_app:app", "--bind", f"127.0.0.1:{port}", "--workers",
            str(workers), "--worker-class", "sync", "--log-level", "warning"], environment()


def fixed_answer(port, workers=1):
    """One process: the limit is wrk and the kernel, not this server."""
    return [executable("python"), str(APPS / "fixed_answer.py"), str(port)], environment()


# The names say how many workers with {workers}; the FastAPI one is the reference of issue 19's goals.
FASTAPI = "FastAPI on uvicorn (uvloop, httptools), {workers} workers"
FLASK = "Flask on gunicorn, {workers} sync workers"
TRIVIAL = {FASTAPI: fastapi, FLASK: flask,
           "raw ASGI app on uvicorn (uvloop, httptools), {workers} workers": raw_asgi,
           "bare asyncio Protocol on uvloop, fixed answer, 1 process": fixed_answer}
THUMBNAIL = {FASTAPI: fastapi, FLASK: flask}
