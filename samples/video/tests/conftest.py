"""Test media made by ffmpeg itself (its lavfi test sources), once per session."""

import subprocess

import pytest

VIDEO = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4"]
AUDIO = ["-f", "lavfi", "-i", "sine=frequency=440:duration=4"]


def make_media(folder, name, *sources_and_options):
    path = folder / name
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", *sources_and_options, "-y", str(path)],
                   check=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """{"clip": a 4 s 320x240 H.264 and AAC MP4, "sound": a 4 s WAV, "silent": a 4 s video-only WebM,
    "long": a 10 s 640x360 MP4 (2 MiB), slow to make 4K}."""
    folder = tmp_path_factory.mktemp("media")
    return {
        "clip": make_media(folder, "clip.mp4", *VIDEO, *AUDIO, "-c:v", "libx264", "-preset", "ultrafast",
                           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"),
        "sound": make_media(folder, "sound.wav", *AUDIO),
        "silent": make_media(folder, "silent.webm", *VIDEO, "-c:v", "libvpx", "-deadline", "realtime"),
        "long": make_media(folder, "long.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:duration=10",
                           "-c:v", "libx264", "-preset", "ultrafast"),
    }
