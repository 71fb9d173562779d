"""Videos of episodes: MP4 through imageio-ffmpeg (its own ffmpeg binary), animated GIF through Pillow."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import numpy as np

__all__ = ["VIDEO_FORMATS", "VideoWriter", "check_video_path"]

VIDEO_FORMATS = {".mp4": "MP4 (H.264, needs `pip install 'hpcne[video]'`)", ".gif": "animated GIF"}
"""File suffixes `VideoWriter` writes, and what each one is."""

PROGRESS_EVERY = 100
"""Frames between two progress lines (a MuJoCo frame takes 0.05-0.15 s to render off-screen)."""


def check_video_path(path: str | Path, *, flag: str = "--render") -> Path:
    """Refuse an output path that cannot be written, before any work is done.

    Raises:
        ValueError: The suffix is not a video format, its folder does not exist, or MP4 was asked for
            without imageio-ffmpeg.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        formats = "; ".join(f"{name}: {what}" for name, what in VIDEO_FORMATS.items())
        raise ValueError(f"{flag} {path}: cannot write {suffix or 'a file without suffix'}; use {formats}.")
    check_output_folder(path, flag=flag)
    if suffix == ".mp4":
        _ffmpeg()
    return path


def check_output_folder(path: str | Path, *, flag: str) -> Path:
    """Refuse an output file whose folder does not exist (before the work that would fill it)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {path}: the folder {path.parent} does not exist; create it or choose another path.")
    return path


class VideoWriter:
    """Writes RGB frames, appended one by one, to an MP4 or GIF file; prints progress while it grows.

    MP4 frames stream to ffmpeg as they come; GIF frames are kept as 8-bit palette images until
    :meth:`close`. Use as a context manager; the file is complete after :meth:`close`.
    """

    def __init__(self, path: str | Path, *, fps: float = 30, label: str = "", out: TextIO | None = None) -> None:
        self.path = check_video_path(path)
        self.fps = float(fps)
        self.frames = 0
        self._label = f" of {label}" if label else ""
        self._out = sys.stdout if out is None else out
        self._started = time.monotonic()
        self._gif: list[Any] = []
        self._mp4: Any = None

    def append(self, frame: np.ndarray) -> None:
        """Add one frame (height × width × 3, uint8)."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self.path.suffix.lower() == ".gif":
            from PIL import Image

            self._gif.append(Image.fromarray(frame).quantize(256))
        else:
            if self._mp4 is None:
                self._mp4 = self._open_mp4(frame.shape)
            self._mp4.send(frame)
        self.frames += 1
        if self.frames % PROGRESS_EVERY == 0:
            seconds = time.monotonic() - self._started
            print(f"hpcne: rendering{self._label}: {self.frames} frames ({seconds:.0f} s)", file=self._out, flush=True)

    def close(self) -> None:
        """Finish the file.

        Raises:
            ValueError: No frame was appended.
        """
        if self._mp4 is not None:
            self._mp4.close()
            self._mp4 = None
        elif self._gif:
            first, *rest = self._gif
            first.save(self.path, save_all=True, append_images=rest, duration=math.ceil(1000 / self.fps), loop=0)
            self._gif = []
        elif not self.frames:
            raise ValueError("No frames were rendered; cannot write a video.")

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        elif self._mp4 is not None:  # an episode failed: stop ffmpeg, keep the error
            self._mp4.close()

    def _open_mp4(self, shape: tuple[int, ...]) -> Any:
        height, width = shape[:2]
        # H.264 with yuv420p needs even sizes; ffmpeg pads odd ones (macro_block_size=2).
        writer = _ffmpeg().write_frames(
            str(self.path),
            (width, height),
            fps=self.fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            ffmpeg_log_level="error",
        )
        writer.send(None)  # start ffmpeg
        return writer


def _ffmpeg() -> Any:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ValueError(
            "Writing MP4 needs imageio-ffmpeg: `pip install 'hpcne[video]'` (or write a .gif instead)."
        ) from None
    return imageio_ffmpeg
