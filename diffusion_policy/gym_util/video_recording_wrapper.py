"""Record `env.render()` frames of an episode into an mp4 (PyAV, h264, yuv420p).

Recording is on while `video_path` is set (the rollout runner sets it per episode through
`VectorEnv.set_attr("video_path", [...])`; None disables it). A frame is rendered on the first
step after reset and then every `steps_per_render` steps, so a `control_hz` env played at `fps`
looks real-time with `steps_per_render = max(control_hz // fps, 1)`.

Frames are encoded while the episode runs into a temporary file; `finish_video()` (also called by
the next `reset()` and by `close()`) closes it and renames it onto `video_path`.
"""

import os
from fractions import Fraction

import av
import gymnasium
import numpy as np


class Mp4Writer:
    """Streams RGB uint8 frames (H, W, 3) into an h264 mp4, written atomically on close()."""

    def __init__(self, path: str, fps: float, crf: int = 22, codec: str = "h264"):
        self.path = path
        self.tmp_path = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp")
        self.fps = Fraction(fps).limit_denominator(1000)
        self.crf = crf
        self.codec = codec
        self.container = None
        self.stream = None

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"video frames must be (H, W, 3) RGB arrays, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            frame = (np.clip(frame, 0.0, 1.0) * 255).astype(np.uint8)
        # yuv420p needs even sides: drop a last odd row/column.
        height, width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
        frame = np.ascontiguousarray(frame[:height, :width])
        if self.container is None:
            self.container = av.open(self.tmp_path, mode="w", format="mp4")
            self.stream = self.container.add_stream(self.codec, rate=self.fps)
            self.stream.width, self.stream.height = width, height
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf)}
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)

    def close(self) -> str | None:
        """Flush and move the file into place; returns its path, or None if no frame was written."""
        if self.container is None:
            return None
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.container = None
        os.replace(self.tmp_path, self.path)
        return self.path


class VideoRecordingWrapper(gymnasium.Wrapper):
    def __init__(
        self,
        env: gymnasium.Env,
        video_path: str | None = None,
        fps: float = 10,
        crf: int = 22,
        steps_per_render: int = 1,
    ):
        super().__init__(env)
        self.video_path = video_path
        self.fps = fps
        self.crf = crf
        self.steps_per_render = max(int(steps_per_render), 1)
        self._writer: Mp4Writer | None = None
        self._steps_since_reset = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.finish_video()
        self._steps_since_reset = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        result = self.env.step(action)
        if self.video_path is not None and self._steps_since_reset % self.steps_per_render == 0:
            if self._writer is None:
                os.makedirs(os.path.dirname(self.video_path) or ".", exist_ok=True)
                self._writer = Mp4Writer(self.video_path, self.fps, self.crf)
            self._writer.write(self.env.render())
        self._steps_since_reset += 1
        return result

    def finish_video(self) -> str | None:
        """Write out the current episode's video; returns its path (None when nothing was recorded)."""
        if self._writer is None:
            return None
        path = self._writer.close()
        self._writer = None
        return path

    def close(self):
        self.finish_video()
        super().close()
