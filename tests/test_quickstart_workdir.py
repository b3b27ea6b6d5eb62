"""A tiny quickstart workdir, made by colabs/quickstart.ipynb, and what uses it.

The quickstart notebook trains the workdir (tiny overrides injected after its
`parameters` cell, the papermill convention); then the sampling and tokenizer
notebooks run on its two stages (nbclient: a failing cell fails the test),
`videogen eval` evaluates both stages, and a second quickstart resumes. The
trained run is then moved (its original paths and dataset deleted) and
exported, and must sample exactly as before.
"""

import json
import shutil

import numpy as np
import pytest

from tests import helpers
from videogen import export, quickstart, vq, weights
from videogen.eval import i3d
from videogen.eval import run as eval_run
from videogen.transformer import SamplingSettings, TextToVideo

TINY_MODEL = {
  'model.num_layers': 1,
  'model.embed_dim': 32,
  'model.num_heads': 2,
  'model.num_kv_heads': 1,
  'model.mlp_dim': 64,
}
RUN = {'num_train_steps': 2, 'log_every_steps': 1, 'eval_every_steps': 2, 'num_eval_batches': 1}
PROMPTS = ['a red circle moving left', 'a blue square moving up']
OVERRIDES = {
  'tokenizer': {**helpers.TINY_TOKENIZER, **RUN},
  'transformer': {**helpers.TINY_DATA, **TINY_MODEL, **RUN, 'batch_size': 8},
}


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """The quickstart notebook, run on tiny settings: it trains both stages."""
  root = tmp_path_factory.mktemp('quickstart')
  notebook = helpers.run_notebook(
    'quickstart.ipynb',
    {'WORKDIR': str(root / 'run'), 'SAMPLES_PER_PROMPT': 1, 'OVERRIDES': OVERRIDES},
    root,
  )
  text = helpers.notebook_text(notebook)
  assert '"color_accuracy"' in text and 'text/html' in text
  return root / 'run'


def test_quickstart_notebook_trains_both_stages(workdir):
  assert (workdir / 'eval.json').exists()
  assert (workdir / 'samples' / 'samples.npy').exists()


def test_sample_notebook(workdir, tmp_path):
  notebook = helpers.run_notebook(
    'sample.ipynb',
    {
      'MODEL': str(workdir / 'transformer'),
      'NUM_SAMPLES': 2,
      'LONG_VIDEO_CLIPS': 2,
      'CFG_SWEEP': (1.0, 3.0),
    },
    tmp_path,
  )
  text = helpers.notebook_text(notebook)
  assert '(2, 5, 16, 16, 3) uint8' in text  # The text-to-video cell.
  assert '(1, 10, 16, 16, 3)' in text  # The long video: two training clips.
  assert text.count('<img') >= 5  # One video table per section.


def test_tokenizer_notebook(workdir, tmp_path):
  notebook = helpers.run_notebook(
    'tokenizer.ipynb', {'WORKDIR': str(workdir / 'tokenizer'), 'NUM_CLIPS': 2}, tmp_path
  )
  text = helpers.notebook_text(notebook)
  assert 'mean PSNR' in text and 'codes used in these clips' in text
  assert 'image/png' in text  # The PSNR and histogram plots.


def test_eval_tokenizer_workdir_with_rfvd(workdir, tmp_path):
  weights = str(tmp_path / 'i3d.safetensors')
  i3d.save_weights(weights, helpers.random_i3d_weights())
  # A shrunk protocol (5 frames at 32x32) keeps the full I3D fast on CPU.
  result = eval_run.evaluate_workdir(
    str(workdir / 'tokenizer'),
    i3d_weights=weights,
    fvd_num_videos=8,
    fvd_embedder_kwargs={'num_frames': 5, 'resolution': 32, 'batch_size': 4},
  )
  metrics = result.metrics
  assert {'psnr', 'ssim', 'codebook_usage'} <= set(metrics)
  assert isinstance(metrics['rfvd'], float) and metrics['rfvd'] > 0
  assert metrics['rfvd_num_real'] == metrics['rfvd_num_generated'] == 8
  saved = json.loads((workdir / 'tokenizer' / 'eval_test.json').read_text())
  assert saved['rfvd'] == pytest.approx(metrics['rfvd'])
  assert list((workdir / 'data').glob('fvd_stats/*.npz'))  # Real statistics cached.
  assert list((workdir / 'tokenizer' / 'eval').glob('events.out.tfevents.*'))


def test_eval_transformer_workdir_from_the_command_line(workdir):
  result = helpers.run_videogen(
    'eval', '--workdir', str(workdir / 'transformer'), env_update={'VIDEOGEN_I3D_WEIGHTS': ''}
  )
  assert 'transformer workdir at step 2' in result.stdout
  metrics = json.loads((workdir / 'transformer' / 'eval_test.json').read_text())
  assert {'bits_per_token', 'accuracy', 'alignment/color_accuracy'} <= set(metrics)
  assert metrics['fvd'].startswith('unavailable: no I3D weights file given')


def test_rerunning_the_quickstart_resumes(workdir):
  logged = {s: (workdir / s / 'metrics.jsonl').read_text() for s in ('tokenizer', 'transformer')}
  summary = quickstart.run(str(workdir), samples_per_prompt=1, **OVERRIDES)
  for stage, before in logged.items():
    assert weights.latest_step(workdir / stage) == 2
    assert (workdir / stage / 'metrics.jsonl').read_text() == before, f'{stage} trained again'
  assert summary['seconds']['tokenizer_s'] < 60


def _relocate(workdir, root):
  """Copies the quickstart run to `root/original` as if it had been trained there
  (its config names `root/original/tokenizer` and `root/original/data`), then
  copies that to `root/moved` and deletes the original, dataset included."""
  original = root / 'original'
  shutil.copytree(workdir, original, ignore=lambda d, _: ['data'] if d == str(workdir) else [])
  config_file = original / 'transformer' / 'config.json'
  config = json.loads(config_file.read_text())
  config['tokenizer']['checkpoint'] = str(original / 'tokenizer')
  config['data']['data_dir'] = str(original / 'data')
  config_file.write_text(json.dumps(config))
  moved = root / 'moved'
  shutil.copytree(original, moved)
  shutil.rmtree(original)
  return moved


def test_a_moved_run_samples_without_its_original_paths_or_dataset(workdir, tmp_path):
  settings = SamplingSettings(cfg_scale=2.0, top_k=5, seed=3)
  reference = TextToVideo.load(workdir / 'transformer').generate(PROMPTS, settings)
  moved = _relocate(workdir, tmp_path)
  np.testing.assert_array_equal(
    TextToVideo.load(moved / 'transformer').generate(PROMPTS, settings), reference
  )
  # Without the copy inside the workdir, the tokenizer run beside it is found.
  shutil.rmtree(moved / 'transformer' / 'tokenizer')
  np.testing.assert_array_equal(
    TextToVideo.load(moved / 'transformer').generate(PROMPTS, settings), reference
  )
  shutil.rmtree(moved / 'tokenizer')
  with pytest.raises(FileNotFoundError, match='No video tokenizer'):
    TextToVideo.load(moved / 'transformer')


def test_export_samples_equal_the_workdir_bit_for_bit(workdir, tmp_path):
  out = tmp_path / 'model'
  result = helpers.run_videogen(
    'export', '--workdir', str(workdir / 'transformer'), '--out', str(out)
  )
  assert 'Exported the transformer' in result.stdout and 'MiB' in result.stdout
  assert {p.name for p in out.iterdir()} == {
    'config.json',
    'transformer.safetensors',
    'tokenizer',
    'text_encoder',
  }
  assert {p.name for p in (out / 'text_encoder').iterdir()} == {
    'config.json',
    'model.safetensors',
    'spiece.model',
  }
  settings = SamplingSettings(cfg_scale=2.0, temperature=0.7, seed=5)
  model = TextToVideo.load(workdir / 'transformer')
  exported = TextToVideo.load(out)
  for kwargs in ({}, {'image': model.generate(PROMPTS[:1], settings)[0, 0]}):
    np.testing.assert_array_equal(
      exported.generate(PROMPTS, settings, **kwargs), model.generate(PROMPTS, settings, **kwargs)
    )
  # The command-line sampler reads the export the same way.
  samples = tmp_path / 'samples'
  helpers.run_videogen(
    'sample', '--model', str(out), '--prompt', PROMPTS[0], '--seed', '5', '--out', str(samples)
  )
  assert np.load(samples / 'samples.npy').shape == (1, 5, 16, 16, 3)
  # bfloat16 weights: half the transformer file, still a working model.
  half = export.export(str(workdir / 'transformer'), str(tmp_path / 'bf16'), dtype='bfloat16')
  full = (out / 'transformer.safetensors').stat().st_size
  assert half.sizes['transformer'] < 0.6 * full
  assert TextToVideo.load(tmp_path / 'bf16').generate(PROMPTS[:1]).shape == (1, 5, 16, 16, 3)


def test_tokenizer_export_encodes_and_decodes_like_its_workdir(workdir, tmp_path):
  report = export.export(str(workdir / 'tokenizer'), str(tmp_path / 'tokenizer'))
  assert report.stage == 'tokenizer' and report.sizes['total'] > 0
  trained = vq.Tokenizer.load(str(workdir / 'tokenizer'))
  exported = vq.Tokenizer.load(str(tmp_path / 'tokenizer'))
  clips = np.random.default_rng(0).uniform(-1, 1, (2, 5, 16, 16, 3)).astype(np.float32)
  tokens = np.asarray(trained.encode(clips))
  np.testing.assert_array_equal(np.asarray(exported.encode(clips)), tokens)
  np.testing.assert_array_equal(np.asarray(exported.decode(tokens)), trained.decode(tokens))
