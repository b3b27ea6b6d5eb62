"""A train step compiled ahead of time for this machine's CPU devices, saved by
`videogen compile --out FILE` and run by `videogen train
--config.compiled_train_step=FILE` without compiling it again.

The transformer's frozen encoders are the toy ones of `helpers.toy_inference`,
named by path (`tokenizer.checkpoint`, `text.path`) so that the compiler sizes
them from their files as it would for a pod run.
"""

import copy
import json

import pytest

from tests import helpers
from videogen import compile as compile_lib
from videogen import config_lib, stages, text
from videogen.train import compiled_step, loop


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  root = tmp_path_factory.mktemp('compiled')
  config = helpers.toy_transformer_config(
    str(root / 'data'), log_every_steps=1, num_eval_batches=1, **{'sampling.num_prompts': 0}
  )
  frozen = helpers.toy_inference(config, root / 'frozen')
  frozen.tokenizer.export(root / 'tokenizer')
  config_lib.apply_overrides(
    config,
    {
      'tokenizer.checkpoint': str(root / 'tokenizer'),
      'text.path': text.encoder_dir(config.text, root / 'frozen'),
    },
  )
  path = str(root / 'train_step.bin')
  summary = compile_lib.compile_local(config, 'cpu', out=path)
  return dict(root=root, config=config, path=path, summary=summary)


def _losses(workdir):
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [record['loss'] for record in map(json.loads, lines) if 'loss' in record]


def test_a_saved_train_step_trains_as_the_loop_own_does(saved, monkeypatch):
  root, config, path = saved['root'], saved['config'], saved['path']
  assert 'train step compiled for 8 cpu devices' in saved['summary']
  record = json.loads((root / 'train_step.bin.json').read_text())
  assert record['topology'] == 'cpu' and record['num_devices'] == 8
  assert record['arguments'] and 'jax' in record and 'config_fingerprint' in record

  reference = stages.train(config, str(root / 'reference'))
  assert reference.compiled_train_step == ''

  def no_compiling(*args, **kwargs):
    raise AssertionError('the loop compiled the train step although one was saved')

  monkeypatch.setattr(loop, 'jit_train_step', no_compiling)
  loaded_config = copy.deepcopy(config)
  config_lib.apply_overrides(loaded_config, {'compiled_train_step': path})
  loaded = stages.train(loaded_config, str(root / 'loaded'))
  assert loaded.compiled_train_step == path and loaded.step == 2
  losses = _losses(root / 'loaded')
  assert len(losses) == 2
  assert losses == _losses(root / 'reference')


def test_a_step_compiled_for_another_config_is_refused_in_one_line(saved):
  config = copy.deepcopy(saved['config'])
  config_lib.apply_overrides(
    config, {'compiled_train_step': saved['path'], 'optimizer.learning_rate': 0.5}
  )
  with pytest.raises(compiled_step.CompiledStepMismatchError) as error:
    stages.train(config, str(saved['root'] / 'mismatch'))
  message = str(error.value)
  assert '\n' not in message
  assert 'config.optimizer.learning_rate was 0.003 there, 0.5 here' in message


def test_videogen_train_names_what_differs_and_exits_1(saved):
  result = helpers.run_videogen(
    'train',
    '--config',
    'configs/shapes/transformer.py:size=tiny',
    '--workdir',
    str(saved['root'] / 'cli'),
    f'--config.compiled_train_step={saved["path"]}',
    f'--config.data.data_dir={saved["root"] / "data"}',
    check=False,
    timeout=300,
  )
  assert result.returncode == 1, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('videogen train:')]
  assert len(errors) == 1, result.stderr[-2000:]
  assert errors[0].startswith(
    f'videogen train: error: config.compiled_train_step {saved["path"]} was compiled for '
    'another run: '
  )
  assert 'recompile it with `videogen compile --topology cpu' in errors[0]
