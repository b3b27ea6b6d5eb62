"""Unicode and over-long prompts pass the CLI checks and sample."""

import json

import jax
import numpy as np
from flax import nnx

from tests import helpers
from videogen.transformer.model import Transformer

PROMPTS = [
  'un cercle rouge qui se déplace à gauche — 赤い円 🎥',
  ' '.join(['a red circle moving left'] * 400),  # ~2400 words: far past text.max_length.
  '\u200b\t',  # Zero-width space and a tab: no real token.
]


def test_unicode_and_long_prompts_sample_from_the_command_line(tmp_path):
  config = helpers.toy_transformer_config(str(tmp_path / 'data'))
  model = helpers.toy_inference(config, tmp_path)
  params = jax.jit(
    lambda: nnx.split(Transformer(model.spec, rngs=nnx.Rngs(0)), nnx.Param, ...)[1]
  )()
  model.params = jax.device_put(params, jax.devices()[0])
  model.export(tmp_path / 'model')
  prompts_file = tmp_path / 'prompts.txt'
  prompts_file.write_text(PROMPTS[1] + '\n', encoding='utf-8')
  out = tmp_path / 'out'
  result = helpers.run_videogen(
    'sample',
    '--model',
    str(tmp_path / 'model'),
    '--prompt',
    PROMPTS[0],
    '--prompt',
    PROMPTS[2],
    '--prompts_file',
    str(prompts_file),
    '--out',
    str(out),
    '--seed',
    '1',
  )
  assert 'Traceback' not in result.stderr
  videos = np.load(out / 'samples.npy')
  assert videos.shape[0] == 3 and videos.dtype == np.uint8
  assert json.loads((out / 'prompts.json').read_text(encoding='utf-8')) == [
    PROMPTS[0],
    PROMPTS[2],
    PROMPTS[1],
  ]
