"""Overlay videos: ``predict.py clip.mp4`` (or ``--video`` on a folder of frames) writes an
H.264 MP4 that browsers play, every frame segmented by the :class:`~.segmenter.Segmenter` in
batches (all frames share one size, so one batch key).

Optional: ``pip install 'gluon-deeplab[video]'`` (PyAV, whose wheels carry FFmpeg with
libx264; OpenCV's pip build has no H.264 encoder).
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..data.io import DataError
from .segmenter import Segmenter
from .visualize import overlay

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
INSTALL_HINT = ("video needs the optional package av (PyAV): pip install 'gluon-deeplab[video]' "
                "(or pip install av==18.1.1)")
DEFAULT_FPS = 25.0  # of a folder of frames
CODEC, PIXEL_FORMAT = "libx264", "yuv420p"  # what browsers play


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return av


def is_video(path: str) -> bool:
    """A file whose extension names a video container."""
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTS)


def read_video(path: str) -> Tuple[Iterator[np.ndarray], float, Optional[int]]:
    """(RGB uint8 frames, frames per second, frame count when the file says) of a video."""
    av = _av()
    try:
        container = av.open(path)
        stream = container.streams.video[0]
    except (av.error.FFmpegError, IndexError) as err:
        raise DataError(f"{path}: unreadable video or no video stream ({err})") from None
    fps = float(stream.average_rate or DEFAULT_FPS)

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as err:
            raise DataError(f"{path}: corrupt video ({err})") from None
        finally:
            container.close()
    return frames(), fps, int(stream.frames) or None


def _even(frame: np.ndarray) -> np.ndarray:
    """``frame`` with its last row / column repeated to an even height and width (4:2:0
    chroma needs them)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 \
        else frame


def write_video(path: str, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB uint8 frames of one size as H.264 (yuv420p, moov atom first so a browser
    starts playing while it loads); returns the number of frames written."""
    av = _av()
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    try:
        container = av.open(path, "w", options={"movflags": "+faststart"})
    except av.error.FFmpegError as err:
        raise OSError(f"{path}: cannot write a video there ({err})") from None
    with container:
        stream = container.add_stream(CODEC, rate=rate)
        stream.pix_fmt = PIXEL_FORMAT
        for frame in frames:
            frame = _even(frame)
            if count == 0:
                stream.height, stream.width = frame.shape[:2]
            elif frame.shape[:2] != (stream.height, stream.width):
                raise DataError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, the "
                                f"first {stream.width}x{stream.height}: a video has one size")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            count += 1
        container.mux(stream.encode(None))
    return count


def frames_of(source: str, frame_files: Sequence[str]) -> Tuple[Iterator[Any], float,
                                                                 Optional[int]]:
    """The frames of a video file, or of ``frame_files`` (a folder's images, in name order)."""
    if frame_files:
        return iter(frame_files), DEFAULT_FPS, len(frame_files)
    return read_video(source)


def predict_video(segmenter: Segmenter, source: str, output: str,
                  frame_files: Sequence[str] = (), output_fps: Optional[float] = None,
                  opacity: float = 0.5, batch_size: int = 4, progress: bool = True,
                  **segment_options: Any) -> Dict[str, Any]:
    """Segment every frame of ``source`` (a video file, or the ``frame_files`` of a folder)
    and write their overlays (``opacity``) as an H.264 MP4 at ``output``, at the source's
    frame rate unless ``output_fps``. ``segment_options``: scales, flip, ... of
    :meth:`Segmenter.segment_iter`. Returns {'path', 'frames', 'fps'}."""
    if output_fps is not None and not output_fps > 0:
        raise ValueError(f"--output_fps: expected a positive number, got {output_fps}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"--opacity: expected a number in [0, 1], got {opacity}")
    _av()  # before any frame is read
    frames, fps, total = frames_of(source, frame_files)
    fps = float(output_fps or fps)
    bar = tqdm(total=total, desc=os.path.basename(source), unit="frame", disable=not progress)

    def overlays() -> Iterator[np.ndarray]:
        for result in segmenter.segment_iter(frames, batch_size=batch_size, **segment_options):
            bar.update(1)
            yield overlay(result.image, result.mask, opacity)
    partial = output + ".partial.mp4"  # renamed once complete: no half video left behind
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    try:
        count = write_video(partial, overlays(), fps)
        if count == 0:
            raise DataError(f"{source}: no frames to segment")
        os.replace(partial, output)
    finally:
        bar.close()
        if os.path.exists(partial):
            os.remove(partial)
    return {"path": output, "frames": count, "fps": fps}
