"""Reading and writing video files; grids; pixel conversions."""

import numpy as np
import pytest

from videogen.data import shapes, transforms, video_io


def _clip(seed=0, num_frames=9, height=32, width=48):
  return shapes.generate_example(seed, num_frames, height, width).video


def test_gif_round_trip_is_lossless(tmp_path):
  clip = _clip()
  path = video_io.write_video(tmp_path / 'clip.gif', clip, fps=8)
  np.testing.assert_array_equal(video_io.read_video(path), clip)


def test_mp4_round_trip_is_close(tmp_path):
  clip = _clip()
  path = video_io.write_video(tmp_path / 'nested' / 'clip.mp4', clip, fps=8)
  back = video_io.read_video(path)
  assert back.shape == clip.shape and back.dtype == np.uint8
  assert np.abs(back.astype(int) - clip).mean() < 6  # H.264 is lossy.
  assert video_io.read_video(path, max_frames=4).shape[0] == 4


def test_float_input_and_odd_sizes(tmp_path):
  clip = _clip(height=31, width=45)
  as_float = clip.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_array_equal(video_io.to_uint8(as_float), clip)
  np.testing.assert_array_equal(video_io.to_uint8(np.full((2, 2, 3), 7.0)), 255)
  back = video_io.read_video(video_io.write_video(tmp_path / 'odd.mp4', as_float))
  assert back.shape == (9, 32, 46, 3)  # Padded to even sides for H.264.


def test_unreadable_files_raise_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='missing.mp4'):
    video_io.read_video(tmp_path / 'missing.mp4')
  (tmp_path / 'empty.mp4').write_bytes(b'')
  with pytest.raises(video_io.VideoReadError, match='empty.mp4.*empty'):
    video_io.read_video(tmp_path / 'empty.mp4')
  (tmp_path / 'junk.mp4').write_bytes(b'junk' * 100)
  with pytest.raises(video_io.VideoReadError, match='junk.mp4'):
    video_io.read_video(tmp_path / 'junk.mp4')
  with pytest.raises(ValueError, match='suffix'):
    video_io.write_video(tmp_path / 'clip.webm', _clip())


def test_grid_tiles_pads_and_labels(tmp_path):
  long_clip, short_clip, small_clip = _clip(0, 6), _clip(1, 3), _clip(2, 6, 16, 16)
  tiled = video_io.grid([long_clip, short_clip, small_clip], columns=2)
  assert tiled.shape == (6, 32 * 2 + 2, 48 * 2 + 2, 3)
  np.testing.assert_array_equal(tiled[:, :32, :48], long_clip)
  np.testing.assert_array_equal(tiled[5, :32, 50:], short_clip[-1])  # Held last frame.
  np.testing.assert_array_equal(tiled[:, 34:50, :16], small_clip)
  labelled = video_io.grid([long_clip, short_clip], columns=2, labels=['a red one', 'b'])
  assert labelled.shape[1] > 32 and labelled[:, 32:].max() > 200  # Text drawn.
  path = video_io.write_grid(tmp_path / 'grid.gif', [long_clip, short_clip], fps=4, columns=1)
  assert video_io.read_video(path).shape == (6, 32 * 2 + 2, 48, 3)


def test_resize_video_centre_crops_then_resizes():
  clip = np.zeros((2, 20, 40, 3), np.uint8)
  clip[:, :, 10:30] = 255  # The centre square.
  out = transforms.resize_video(clip, 10, 10)
  assert out.shape == (2, 10, 10, 3) and out.min() == 255
  assert transforms.resize_video(clip, 20, 40) is clip
  assert transforms.label_to_words('ApplyEyeMakeup') == 'apply eye makeup'
  assert transforms.label_to_words('sea_lion') == 'sea lion'


def test_show_rows_is_one_html_table_row_per_example(monkeypatch):
  from IPython import display  # noqa: PLC0415

  shown = []
  monkeypatch.setattr(display, 'display', shown.append)
  clip = _clip(num_frames=3, height=16, width=16)
  as_float = clip.astype(np.float32) / 127.5 - 1.0
  video_io.show_rows([[clip, as_float], [clip, clip]], ('original', 'result'), ['a <b>', 'c'])
  (page,) = shown
  html = page.data
  assert html.count('<img') == 4 and html.count('<td style="max-width') == 2
  assert html.count('>original<') == 1  # Column titles above the first row only.
  assert 'a &lt;b&gt;' in html  # Row titles are escaped text.
  with pytest.raises(ValueError, match='2 row titles for 1 rows'):
    video_io.show_rows([[clip]], row_titles=['a', 'b'])


def test_write_rows_is_one_upscaled_labelled_row_per_example(tmp_path):
  clip = _clip(num_frames=3, height=16, width=16)
  as_float = clip.astype(np.float32) / 127.5 - 1.0
  path = video_io.write_rows(
    tmp_path / 'rows.gif',
    [[clip, as_float], [clip, clip]],
    ('original', 'result'),
    ['a', 'b'],
    height=64,
  )
  back = video_io.read_video(path)
  # Two rows of two 64-pixel tiles (x4, unsmoothed), each with its label under it.
  assert back.shape[0] == 3 and back.shape[2] == 2 * 64 + 2 and back.shape[1] > 2 * 64 + 2
  np.testing.assert_array_equal(back[:, :64, :64], clip.repeat(4, axis=1).repeat(4, axis=2))
  np.testing.assert_array_equal(back[:, :64, 66:], back[:, :64, :64])
  assert back[:, 64:75].max() > 200  # Text drawn under the first row.
  with pytest.raises(ValueError, match='Row 0 has 1 videos for 2 columns'):
    video_io.write_rows(tmp_path / 'bad.gif', [[clip]], ('original', 'result'))
  with pytest.raises(ValueError, match='2 row titles for 1 rows'):
    video_io.write_rows(tmp_path / 'bad.gif', [[clip]], ('original',), ['a', 'b'])
