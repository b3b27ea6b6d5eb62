"""`videogen tokenize --video` / `detokenize`: a file's tokens and back."""

import numpy as np
import pytest

from tests import helpers, test_vq_task
from videogen import tokenize
from videogen.data import shapes, video_io
from videogen.vq import Tokenizer


@pytest.fixture(scope='module')
def tokenizer_workdir(tmp_path_factory) -> str:
  """An (untrained) tiny tokenizer run saved the way training saves it: 4x4 spatial,
  4x temporal downsampling."""
  from videogen.train import checkpointing  # noqa: PLC0415

  config = test_vq_task.tiny_config()
  _, state, _, _ = test_vq_task.train(config, steps=0)
  workdir = tmp_path_factory.mktemp('tok') / 'run'
  checkpointing.write_config(workdir, config)
  manager = checkpointing.make_manager(workdir, config.checkpoint)
  checkpointing.save(manager, 0, state, None, config, force=True)
  manager.wait_until_finished()
  manager.close()
  return str(workdir)


@pytest.fixture(scope='module')
def video_file(tmp_path_factory) -> str:
  path = tmp_path_factory.mktemp('video') / 'in.mp4'
  video_io.write_video(path, shapes.generate_example(3, 20, 26, 22).video, fps=10)
  return str(path)


def test_round_trip_through_an_npz_without_pickle(tokenizer_workdir, video_file, tmp_path):
  tokenizer = Tokenizer.load(tokenizer_workdir)
  out = str(tmp_path / 'in.tokens.npz')
  report = tokenize.tokenize_video(tokenizer, video_file, out)
  # 26x22 is cropped to 24x20 (multiples of 4); 20 frames -> 2 chunks of 17.
  assert (report.num_frames, report.height, report.width) == (20, 24, 20)
  arrays = tokenize.read_tokens(out)  # np.load(allow_pickle=False) inside.
  assert arrays['tokens'].shape == (2, 5, 6, 5) and arrays['tokens'].dtype == np.int32
  assert float(arrays['fps']) == pytest.approx(10.0)
  frames = video_io.read_video(video_file)[:, 1:25, 1:21]
  chunks = video_io.pad_frames(frames, 34).reshape(2, 17, 24, 20, 3)
  np.testing.assert_array_equal(arrays['tokens'], np.asarray(tokenizer.encode_uint8(chunks)))
  decoded = tokenizer.decode_uint8(arrays['tokens']).reshape(34, 24, 20, 3)[:20]
  assert report.psnr == pytest.approx(tokenize.psnr(frames, decoded), abs=1e-4)
  assert report.compression_ratio == pytest.approx(20 * 24 * 20 * 3 / (300 * np.log2(1000) / 8))

  back = tokenize.detokenize(tokenizer, out, str(tmp_path / 'out.mp4'))
  assert back.psnr == pytest.approx(report.psnr, abs=1e-4)  # Against the source file.
  assert video_io.read_video(tmp_path / 'out.mp4').shape == (20, 24, 20, 3)
  assert 'compression ratio' in back.summary() and 'PSNR' in back.summary()


def test_resize_and_a_foreign_tokens_file(tokenizer_workdir, video_file, tmp_path):
  tokenizer = Tokenizer.load(tokenizer_workdir)
  out = str(tmp_path / 'small.tokens.npz')
  report = tokenize.tokenize_video(tokenizer, video_file, out, height=16, width=16, max_frames=9)
  assert (report.num_frames, report.height, report.width) == (9, 16, 16)
  np.savez(tmp_path / 'other.npz', tokens=np.zeros((1, 2, 2, 2), np.int32))
  with pytest.raises(ValueError, match='not a videogen tokens file'):
    tokenize.detokenize(tokenizer, str(tmp_path / 'other.npz'), str(tmp_path / 'x.mp4'))


@pytest.mark.integration
def test_cli_prints_ratio_and_psnr(tokenizer_workdir, video_file, tmp_path):
  tokens = str(tmp_path / 'in.tokens.npz')
  result = helpers.run_videogen(
    'tokenize', '--tokenizer', tokenizer_workdir, '--video', video_file, '--out', tokens
  )
  assert 'compression ratio' in result.stdout and 'PSNR' in result.stdout
  result = helpers.run_videogen(
    'detokenize',
    '--tokenizer',
    tokenizer_workdir,
    '--tokens',
    tokens,
    '--out',
    str(tmp_path / 'out.mp4'),
  )
  assert 'PSNR' in result.stdout and (tmp_path / 'out.mp4').is_file()
  missing = helpers.run_videogen(
    'tokenize',
    '--tokenizer',
    tokenizer_workdir,
    '--video',
    str(tmp_path / 'nope.mp4'),
    '--out',
    tokens,
    check=False,
  )
  assert missing.returncode == 2  # A missing input is a usage error (videogen/cli_checks.py).
  assert missing.stderr.strip().splitlines()[-1].startswith('videogen tokenize: error: ')
