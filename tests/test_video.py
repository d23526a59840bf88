"""predict.py on videos: a clip or a folder of frames becomes an H.264 overlay video that
browsers play, frames segmented in batches through the Segmenter."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from PIL import Image

import gluon_deeplab as gd
from gluon_deeplab.evaluation import overlay
from gluon_deeplab.evaluation.predict_cli import main
from gluon_deeplab.evaluation.video import INSTALL_HINT, read_video


@pytest.fixture(scope="session")
def av():
    try:
        import av
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: the video tests need PyAV (pip install -e '.[video]')")
        pytest.skip("the video tests need PyAV: pip install -e '.[video]'")
    return av


def _frames(root):
    folder = os.path.join(root, "JPEGImages")
    return [np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"))
            for f in sorted(os.listdir(folder))]


def _write_clip(av, path, frames, fps=10):
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def test_clip_becomes_an_h264_overlay_video_at_the_asked_rate(av, trained_synthetic, tmp_path,
                                                              capsys):
    root, checkpoint = trained_synthetic
    frames = _frames(root)[:6] * 2  # 12 frames of 48 x 64
    clip = str(tmp_path / "clip.mp4")
    _write_clip(av, clip, frames)
    out = tmp_path / "out"
    main([clip, "--checkpoint", checkpoint, "--output_dir", str(out), "--output_fps", "5",
          "--opacity", "0.7", "--batch_size", "3"])
    captured = capsys.readouterr()
    assert f"wrote {out / 'clip.mp4'} (12 frames at 5 fps)" in captured.out
    assert "clip.mp4" in captured.err and "12/12" in captured.err  # the progress bar
    with av.open(str(out / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
        assert float(stream.average_rate) == 5 and (stream.width, stream.height) == (64, 48)
        written = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(written) == 12
    decoded, _, _ = read_video(clip)
    segmenter = gd.load_segmenter(checkpoint)
    errors, unchanged, foreground = [], [], []
    for got, frame in zip(written, decoded):
        mask = segmenter.segment(frame).mask
        foreground.append((mask > 0).mean())
        errors.append(np.abs(got - overlay(frame, mask, 0.7).astype(float)).mean())
        unchanged.append(np.abs(got - frame.astype(float)).mean())
    assert np.mean(foreground) > 0.02  # overlays that differ from the frames
    assert max(errors) < 6, errors  # H.264's loss
    assert np.mean(errors) < np.mean(unchanged) / 2, (errors, unchanged)


def test_folder_of_frames_becomes_a_video_with_even_sides(av, trained_synthetic, tmp_path,
                                                          capsys):
    root, checkpoint = trained_synthetic
    folder = tmp_path / "walk"
    folder.mkdir()
    for i, frame in enumerate(_frames(root)[:3]):
        Image.fromarray(frame[:47, :33]).save(folder / f"{i:03d}.png")
    main([str(folder), "--video", "--checkpoint", checkpoint, "--output_dir",
          str(tmp_path / "out")])
    assert "(3 frames at 25 fps)" in capsys.readouterr().out
    with av.open(str(tmp_path / "out" / "walk.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (34, 48)  # 4:2:0 needs even sides
        assert sum(1 for _ in container.decode(stream)) == 3


def test_video_errors_are_one_line(av, trained_synthetic, tmp_path, capsys, monkeypatch):
    checkpoint = trained_synthetic[1]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    out = str(tmp_path / "out")
    for argv, message in (([str(bad)], f"{bad}: unreadable video"),
                          ([str(bad), "--output_fps", "0"], "--output_fps: expected a positive"),
                          ([str(bad), "--label_dir", out], "apply to images, not videos")):
        with pytest.raises(SystemExit):
            main(argv + ["--checkpoint", checkpoint, "--output_dir", out])
        assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not os.path.exists(os.path.join(out, "bad.mp4"))  # nothing half written
    image = tmp_path / "still.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    with pytest.raises(SystemExit):
        main([str(image), "--video", "--checkpoint", checkpoint, "--output_dir", out])
    assert "still.png: expected a video file" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "av", None)  # a machine without the [video] extra
    with pytest.raises(SystemExit):
        main([str(bad), "--checkpoint", checkpoint, "--output_dir", out])
    assert INSTALL_HINT in capsys.readouterr().err
