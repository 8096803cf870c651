from __future__ import annotations

import numpy as np
import pytest

from t2vkit.errors import T2VError
from t2vkit.video_io import contact_sheet, read_video, upscale, write_gif, write_mp4, write_png


def _moving_square(frames: int = 12, size: int = 32, channels: int = 3) -> np.ndarray:
    video = np.zeros((frames, size, size, channels), np.uint8)
    for t in range(frames):
        video[t, 8:16, t : t + 8] = 200
    return video


def test_mp4_round_trip_keeps_frames_and_content(tmp_path):
    video = _moving_square()
    path = write_mp4(tmp_path / "a.mp4", video)
    back = read_video(path)
    assert back.shape == video.shape
    assert np.abs(back.astype(int) - video).mean() < 4  # lossy, but close
    grey = read_video(path, size=(16, 16), channels=1)
    assert grey.shape == (12, 16, 16, 1)


def test_grey_clips_are_written_as_rgb(tmp_path):
    path = write_mp4(tmp_path / "g.mp4", _moving_square(channels=1))
    assert read_video(path).shape == (12, 32, 32, 3)


def test_odd_sizes_and_bad_arrays_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(T2VError, match="even frame sizes, got 31×32"):
        write_mp4(tmp_path / "odd.mp4", _moving_square()[:, :31])
    with pytest.raises(T2VError, match="must be uint8"):
        write_mp4(tmp_path / "f.mp4", _moving_square().astype(np.float32))
    with pytest.raises(T2VError, match="no frames"):
        write_mp4(tmp_path / "e.mp4", _moving_square()[:0])
    assert list(tmp_path.iterdir()) == []


def test_gif_sheet_and_upscale(tmp_path):
    from PIL import Image

    video = _moving_square(frames=4)
    write_gif(tmp_path / "a.gif", video)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 4
    sheet = contact_sheet([video, video], pad=2)
    assert sheet.shape == (2 * 34 + 2, 4 * 34 + 2, 3)
    write_png(tmp_path / "s.png", sheet)
    with Image.open(tmp_path / "s.png") as png:
        assert png.size == (sheet.shape[1], sheet.shape[0])
    assert upscale(video, 2).shape == (4, 64, 64, 3)


def test_unreadable_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(T2VError, match="cannot decode"):
        read_video(bad, size=(8, 8))
    with pytest.raises(T2VError, match="video not found"):
        read_video(tmp_path / "missing.mp4", size=(8, 8))
