"""Episode videos with PyAV: encode frames, append episodes to one mp4 by remuxing, read stream info.

Encoding follows lerobot's defaults: AV1 (`libsvtav1`, preset 12) when PyAV's FFmpeg has it, else
h264 (`libx264`, no B-frames so episodes concatenate with monotonic timestamps); yuv420p, crf 30,
a keyframe every 2 frames (g=2) so any frame decodes quickly. Frame i of an episode has pts i in
time base 1/fps, i.e. timestamp i / fps exactly.
"""

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pick_video_codec() -> str:
    return "libsvtav1" if "libsvtav1" in av.codecs_available else "libx264"


def codec_options(codec: str, crf: int, gop: int | None) -> dict[str, str]:
    options = {"crf": str(crf)} if gop is None else {"crf": str(crf), "g": str(gop)}
    if codec == "libsvtav1":
        options["preset"] = "12"
    elif codec == "libx264":
        options["bf"] = "0"
    return options


def check_encodable(codec: str, height: int, width: int) -> None:
    if codec not in av.codecs_available:
        raise ValueError(f"video codec {codec!r} is not in this PyAV build; use libsvtav1 or libx264")
    if codec == "libx264" and (height % 2 or width % 2):
        raise ValueError(
            f"h264 (libx264) needs even image sides for yuv420p, got {height}x{width}; resize the camera"
        )


def encode_video(
    frames: np.ndarray, path: Path, fps: int, codec: str, crf: int = 30, gop: int | None = 2
) -> None:
    """Encode frames (T, H, W, 3) uint8 RGB into the mp4 at `path` (written directly: pass a temp path);
    gop None = the encoder's default keyframe interval."""
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder unless told not to
    time_base = Fraction(1, fps)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=codec_options(codec, crf, gop))
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = i
            video_frame.time_base = time_base
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def concat_videos(sources: list[tuple[Path, float, float | None]], out_path: Path) -> None:
    """Remux (no re-encoding) several mp4s made by `encode_video` into one.

    sources: (path, start_s, keep_until_s): the file's packets are shifted to start at start_s
    seconds; only packets before keep_until_s (in the file's own time) are copied, None = all.
    """
    with av.open(str(out_path), mode="w", format="mp4", options={"movflags": "faststart"}) as out:
        out_stream = None
        for path, start_s, keep_until_s in sources:
            with av.open(str(path)) as container:
                in_stream = container.streams.video[0]
                time_base = in_stream.time_base
                if out_stream is None:
                    out_stream = out.add_stream_from_template(in_stream, opaque=True)
                    out_stream.time_base = time_base
                shift = round(start_s / time_base)
                stop = None if keep_until_s is None else round(keep_until_s / time_base)
                for packet in container.demux(in_stream):
                    if packet.dts is None or (stop is not None and packet.pts >= stop):
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = out_stream
                    out.mux(packet)


def count_frames(path: Path) -> int:
    """Number of video frames (samples) in the mp4's first video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return stream.frames
        return sum(1 for packet in container.demux(stream) if packet.dts is not None)


def video_duration_s(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def video_info(path: Path) -> dict:
    """The `info` block lerobot keeps for a video feature in meta/info.json."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate),
            "video.channels": 3,
            "has_audio": len(container.streams.audio) > 0,
        }


def decode_video(path: Path) -> np.ndarray:
    """All frames of an mp4 as (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
