"""Bad command lines: one line `videogen <command>: error: ...`, exit 2 or 1, no traceback."""

import json
import os
import subprocess
import sys

import pytest
from absl import flags

from tests import helpers
from videogen import cli, cli_checks
from videogen.train import checkpointing

TOKENIZER_CONFIG = 'configs/shapes/tokenizer.py:runlocal'


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """Runs and files the bad inputs point at (nothing here needs a trained model)."""
  root = tmp_path_factory.mktemp('inputs')
  paths = {}
  for name, stage in (('transformer_run', 'transformer'), ('tokenizer_run', 'tokenizer')):
    run = root / name
    (run / 'checkpoints').mkdir(parents=True)
    (run / 'config.json').write_text(json.dumps({'stage': stage}))
    paths[name] = str(run)
  (root / 'not_a_run').mkdir()
  paths['not_a_run'] = str(root / 'not_a_run')
  (root / 'notes.txt').write_text('not an image, not a video\n')
  paths['text_file'] = str(root / 'notes.txt')
  (root / 'blank.txt').write_text('\n  \n')
  paths['blank_prompts'] = str(root / 'blank.txt')
  paths['missing'] = str(root / 'missing.png')
  return paths


def _sample(files, *extra):
  return ('sample', '--workdir', files['transformer_run'], '--prompt', 'a red circle', *extra)


# (arguments, exit code, text the one line must hold)
CASES = [
  (
    lambda f: _sample(f, '--num_samples', '0', '--out', '/tmp/o'),
    2,
    '--num_samples=0: must be >= 1',
  ),
  (lambda f: _sample(f, '--top_p', '1.5', '--out', '/tmp/o'), 2, '--top_p=1.5: must be in (0, 1]'),
  (lambda f: _sample(f, '--top_p', '0', '--out', '/tmp/o'), 2, '--top_p=0.0'),
  (lambda f: _sample(f, '--temperature', '-1', '--out', '/tmp/o'), 2, '--temperature=-1.0'),
  (lambda f: _sample(f, '--top_k', '-3', '--out', '/tmp/o'), 2, '--top_k=-3'),
  (lambda f: _sample(f, '--num_frames', '0', '--out', '/tmp/o'), 2, '--num_frames=0'),
  (lambda f: _sample(f, '--num_samples', 'many', '--out', '/tmp/o'), 2, "'many'"),
  (
    lambda f: _sample(f, '--first_frame', f['missing'], '--out', '/tmp/o'),
    2,
    'missing.png: no such file',
  ),
  (
    lambda f: _sample(f, '--first_frame', f['text_file'], '--out', '/tmp/o'),
    2,
    'notes.txt: not a readable image',
  ),
  (
    lambda f: _sample(f, '--prefix_video', f['text_file'], '--out', '/tmp/o'),
    2,
    'notes.txt: not a readable video',
  ),
  (
    lambda f: _sample(f, '--first_frame', f['text_file'], '--prefix_video', f['text_file']),
    2,
    'give --first_frame or --prefix_video, not both',
  ),
  (
    lambda f: _sample(f, '--prompts_file', f['missing'], '--out', '/tmp/o'),
    2,
    '--prompts_file=',
  ),
  (
    lambda f: _sample(f, '--prompts_file', f['blank_prompts'], '--out', '/tmp/o'),
    2,
    'blank.txt: holds no prompt',
  ),
  (lambda f: _sample(f, '--out', f['text_file']), 2, 'notes.txt: is a file'),
  (
    lambda f: ('sample', '--workdir', f['not_a_run'], '--prompt', 'a', '--out', '/tmp/o'),
    2,
    'not_a_run: not a videogen run or export',
  ),
  (
    lambda f: ('sample', '--workdir', f['tokenizer_run'], '--prompt', 'a', '--out', '/tmp/o'),
    2,
    'tokenizer_run: is a tokenizer run; sample needs a transformer',
  ),
  (
    lambda f: ('sample', '--model', f['missing'] + '_dir', '--prompt', 'a', '--out', '/tmp/o'),
    2,
    'missing.png_dir: no such directory',
  ),
  (
    lambda f: (
      'train',
      '--config',
      'configs/shapes/tokenizer.py:size=gigantic',
      '--workdir',
      '/tmp/w',
    ),
    2,
    "size='gigantic' is not valid for configs/shapes/tokenizer.py; valid: tiny, small, base",
  ),
  (
    lambda f: ('train', '--config', TOKENIZER_CONFIG, '--workdir', '/tmp/w', '--prompt', 'hi'),
    2,
    '--prompt is not used by videogen train',
  ),
  (
    lambda f: ('train', '--config', TOKENIZER_CONFIG, '--workdir', f['transformer_run']),
    2,
    'holds a transformer run; this config trains a tokenizer',
  ),
  (
    lambda f: ('eval', '--workdir', f['not_a_run']),
    2,
    'not_a_run: not a videogen run',
  ),
  (
    lambda f: ('eval', '--workdir', f['tokenizer_run'], '--fvd_num_videos', '0'),
    2,
    '--fvd_num_videos=0',
  ),
  (
    lambda f: ('export', '--workdir', f['text_file'], '--out', '/tmp/e'),
    2,
    'notes.txt: is a file, expected a directory',
  ),
  (
    lambda f: ('tokenize', '--tokenizer', f['transformer_run'], '--video', 'x.mp4', '--out', 'o'),
    2,
    'is a transformer run; give a tokenizer',
  ),
  (
    lambda f: (
      'detokenize',
      '--tokenizer',
      f['tokenizer_run'],
      '--tokens',
      f['missing'],
      '--out',
      'o.mp4',
    ),
    2,
    'missing.png: no such file',
  ),
  (
    lambda f: ('compile', '--config', TOKENIZER_CONFIG, '--topology', 'v5e-8', '--num_slices', '0'),
    2,
    '--num_slices=0',
  ),
  (lambda f: ('serve', '--model', f['tokenizer_run']), 2, 'is a tokenizer run; serve needs'),
  (
    lambda f: ('serve', '--model', f['transformer_run'], '--prompt', 'a'),
    2,
    '--prompt is not used by videogen serve',
  ),
  (
    lambda f: ('build-dataset', '--config', TOKENIZER_CONFIG, '--workdir', '/tmp/w'),
    2,
    '--workdir is not used by videogen build-dataset',
  ),
]


def _run_in_process(args, capsys):
  """`videogen ARGS` in this process, up to the point where it would load a model."""
  flags.FLAGS.unparse_flags()
  with pytest.raises(SystemExit) as exited:
    argv = cli._flags_parser(['videogen', *args])  # noqa: SLF001
    cli.main(argv)
  flags.FLAGS.unparse_flags()
  return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize('index', range(len(CASES)))
def test_bad_input_is_one_line_naming_the_value(files, capsys, index):
  make_args, code, expected = CASES[index]
  args = make_args(files)
  exit_code, err = _run_in_process(args, capsys)
  lines = [line for line in err.splitlines() if line.strip()]
  assert exit_code == code, err
  assert len(lines) == 1, err
  assert lines[0].startswith(f'videogen {args[0]}: error: '), lines[0]
  assert expected in lines[0], lines[0]
  assert 'Traceback' not in err


def test_every_command_has_a_flag_table_and_every_flag_is_defined():
  assert set(cli_checks.COMMAND_FLAGS) == set(cli.COMMANDS)
  for command, names in cli_checks.COMMAND_FLAGS.items():
    for name in names:
      assert name in flags.FLAGS, (command, name)


def _videogen(*args, env=None):
  return subprocess.run(
    [sys.executable, '-m', 'videogen', *args],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=helpers.REPO,
    env=dict(os.environ, **(env or {})),
  )


@pytest.fixture(scope='module')
def damaged_run(tmp_path_factory):
  """A tokenizer workdir whose only checkpoint is garbage."""
  root = tmp_path_factory.mktemp('damaged')
  config = helpers.tiny_config('tokenizer', str(root / 'data'))
  checkpointing.write_config(root / 'run', config)
  state = root / 'run' / 'checkpoints' / '4' / 'state'
  state.mkdir(parents=True)
  (state / '_METADATA').write_text('{"truncated')
  return str(root / 'run')


def test_runtime_failure_exits_1_with_one_line_and_traceback_on_request(damaged_run, tmp_path):
  args = ('export', '--workdir', damaged_run, '--out', str(tmp_path / 'export'))
  result = _videogen(*args)
  lines = [line for line in result.stderr.splitlines() if line.startswith('videogen ')]
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  assert len(lines) == 1 and lines[0].startswith('videogen export: error: no checkpoint in ')
  assert 'tried step 4:' in lines[0]
  verbose = _videogen(*args, env={cli_checks.TRACEBACK_ENV: '1'})
  assert verbose.returncode == 1 and 'Traceback' in verbose.stderr


def test_usage_error_in_a_real_process_exits_2(files):
  result = _videogen(
    'sample', '--workdir', files['transformer_run'], '--prompt', 'a', '--num_samples', '0'
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
    'videogen sample: error: --num_samples=0: must be >= 1'
  )
  assert 'Traceback' not in result.stderr


def test_splits_that_cannot_feed_the_run_are_one_line_runtime_errors(tmp_path):
  """`train` checks the splits and num_eval_batches before any step (SplitSizeError);
  num_eval_batches, a config value, before the dataset is even built."""
  from videogen import stages  # noqa: PLC0415
  from videogen.data import pipeline  # noqa: PLC0415

  assert issubclass(pipeline.SplitSizeError, cli_checks.runtime_errors())
  with pytest.raises(pipeline.SplitSizeError, match='num_eval_batches=0'):
    pipeline.check_num_eval_batches(0)
  config = helpers.tiny_config('tokenizer', str(tmp_path / 'data'), num_eval_batches=0)
  with pytest.raises(pipeline.SplitSizeError, match='num_eval_batches=0'):
    stages.train(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'data').exists()
