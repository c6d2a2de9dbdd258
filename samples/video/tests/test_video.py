"""The video sample, run in-process exactly as the server runs it (ffmpeg as a real child process).

``run(cmd, path)`` hands the processor a real file, which ffmpeg opens through its descriptor;
``run(cmd, bytes)`` an in-memory input, which the processor writes to req.workdir first.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ufop_sdk.testing import run

PROJECT = Path(__file__).resolve().parent.parent


def probe(data):
    """ffprobe's streams and format of `data` (bytes)."""
    done = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
                           "-"], input=data, capture_output=True, check=True, timeout=30)
    return json.loads(done.stdout)


def error(response):
    return json.loads(response.body)["error"]


@pytest.mark.parametrize("as_bytes", [False, True], ids=["a file", "in memory"])
def test_avinfo_gives_ffprobes_streams_and_format(media, as_bytes):
    source = media["clip"].read_bytes() if as_bytes else media["clip"]
    response = run("avinfo", source, project=PROJECT)
    assert (response.status, response.content_type) == (200, "application/json"), response.body
    info = json.loads(response.body)
    video, audio = info["streams"]
    assert (video["codec_type"], video["codec_name"], video["width"], video["height"]) == (
        "video", "h264", 320, 240)
    assert (audio["codec_type"], audio["codec_name"]) == ("audio", "aac")
    assert 3.9 < float(info["format"]["duration"]) < 4.2
    assert "mp4" in info["format"]["format_name"]
    assert "filename" not in info["format"], "the worker's path to the input is none of the client's business"


def test_avinfo_of_a_sound_has_one_audio_stream(media):
    info = json.loads(run("avinfo", media["sound"], project=PROJECT).body)
    assert [stream["codec_type"] for stream in info["streams"]] == ["audio"]


@pytest.mark.parametrize("cmd, content_type, codec, size", [
    ("vframe/jpg/offset/1", "image/jpeg", "mjpeg", (320, 240)),
    ("vframe/jpg/offset/1.5/w/160", "image/jpeg", "mjpeg", (160, 120)),
    ("vframe/png/offset/0/h/60", "image/png", "png", (80, 60)),
    ("vframe/png/h/50/offset/3.5/w/100", "image/png", "png", (100, 50)),
])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["a file", "in memory"])
def test_vframe_gives_one_frame_at_the_asked_size(media, cmd, content_type, codec, size, as_bytes):
    source = media["clip"].read_bytes() if as_bytes else media["clip"]
    response = run(cmd, source, project=PROJECT)
    assert (response.status, response.content_type) == (200, content_type), response.body
    (stream,) = probe(response.body)["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == (codec, *size)


def test_vframe_takes_the_frame_at_the_offset(media):
    frames = {run(f"vframe/png/offset/{offset}", media["clip"], project=PROJECT).body for offset in (0, 2, 2)}
    assert len(frames) == 2  # testsrc's counter moves: other offsets, other frames; one offset, one frame


@pytest.mark.parametrize("offset", ["4.5", "60"])
def test_vframe_past_the_end_is_400(media, offset):
    response = run(f"vframe/jpg/offset/{offset}", media["clip"], project=PROJECT)
    assert response.status == 400
    assert error(response) == f"offset {float(offset):g}s is past the end of the input"


def test_vframe_of_a_sound_is_400(media):
    response = run("vframe/jpg/offset/1", media["sound"], project=PROJECT)
    assert (response.status, error(response)) == (400, "the input has no video stream")


def streams_by_type(data):
    return {stream["codec_type"]: stream for stream in probe(data)["streams"]}


@pytest.mark.parametrize("format, video_codec, audio_codec", [("mp4", "h264", "aac"),
                                                              ("webm", "vp8", "vorbis")])
def test_avthumb_transcodes_to_the_format(media, format, video_codec, audio_codec):
    response = run(f"avthumb/{format}", media["clip"], project=PROJECT)
    assert (response.status, response.content_type) == (200, f"video/{format}"), response.body
    info = probe(response.body)
    assert format in info["format"]["format_name"]
    streams = {stream["codec_type"]: stream for stream in info["streams"]}
    assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == (video_codec, audio_codec)
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)


def test_avthumb_scales_sets_the_frame_rate_and_drops_the_audio(media):
    response = run("avthumb/mp4/s/160x90/r/10/an/1", media["clip"].read_bytes(), project=PROJECT)
    streams = streams_by_type(response.body)
    assert list(streams) == ["video"]
    assert (streams["video"]["width"], streams["video"]["height"]) == (160, 90)
    assert streams["video"]["r_frame_rate"] == "10/1"


def test_avthumb_keeps_the_audio_of_a_sound(media):
    assert list(streams_by_type(run("avthumb/mp4", media["sound"], project=PROJECT).body)) == ["audio"]


def test_avthumb_of_a_video_without_sound(media):
    assert list(streams_by_type(run("avthumb/webm", media["silent"], project=PROJECT).body)) == ["video"]


def test_avthumb_video_bitrate_changes_the_size(media):
    low = run("avthumb/webm/vb/50k", media["clip"], project=PROJECT).body
    high = run("avthumb/webm/vb/2m", media["clip"], project=PROJECT).body
    assert len(low) < len(high)


@pytest.mark.parametrize("cmd, message", [
    ("vframe/gif/offset/1", "invalid argument 'format': expected one of jpg, png, got 'gif'"),
    ("vframe/jpg", "missing argument 'offset'"),
    ("vframe/jpg/offset/-1", "invalid argument 'offset': expected a number of seconds, 0 or more, e.g. 1.5, "
                             "got '-1'"),
    ("vframe/jpg/offset/1/w/0", "invalid argument 'w': expected an integer 1-3840, got '0'"),
    ("vframe/jpg/offset/1/h/4000", "invalid argument 'h': expected an integer 1-3840, got '4000'"),
    ("vframe/jpg/offset/1/offset/2", "invalid argument 'offset': given more than once"),
    ("vframe/jpg/offset/1/q/80", "unknown argument 'q': expected one of h, offset, w"),
    ("avthumb/avi", "invalid argument 'format': expected one of mp4, webm, got 'avi'"),
    ("avthumb/mp4/s/641x360", "invalid argument 's': expected <width>x<height>, each an even number "
                              "2-3840, got '641x360'"),
    ("avthumb/mp4/s/640", "invalid argument 's': expected <width>x<height>, each an even number 2-3840, "
                          "got '640'"),
    ("avthumb/mp4/vb/fast", "invalid argument 'vb': expected a bitrate 1k-100m, e.g. 800k or 1.25m, "
                            "got 'fast'"),
    ("avthumb/mp4/r/0", "invalid argument 'r': expected an integer 1-60, got '0'"),
    ("avthumb/mp4/an/yes", "invalid argument 'an': expected one of 0, 1, got 'yes'"),
    ("avthumb/mp4/an", "invalid argument 'an': expected a value after it"),
])
def test_bad_arguments_are_400_naming_the_key(media, cmd, message):
    response = run(cmd, media["clip"], project=PROJECT)
    assert (response.status, error(response)) == (400, message)


@pytest.mark.parametrize("cmd", ["avinfo", "vframe/jpg/offset/1", "avthumb/mp4"])
@pytest.mark.parametrize("data", [b"just some text\n", b"\x89PNG\r\n\x1a\n" + bytes(64)], ids=["text", "png"])
def test_anything_but_audio_or_video_is_415(cmd, data):
    assert run(cmd, data, project=PROJECT).status == 415


@pytest.mark.parametrize("cmd, tool", [("avinfo", "ffprobe"), ("vframe/jpg/offset/1", "ffmpeg"),
                                       ("avthumb/mp4", "ffmpeg")])
def test_a_broken_video_is_400_with_ffmpegs_complaint(media, cmd, tool):
    response = run(cmd, media["clip"].read_bytes()[:3000], project=PROJECT)  # its index is at the end
    assert (response.status, error(response)) == (400, f"{tool}: the input: Invalid data found when "
                                                       "processing input")


def test_ffmpeg_past_the_processors_timeout_is_killed_and_answers_504(media, tmp_path):
    # `ufop-sdk test` runs the processor in its own process, with no pool to kill anything at the
    # timeout: the processor's own bound on ffmpeg is all there is. Its outputs go under the spool
    # folder, which marks its ffmpeg among the machine's processes.
    environment = {**os.environ, "VIDEO_TIMEOUT": "2", "UFOP_SPOOL_DIR": str(tmp_path)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ufop_sdk", "test", str(media["long"]),
                           "avthumb/webm/s/3840x2160", "--project", str(PROJECT)],
                          env=environment, capture_output=True, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(b'504 {"error": "ffmpeg ran past 1.8s of the processor\'s timeout of 2s"')
    assert took < 20  # making it 4K takes minutes
    assert ffmpeg_running_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # req.workdir removed


def ffmpeg_running_under(folder):
    """The command lines of the ffmpeg processes running now that mention `folder`."""
    found = subprocess.run(["pgrep", "-a", "-f", f"^ffmpeg .*{folder}/"], capture_output=True, text=True)
    return found.stdout.splitlines()
