"""Loading a project: import its module fresh from its folder and collect its processors."""

import subprocess
import sys
from textwrap import dedent

import pytest
from support import clean_environment

from ufop_sdk import ProjectError
from ufop_sdk.app.project import load_app
from ufop_sdk.app.settings import Settings


def processor_names(runner):
    return [cls.__name__ for cls in runner.app.processors]


def test_processors_are_found_in_namespace_order_including_imported_ones(make_project, load_runner):
    folder = make_project(
        steps="""\
            from ufop_sdk import Processor

            class Resize(Processor):
                route = r"resize/(?P<width>\\d+)"
        """,
        source="""\
            from ufop_sdk import Processor
            from steps import Resize

            class Crop(Processor):
                route = r"crop"

            class Blur(Processor):
                route = r"blur"
        """,
    )
    runner = load_runner(folder)
    assert processor_names(runner) == ["Resize", "Crop", "Blur"]
    assert runner.app.module_name == "processors"
    assert runner.app.project_dir == folder.resolve()


def test_a_class_bound_twice_counts_once_and_bases_without_a_route_are_skipped(make_project, load_runner):
    folder = make_project("""\
        from ufop_sdk import Processor

        class ImageProcessor(Processor):
            accepts = ("image/*",)

        class Thumbnail(ImageProcessor):
            route = r"thumbnail"

        Thumb = Thumbnail
    """)
    assert processor_names(load_runner(folder)) == ["Thumbnail"]


@pytest.mark.parametrize("source", [
    "from ufop_sdk import Processor\n",
    "import ufop_sdk\n\nclass Base(ufop_sdk.Processor):\n    timeout = 5\n",
    "def process(req):\n    return 'not a class'\n",
])
def test_a_module_without_processors_is_a_project_error(make_project, load_runner, source):
    with pytest.raises(ProjectError, match=r"^no processors in module 'processors' \(.*processors\.py\): "
                                           r"define a subclass of ufop_sdk\.Processor with a route$"):
        load_runner(make_project(source))


@pytest.mark.parametrize("app", ["processors", "myprocs"])
def test_a_missing_module_is_a_project_error_naming_it_and_the_fix(make_project, load_runner, app):
    folder = make_project(None, other="x = 1\n")
    with pytest.raises(ProjectError) as caught:
        load_runner(folder, app=app)
    message = str(caught.value)
    assert message.startswith(f"cannot find module {app!r} in {folder.resolve()}: create {app}.py there")
    assert "--app" in message and "UFOP_APP" in message


def test_a_missing_project_folder_is_a_project_error(tmp_path, load_runner):
    with pytest.raises(ProjectError, match="does not exist"):
        load_runner(tmp_path / "nowhere")


def test_a_module_that_raises_at_import_is_a_project_error_with_the_traceback(make_project, load_runner):
    folder = make_project("""\
        from ufop_sdk import Processor

        RATIO = 1 / 0
    """)
    with pytest.raises(ProjectError) as caught:
        load_runner(folder)
    message = str(caught.value)
    assert message.startswith("cannot import 'processors':\nTraceback (most recent call last):")
    assert "processors.py\", line 3" in message
    assert "ZeroDivisionError: division by zero" in message


def test_a_missing_third_party_import_names_that_module_not_the_project(make_project, load_runner):
    folder = make_project("""\
        import surely_not_installed_imaging

        from ufop_sdk import Processor
    """)
    with pytest.raises(ProjectError) as caught:
        load_runner(folder)
    message = str(caught.value)
    assert "No module named 'surely_not_installed_imaging'" in message
    assert "cannot find module" not in message


def test_another_module_is_chosen_by_app(make_project, load_runner):
    folder = make_project("raise RuntimeError('processors.py must not be imported')\n", myprocs="""\
        from ufop_sdk import Processor

        class Hello(Processor):
            route = r"hello"
    """)
    runner = load_runner(folder, app="myprocs")
    assert processor_names(runner) == ["Hello"]
    assert runner.app.module_name == "myprocs"


def test_a_dotted_app_imports_a_module_inside_a_package(make_project, load_runner):
    folder = make_project(None)
    (folder / "services").mkdir()
    (folder / "services" / "__init__.py").write_text("")
    (folder / "services" / "image.py").write_text(
        "from ufop_sdk import Processor\n\nclass Rotate(Processor):\n    route = r'rotate'\n")
    assert processor_names(load_runner(folder, app="services.image")) == ["Rotate"]
    with pytest.raises(ProjectError, match=r"module 'services\.video' .*create services/video\.py"):
        load_runner(folder, app="services.video")


HELLO = """\
    from ufop_sdk import Processor

    class {name}(Processor):
        route = r"{route}"
"""


def test_two_projects_with_a_processors_py_never_see_each_others_processors(make_project, load_runner):
    first = load_runner(make_project(HELLO.format(name="Thumbnail", route="thumbnail")))
    second = load_runner(make_project(HELLO.format(name="Watermark", route="watermark")))
    assert processor_names(first) == ["Thumbnail"]
    assert processor_names(second) == ["Watermark"]
    assert first.app.routes.match("watermark") is None


def test_two_projects_with_the_same_sibling_module_each_get_their_own(make_project, load_runner):
    source = "from ufop_sdk import Processor\nfrom steps import *\n"
    first = make_project(source, steps=HELLO.format(name="Thumbnail", route="thumbnail"))
    second = make_project(source, steps=HELLO.format(name="Watermark", route="watermark"))
    assert processor_names(load_runner(first)) == ["Thumbnail"]
    assert processor_names(load_runner(second)) == ["Watermark"]


def test_a_folder_without_the_module_does_not_load_an_earlier_projects_module(make_project, load_runner):
    load_runner(make_project(HELLO.format(name="Thumbnail", route="thumbnail")))
    empty = make_project(None)
    with pytest.raises(ProjectError, match="cannot find module 'processors'"):
        load_runner(empty)


def test_an_edit_is_seen_when_the_project_is_loaded_again(make_project):
    folder = make_project(HELLO.format(name="Thumbnail", route="thumbnail"))
    settings = Settings.load(folder, environ={})
    assert [r.name for r in load_app(settings).routes] == ["Thumbnail"]
    (folder / "processors.py").write_text(dedent(HELLO.format(name="Watermark", route="watermark")))
    assert [r.name for r in load_app(settings).routes] == ["Watermark"]


GREET = """\
    from ufop_sdk import Processor

    class Greet(Processor):
        route = r"hello/(?P<name>.+)"

        def process(self, req):
            return "hello " + req.args["name"]
"""
# A script kept in the project folder, as a user's own checks are: it imports a helper of its own,
# loads the project through ufop_sdk.testing, then fans out to a multiprocessing pool, whose
# workers find the function they run in __main__.
POOL_SCRIPT = """\
    import multiprocessing
    import sys

    import helper
    from ufop_sdk.testing import run

    def greet(name):
        return run("hello/" + name, b"").body.decode()

    if __name__ == "__main__":
        first = greet("main")
        print("kept:", "__main__" in sys.modules and sys.modules.get("helper") is helper)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            print(first, *pool.map(greet, ["a", "b"]), sep=", ")
"""


def test_a_script_in_the_project_folder_using_testing_run_in_a_pool_keeps_its_main_module(make_project):
    folder = make_project(GREET, check=POOL_SCRIPT, helper="VALUE = 1\n")
    result = subprocess.run([sys.executable, "check.py"], cwd=folder, capture_output=True, timeout=60,
                            env=clean_environment())
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == ["kept: True", "hello main, hello a, hello b"]
