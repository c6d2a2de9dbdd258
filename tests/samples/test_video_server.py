"""samples/video through real HTTP: a real ``ufop-sdk serve`` whose workers run real ffmpeg children.

The test media are made by ffmpeg's own lavfi sources. A clip under 1 MiB reaches the worker in
memory (the processor writes it to req.workdir for ffmpeg); the 2 MiB one is spooled by the server
and handed over as a file, which ffmpeg opens through its descriptor.
"""

import importlib.util
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis_support import Worker
from support import SAMPLES, Origin, Server

VIDEO = SAMPLES / "video"
SOURCES = {"clip": "testsrc=size=320x240:rate=25:duration=4", "long": "testsrc2=size=640x360:duration=10"}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """{"clip": a 4 s 320x240 MP4 with a sine tone (100 KiB), "long": a 10 s 640x360 MP4 (2 MiB)}."""
    folder = tmp_path_factory.mktemp("media")
    for name, source in SOURCES.items():
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", source,
                        "-f", "lavfi", "-i", "sine=duration=4", "-c:v", "libx264", "-preset", "ultrafast",
                        "-c:a", "aac", "-y", str(folder / f"{name}.mp4")], check=True, timeout=60)
    return {name: (folder / f"{name}.mp4").read_bytes() for name in SOURCES}


@pytest.fixture(scope="module")
def server():
    with Server(VIDEO) as server:
        yield server


def probe(data):
    """ffprobe's streams and format of `data`."""
    done = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
                           "-"], input=data, capture_output=True, check=True, timeout=30)
    return json.loads(done.stdout)


@pytest.mark.parametrize("source", ["clip", "long"])
def test_avinfo_answers_ffprobes_json(server, media, source):
    status, headers, body = server.post("video/avinfo", media[source])
    assert (status, headers["Content-Type"]) == (200, "application/json"), body
    info = json.loads(body)
    assert [stream["codec_type"] for stream in info["streams"]] == ["video", "audio"]
    assert (info["streams"][0]["width"], info["streams"][0]["height"]) == {
        "clip": (320, 240), "long": (640, 360)}[source]
    assert float(info["format"]["duration"]) > 3.9


@pytest.mark.parametrize("source, cmd, content_type, codec, size", [
    ("clip", "vframe/jpg/offset/2/w/160", "image/jpeg", "mjpeg", (160, 120)),
    ("clip", "vframe/png/offset/1/h/60", "image/png", "png", (80, 60)),
    ("clip", "vframe/jpg/offset/0.5/w/64/h/64", "image/jpeg", "mjpeg", (64, 64)),
    ("long", "vframe/png/offset/9/w/320", "image/png", "png", (320, 180)),
])
def test_vframe_answers_one_frame(server, media, source, cmd, content_type, codec, size):
    status, headers, body = server.post(f"video/{cmd}", media[source])
    assert (status, headers["Content-Type"]) == (200, content_type), body
    (stream,) = probe(body)["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == (codec, *size)


def test_vframe_past_the_end_is_400(server, media):
    status, headers, body = server.post("video/vframe/jpg/offset/30", media["clip"])
    assert (status, headers["Content-Type"]) == (400, "application/json")
    assert json.loads(body)["error"] == "offset 30s is past the end of the input"


@pytest.mark.parametrize("format, codecs", [("mp4", ["h264", "aac"]), ("webm", ["vp8", "vorbis"])])
def test_avthumb_answers_a_playable_file(server, media, format, codecs):
    status, headers, body = server.post(f"video/avthumb/{format}/s/160x120/r/12", media["clip"])
    assert (status, headers["Content-Type"]) == (200, f"video/{format}"), body[:300]
    assert int(headers["Content-Length"]) == len(body)
    info = probe(body)
    assert format in info["format"]["format_name"]
    assert [stream["codec_name"] for stream in info["streams"]] == codecs
    video = info["streams"][0]
    assert (video["width"], video["height"], video["r_frame_rate"]) == (160, 120, "12/1")
    assert 3.9 < float(info["format"]["duration"]) < 4.5


def test_avthumb_an_1_drops_the_audio(server, media):
    status, _, body = server.post("video/avthumb/mp4/an/1", media["clip"])
    assert status == 200, body
    assert [stream["codec_type"] for stream in probe(body)["streams"]] == ["video"]


@pytest.mark.parametrize("cmd, processor", [("avinfo", "AvInfo"), ("vframe/jpg/offset/1", "VFrame"),
                                            ("avthumb/mp4", "AvThumb")])
def test_text_is_415(server, cmd, processor):
    status, _, body = server.post(f"video/{cmd}", b"not a video, just text\n")
    assert status == 415
    assert json.loads(body)["error"] == (f"processor {processor!r} accepts video/*, audio/*, "
                                         "application/ogg, got text/plain")


def test_a_bad_argument_is_400_naming_the_key(server, media):
    status, _, body = server.post("video/avthumb/mp4/s/640x481", media["clip"])
    assert status == 400
    assert json.loads(body)["error"].startswith("invalid argument 's': expected <width>x<height>")


def ffmpeg_running_under(folder):
    """The command lines of the ffmpeg processes running now that mention `folder`."""
    found = subprocess.run(["pgrep", "-a", "-f", f"^ffmpeg .*{folder}/"], capture_output=True, text=True)
    return found.stdout.splitlines()


def assert_a_long_transcode_is_504_leaving_no_ffmpeg(server, media, spool):
    """Post a transcode that takes minutes to `server` (its VIDEO_TIMEOUT 2 or 3 s; req.workdir, where
    ffmpeg writes, under `spool`, which so marks its ffmpeg): a 504 in seconds, nothing left behind."""
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = pool.submit(server.post, "video/avthumb/webm/s/3840x2160", media["long"])
        server.wait_until(lambda: ffmpeg_running_under(spool), 10, "ffmpeg to start")
        status, _, body = answer.result(timeout=60)
        took = time.monotonic() - started
    assert status == 504, body
    assert "ran past" in json.loads(body)["error"]
    assert 1.5 < took < 10
    assert ffmpeg_running_under(spool) == []
    server.wait_until(lambda: not list(spool.glob("ufop-work-*")), 5, "req.workdir to be removed")
    status, _, body = server.post("video/avinfo", media["clip"])
    assert status == 200, body  # and the server goes on


def test_a_transcode_past_the_timeout_is_504_and_leaves_no_ffmpeg(media, tmp_path):
    with Server(VIDEO, env={"VIDEO_TIMEOUT": "2", "UFOP_SPOOL_DIR": str(tmp_path)}, workers=1) as server:
        assert_a_long_transcode_is_504_leaving_no_ffmpeg(server, media, tmp_path)


@pytest.fixture(scope="module")
def celery_server(redis_server, tmp_path_factory):
    """``ufop-sdk serve`` of the sample in Celery mode and one ``ufop-sdk worker``; VIDEO_TIMEOUT 3 s."""
    spool = tmp_path_factory.mktemp("celery-spool")
    settings = {"VIDEO_TIMEOUT": "3", "UFOP_SPOOL_DIR": str(spool)}
    with Worker(VIDEO, redis_server.url(0), env=settings), \
            Server(VIDEO, env={**settings, "UFOP_BROKER_URL": redis_server.url(0)}) as server:
        server.spool = spool
        yield server


@pytest.mark.parametrize("cmd, content_type", [("vframe/png/offset/1/w/160", "image/png"),
                                               ("avthumb/mp4/s/160x120", "video/mp4")])
def test_in_celery_mode_vframe_and_avthumb_answer_files(celery_server, media, cmd, content_type):
    status, headers, body = celery_server.post(f"video/{cmd}", media["clip"])
    assert (status, headers["Content-Type"]) == (200, content_type), body[:300]
    assert probe(body)["streams"][0]["width"] == 160


def test_in_celery_mode_a_transcode_past_the_timeout_is_504_and_leaves_no_ffmpeg(celery_server, media):
    assert_a_long_transcode_is_504_leaving_no_ffmpeg(celery_server, media, celery_server.spool)


def load_sample():
    spec = importlib.util.spec_from_file_location("video_processors", VIDEO / "processors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("build", ["avinfo", "vframe", "avthumb"])
def test_the_samples_ffmpeg_fetches_no_url_a_playlist_names(media, tmp_path, build):
    # libmagic calls a bare playlist text (415), but one hidden in a container (an AVI's GAB2
    # subtitles) reaches ffmpeg's HLS demuxer: whatever its build's defaults, the sample's command
    # lines let ffmpeg open local files only.
    sample = load_sample()
    with Origin() as origin:
        origin.serve("/segment.ts", media["clip"])
        playlist = tmp_path / "list.m3u8"
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n{origin.url('/segment.ts')}\n"
                            "#EXT-X-ENDLIST\n")
        command = {"avinfo": lambda: sample.avinfo_command(str(playlist)),
                   "vframe": lambda: sample.vframe_command("jpg", sample.FrameOptions(offset="1"),
                                                           str(playlist), tmp_path / "frame.jpg"),
                   "avthumb": lambda: sample.avthumb_command("mp4", sample.TranscodeOptions(), str(playlist),
                                                             tmp_path / "out.mp4")}[build]()
        done = subprocess.run(command, capture_output=True, timeout=60)
        assert done.returncode != 0
        assert b"not on whitelist" in done.stderr
        assert origin.requests == []
