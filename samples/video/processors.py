"""Qiniu's audio and video fops on ffmpeg (Debian: ``apt-get install ffmpeg``): avinfo, vframe, avthumb.

    ufop-sdk test clip.mp4 avinfo
    ufop-sdk test clip.mp4 vframe/jpg/offset/1.5/w/320 -o frame.jpg
    ufop-sdk test clip.mp4 avthumb/webm/s/640x360/vb/500k/r/24/an/1 -o small.webm

``avinfo`` answers ffprobe's JSON (``streams`` and ``format``); ``vframe/<jpg|png>/offset/<seconds>
[/w/<width>][/h/<height>]`` one frame (one of w and h keeps the aspect ratio); ``avthumb/<mp4|webm>
[/s/<W>x<H>][/vb/<bitrate>][/r/<fps>][/an/1]`` a transcoded file. Input that is not audio or video
is 415; ffmpeg's own complaint about it is a 400. ``VIDEO_TIMEOUT`` (seconds, default 600) is each
processor's timeout; ffmpeg is killed a little before it (a tenth, at most 1 s), so that the
processor answers the 504 itself.
"""

import json
import os
import re
import shutil
import subprocess

import attrs

from ufop_sdk import BadRequest, ProcessingTimeout, Processor, choice, integer, key_values

MEDIA = ("video/*", "audio/*", "application/ogg")
TIMEOUT = float(os.environ.get("VIDEO_TIMEOUT", 600))
# Only local files: a playlist inside an upload (an HLS one hidden in an AVI) must not make ffmpeg
# fetch URLs this machine can reach, around the SSRF guard the input itself went through. ffmpeg
# allows what a local file names file, crypto and data already; said here, it holds whatever the build.
PROTOCOLS = ("-protocol_whitelist", "file")
FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *PROTOCOLS)
MAX_SIDE = 3840
IMAGE_CODECS = {"jpg": ("mjpeg", "-q:v", "2"), "png": ("png",)}
VIDEO_FORMATS = {
    "mp4": ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
            "-movflags", "+faststart"),
    # VP8 at libvpx's fastest: VP9 is several times slower for a small gain at these sizes.
    "webm": ("-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libvorbis"),
}
WEBM_DEFAULT_BITRATE = "1M"  # libvpx's own default (256k) blurs anything moving
INPUT = object()  # stands for the input's path in the command lines given to run_tool


class MediaProcessor(Processor):
    """Runs ffmpeg or ffprobe on the input, inside the processor's timeout."""

    accepts = MEDIA
    timeout = TIMEOUT

    def run_tool(self, req, command):
        """Run `command` (ffmpeg's or ffprobe's, with INPUT standing for the input's path).

        Returns its stdout. Raises ProcessingTimeout once it has run past the processor's timeout
        less a margin, so the processor answers its own 504 and its worker lives on (the pool kills
        the worker's whole tree at the full timeout, as a backstop), and BadRequest with the tool's
        complaint (ToolFailed) when it fails. Either way, and on any exception (Celery's soft time limit),
        subprocess.run has killed and reaped the child before this returns.
        """
        source, descriptors = input_path(req)
        command = [source if argument is INPUT else argument for argument in command]
        budget = self.timeout - min(1.0, self.timeout / 10)
        try:
            done = subprocess.run(command, capture_output=True, timeout=budget, pass_fds=descriptors)
        except subprocess.TimeoutExpired:
            raise ProcessingTimeout(f"{command[0]} ran past {budget:g}s of the processor's timeout "
                                    f"of {self.timeout:g}s") from None
        if done.returncode:
            hidden = {source: "the input", f"{req.workdir}/": ""}  # this machine's paths
            raise ToolFailed(command[0], done.stderr.decode(errors="replace"), hidden)
        return done.stdout


def input_path(req):
    """A path ffmpeg can open and seek for the input, and the descriptors to hand it.

    A spooled input is a real file: ffmpeg opens it through its descriptor, with nothing copied.
    An input held in memory (a small body: a BytesIO) is written to ``req.workdir`` first; piping it
    would not do, as an MP4 whose index is at its end needs seeking.
    """
    try:
        descriptor = req.buffer.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        path = req.workdir / "input"
        with open(path, "wb") as file:
            shutil.copyfileobj(req.buffer, file)
        return str(path), ()
    return f"/dev/fd/{descriptor}", (descriptor,)


class ToolFailed(BadRequest):
    """ffmpeg or ffprobe failed on this input (400): the message is its last line of complaint, which
    sums up the others, with each of `replaced`'s keys replaced by its value; `stderr` holds all it said."""

    def __init__(self, tool, stderr, replaced):
        lines = stderr.strip().splitlines() or ["failed without a message"]
        complaint = lines[-1]
        for old, new in replaced.items():
            complaint = complaint.replace(old, new)
        super().__init__(f"{tool}: {complaint}")
        self.stderr = stderr


class AvInfo(MediaProcessor):
    route = r"avinfo"

    def process(self, req):
        report = json.loads(self.run_tool(req, avinfo_command(INPUT)))
        described = report.get("format", {})
        described.pop("filename", None)  # this machine's path to the input
        return {"streams": report.get("streams", []), "format": described}


def avinfo_command(source):
    return ["ffprobe", "-v", "error", *PROTOCOLS, "-print_format", "json", "-show_streams", "-show_format",
            source]


def seconds(default=attrs.NOTHING):
    """An attrs field taking a number of seconds, 0 or more, as a float."""

    def convert(value):
        if value is default or isinstance(value, float):
            return value
        if not re.fullmatch(r"\d{1,7}(\.\d{1,6})?", value):
            raise ValueError("expected a number of seconds, 0 or more, e.g. 1.5")
        return float(value)

    return attrs.field(default=default, converter=convert)


@attrs.frozen
class FrameOptions:
    offset: float = seconds()
    w: int = integer(1, MAX_SIDE, default=None)
    h: int = integer(1, MAX_SIDE, default=None)


def format_and_options(formats, options_class):
    """The Args of Qiniu's ``<fop>/<format>[/key/value...]``: `format` one of `formats`, `options`
    an `options_class` parsed from the pairs."""
    return attrs.make_class("Args", {"format": choice(*formats), "options": key_values(options_class)},
                            frozen=True)


class VFrame(MediaProcessor):
    route = r"vframe/(?P<format>[^/]+)(?P<options>/.*)?"
    Args = format_and_options(IMAGE_CODECS, FrameOptions)

    def process(self, req):
        args, options = req.args, req.args.options
        output = req.workdir / f"frame.{args.format}"
        try:
            self.run_tool(req, vframe_command(args.format, options, INPUT, output))
        except ToolFailed as exc:
            if "matches no streams" in exc.stderr:
                raise BadRequest("the input has no video stream") from None
            raise
        if not output.exists() or not output.stat().st_size:
            raise BadRequest(f"offset {options.offset:g}s is past the end of the input")
        return output, "image/jpeg" if args.format == "jpg" else "image/png"


def vframe_command(format, options, source, output):
    """ffmpeg's command line for ``vframe/<format>`` with `options` (FrameOptions)."""
    scale = ["-vf", f"scale={options.w or -1}:{options.h or -1}"] if options.w or options.h else []
    return [*FFMPEG, "-ss", f"{options.offset}", "-i", source, "-map", "0:v:0", "-frames:v", "1", *scale,
            "-c:v", *IMAGE_CODECS[format], "-f", "image2", "-update", "1", "-y", str(output)]


def frame_size(value):
    """"<W>x<H>", each an even number (x264's 4:2:0 needs them even) 2-3840, as (W, H)."""
    if value is None or isinstance(value, tuple):
        return value
    match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", value)
    size = tuple(map(int, match.groups())) if match else ()
    if not size or not all(2 <= side <= MAX_SIDE and side % 2 == 0 for side in size):
        raise ValueError(f"expected <width>x<height>, each an even number 2-{MAX_SIDE}")
    return size


def bitrate(value):
    """A bitrate in bits per second: 800000, 800k or 1.25m (Qiniu's spelling)."""
    if value is None or isinstance(value, int):
        return value
    match = re.fullmatch(r"(\d{1,9}(?:\.\d{1,3})?)([km]?)", value.lower())
    bits = round(float(match[1]) * {"": 1, "k": 1e3, "m": 1e6}[match[2]]) if match else 0
    if not 1000 <= bits <= 100_000_000:
        raise ValueError("expected a bitrate 1k-100m, e.g. 800k or 1.25m")
    return bits


@attrs.frozen
class TranscodeOptions:
    s: tuple = attrs.field(default=None, converter=frame_size)
    vb: int = attrs.field(default=None, converter=bitrate)
    r: int = integer(1, 60, default=None)
    an: str = choice("0", "1", default="0")


class AvThumb(MediaProcessor):
    route = r"avthumb/(?P<format>[^/]+)(?P<options>/.*)?"
    Args = format_and_options(VIDEO_FORMATS, TranscodeOptions)

    def process(self, req):
        args = req.args
        output = req.workdir / f"out.{args.format}"
        self.run_tool(req, avthumb_command(args.format, args.options, INPUT, output))
        return output, f"video/{args.format}"


def avthumb_command(format, options, source, output):
    """ffmpeg's command line for ``avthumb/<format>`` with `options` (TranscodeOptions)."""
    return [*FFMPEG, "-i", source, "-map", "0:v:0?", "-map", "0:a:0?", *VIDEO_FORMATS[format],
            *transcode_options(format, options), "-f", format, "-y", str(output)]


def transcode_options(format, options):
    chosen = []
    if options.s:
        chosen += ["-vf", "scale={}:{}".format(*options.s)]
    if options.vb or format == "webm":
        chosen += ["-b:v", str(options.vb or WEBM_DEFAULT_BITRATE)]
    if options.r:
        chosen += ["-r", str(options.r)]
    if options.an == "1":
        chosen += ["-an"]
    return chosen
