"""Shared test helpers: tiny configs for end-to-end runs of both stages."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
from flax import nnx
from videogen.configs import common

from videogen import config_lib, vq
from videogen.data import config as data_config
from videogen.eval import i3d
from videogen.parallel import compilation
from videogen.vq import config as vq_config
from videogen.vq.model import VideoAutoencoder

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = REPO / 'configs'

# Overrides that shrink the shapes configs to seconds per step on one CPU core.
TINY_DATA = {
  'data.num_frames': 5,
  'data.height': 16,
  'data.width': 16,
  'data.num_train_examples': 32,
  'data.num_test_examples': 8,
  'data.max_objects': 1,
}
TINY_TOKENIZER = {
  **TINY_DATA,
  'batch_size': 8,
  'model.channels': 8,
  'model.channel_multipliers': (1, 1, 1, 1),
  'model.norm_groups': 4,
  'model.spatial_downsample': 4,
  'optimizer.warmup_steps': 1,
}


def tiny_config(stage: str, data_dir: str, **overrides):
  """A shapes config shrunk for tests, with `overrides` applied (dotted keys)."""
  config = config_lib.load_config_file(f'{CONFIGS / "shapes" / stage}.py:size=tiny,runlocal')
  values = dict(TINY_TOKENIZER if stage == 'tokenizer' else TINY_DATA)
  values['data.data_dir'] = data_dir
  values.update(overrides)
  config_lib.apply_overrides(config, values)
  return config


def toy_tokenizer_model_config():
  """A toy FSQ tokenizer: 4x spatial / 4x temporal compression, 1000 codes."""
  config = vq_config.model_config('tiny')
  config.update(
    channels=8,
    channel_multipliers=(1, 1, 1),
    norm_groups=4,
    spatial_downsample=4,
    num_res_blocks=1,
  )
  return config


def random_tokenizer() -> vq.Tokenizer:
  """An untrained toy tokenizer: clips of 5x16x16 -> 2x4x4 tokens of 1000 codes."""
  config = toy_tokenizer_model_config()
  graphdef = nnx.split(nnx.eval_shape(lambda: VideoAutoencoder(config, rngs=nnx.Rngs(0))))[0]
  state = compilation.run_once(
    lambda key: nnx.split(VideoAutoencoder(config, rngs=nnx.Rngs(params=key)))[1],
    jax.random.key(0, impl='unsafe_rbg'),
  )
  # Committed to one device, as `Tokenizer.load` leaves a restored tokenizer.
  return vq.Tokenizer(graphdef, jax.device_put(state, jax.devices()[0]), config)


def toy_inference(config, workdir):
  """The transformer's frozen encoders at toy size, as a weightless `TextToVideo`:
  `random_tokenizer()` and the offline default T5 built from the (built on first
  use) dataset's captions."""
  from videogen import text  # noqa: PLC0415
  from videogen.data import build, pipeline  # noqa: PLC0415
  from videogen.transformer.inference import TextToVideo  # noqa: PLC0415

  build.ensure_built(config.data)
  encoder = text.load_text_encoder(
    config.text,
    workdir=workdir,
    captions=pipeline.split_captions(config, config.data.train_split),
  )
  return TextToVideo(config, random_tokenizer(), encoder)


def toy_transformer_config(data_dir, **overrides):
  """A tiny transformer config over 5x16x16 clips; the tokenizer is a test double."""
  data = data_config.data_config('shapes', num_frames=5, resolution=16)
  data.data_dir = data_dir
  data.num_train_examples = 16
  data.num_test_examples = 8
  data.max_objects = 1
  config = common.transformer_experiment('tiny', data)
  config.batch_size = 8
  config.num_train_steps = 2
  config.tokenizer.checkpoint = '/unused/the/tokenizer/is/a/test/double'
  config.tokenizer.cache_tokens = False
  config.model.update(
    num_layers=2,
    embed_dim=32,
    num_heads=4,
    num_kv_heads=2,
    mlp_dim=64,
    dropout=0.1,
    remat_policy='full',
  )
  config.optimizer.ema_decay = 0.9
  config.sampling.num_prompts = 2
  config.text.max_length = 12
  return config_lib.lock(config_lib.apply_overrides(config, overrides))


def train_toy_multitask(root: pathlib.Path, **overrides) -> pathlib.Path:
  """A `toy_transformer_config` run trained on every task (weights 1.0) at `root`/run.

  The run keeps a copy of `random_tokenizer()` and trains `num_train_steps` (2)
  steps without sampling; `overrides` (dotted keys) apply on top.

  Returns:
    The workdir, loadable with `TextToVideo.load`.
  """
  from videogen import stages  # noqa: PLC0415
  from videogen.transformer import tasks  # noqa: PLC0415

  weights = {f'model.tasks.{name}': 1.0 for name in tasks.TASKS}
  config = toy_transformer_config(
    str(root / 'data'), **weights, **{'sampling.num_prompts': 0, **overrides}
  )
  frozen = toy_inference(config, root / 'frozen')
  workdir = root / 'run'
  frozen.tokenizer.export(workdir / 'tokenizer')  # The copy a run keeps of its tokenizer.
  stages.train(config, str(workdir))
  return workdir


def random_i3d_weights(seed=0):
  """Random I3D weights by key (numpy: building the NNX model's own init is slow)."""
  rng = np.random.default_rng(seed)
  weights = {}
  for key, abstract in i3d.flat_state(i3d.abstract_model()).items():
    shape = abstract.shape
    if key.endswith('conv/kernel'):
      fan_in = np.prod(shape[:-1])
      value = rng.normal(0, 1 / np.sqrt(fan_in), shape)
    elif key.endswith('bn/var'):
      value = rng.uniform(0.5, 1.5, shape)
    else:
      value = rng.normal(0, 0.1, shape)
    weights[key] = value.astype(np.float32)
  return weights


NOTEBOOKS = REPO / 'colabs'


def run_notebook(name: str, parameters: dict, tmp_path: pathlib.Path):
  """Executes colabs/`name` (outputs must be cleared in the repo) with `parameters`
  set in a cell after its `parameters` cell (the papermill convention), in a
  kernel working in `tmp_path`; a failing cell raises. The executed notebook is
  kept at `tmp_path`/`name` for a look when a test fails.

  Returns:
    The executed `nbformat.NotebookNode`.
  """
  import nbformat  # noqa: PLC0415
  from nbclient import NotebookClient  # noqa: PLC0415

  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  for cell in notebook.cells:
    assert not cell.get('outputs'), f'{name}: outputs must be cleared in the repo'
  index = next(
    i for i, c in enumerate(notebook.cells) if 'parameters' in c.metadata.get('tags', [])
  )
  source = '\n'.join(f'{k} = {v!r}' for k, v in parameters.items())
  injected = nbformat.v4.new_code_cell(source)
  injected.metadata['tags'] = ['injected-parameters']
  notebook.cells.insert(index + 1, injected)
  client = NotebookClient(
    notebook,
    timeout=900,
    kernel_name='python3',
    resources={'metadata': {'path': str(tmp_path)}},
  )
  client.execute()
  nbformat.write(notebook, tmp_path / name)
  return notebook


def cell_text(cell) -> str:
  """The text and JSON-dumped data outputs of one executed cell."""
  parts = []
  for output in cell.get('outputs', []):
    parts.append(output.get('text', ''))
    parts.append(json.dumps(output.get('data', {})))
  return '\n'.join(parts)


def notebook_text(notebook) -> str:
  """The outputs of every cell of an executed notebook (see `cell_text`)."""
  return '\n'.join(cell_text(cell) for cell in notebook.cells)


def override_flags(overrides: dict) -> list[str]:
  """`--config.key=value` flags for a subprocess run of `videogen train`."""
  flags = []
  for key, value in overrides.items():
    if isinstance(value, tuple):
      value = '(' + ','.join(str(v) for v in value) + ',)'
    flags.append(f'--config.{key}={value}')
  return flags


def run_videogen(*args, env_update=None, timeout=600, check=True, **popen):
  env = dict(os.environ)
  env.update(env_update or {})
  result = subprocess.run(
    [sys.executable, '-m', 'videogen', *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
    cwd=REPO,
    **popen,
  )
  if check and result.returncode != 0:
    raise AssertionError(f'videogen {" ".join(args)} failed:\n{result.stderr[-6000:]}')
  return result
