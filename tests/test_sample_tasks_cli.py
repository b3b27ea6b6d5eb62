"""`videogen sample --task X`: missing or misplaced task inputs are one-line errors;
an exported multi-task model samples each task from the command line."""

import dataclasses
import json
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from absl import flags
from flax import nnx
from PIL import Image

from tests import helpers
from videogen import cli, config_lib
from videogen.data import video_io
from videogen.transformer import candidates, tasks
from videogen.transformer.inference import SamplingSettings, TextToVideo
from videogen.transformer.model import Transformer


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp('task_inputs')
  run = root / 'run'
  (run / 'checkpoints').mkdir(parents=True)
  (run / 'config.json').write_text(json.dumps({'stage': 'transformer'}))
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(root / 'frame.png')
  mask = np.zeros((16, 16), np.uint8)
  mask[4:12, 4:12] = 255
  Image.fromarray(mask).save(root / 'mask.png')
  video_io.write_video(root / 'clip.gif', rng.integers(0, 256, (5, 16, 16, 3), np.uint8))
  (root / 'notes.txt').write_text('not a video\n')
  return {
    'run': str(run),
    'frame': str(root / 'frame.png'),
    'mask': str(root / 'mask.png'),
    'clip': str(root / 'clip.gif'),
    'text': str(root / 'notes.txt'),
    'root': root,
  }


def _main(args, capsys):
  """`videogen ARGS` in this process: (exit code, stderr)."""
  flags.FLAGS.unparse_flags()
  try:
    cli.main(cli._flags_parser(['videogen', *args]))  # noqa: SLF001
    code = 0
  except SystemExit as exited:
    code = exited.code
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr().err


# (arguments after `sample --model RUN --out OUT`, text the one error line holds)
CASES = [
  (['--task', 'interpolate', '--prompt', 'p', '--first_frame', '{frame}'], 'needs --last_frame'),
  (['--task', 'i2v', '--prompt', 'p'], '--task i2v needs --first_frame'),
  (['--task', 'inpaint', '--prompt', 'p', '--video', '{clip}'], 'needs --mask M.png or --box'),
  (
    [
      '--task',
      'inpaint',
      '--prompt',
      'p',
      '--video',
      '{clip}',
      '--mask',
      '{mask}',
      '--box',
      '0,1,0,4,0,4',
    ],
    'needs --mask M.png or --box',
  ),
  (
    ['--task', 'inpaint', '--prompt', 'p', '--video', '{clip}', '--box', '0,1,4'],
    '--box=0,1,4: give',
  ),
  (['--task', 'inpaint', '--prompt', 'p', '--video', '{clip}', '--box', '2,1,0,4,0,4'], 't0 < t1'),
  (['--task', 'outpaint', '--prompt', 'p'], '--task outpaint needs --video'),
  (['--task', 'restore', '--prompt', 'p'], '--task restore needs --video'),
  (['--task', 'predict', '--prompt', 'p'], '--task predict needs --video'),
  (['--task', 'restyle', '--video', '{clip}'], '--task restyle needs --prompt'),
  (['--task', 'uncond', '--prompt', 'p'], '--task uncond takes no --prompt'),
  (
    ['--task', 'restore', '--prompt', 'p', '--video', '{clip}', '--mask', '{mask}'],
    '--mask is not used by --task restore',
  ),
  (['--task', 'uncond', '--video', '{clip}'], '--video is not used by --task uncond'),
  (['--task', 'predict', '--prompt', 'p', '--video', '{text}'], 'not a readable video'),
  (
    [
      '--task',
      'interpolate',
      '--prompt',
      'p',
      '--first_frame',
      '{frame}',
      '--last_frame',
      '{text}',
    ],
    'not a readable image',
  ),
  (['--prompt', 'p', '--video', '{clip}'], '--video is not used by --task t2v'),
  (['--prompt', 'p', '--temperature', '-1'], '--temperature=-1.0: must be >= 0'),
  (
    ['--prompt', 'p', '--first_frame_temperature', '-0.5'],
    '--first_frame_temperature=-0.5: must be >= 0',
  ),
  (['--task', 'restyle', '--prompt', 'p', '--video', '{clip}', '--candidates', '0'], '>= 1'),
]


@pytest.mark.parametrize('index', range(len(CASES)))
def test_task_without_its_inputs_is_a_one_line_usage_error(files, capsys, index):
  extra, expected = CASES[index]
  args = ['sample', '--model', files['run'], '--out', str(files['root'] / 'out')]
  args += [a.format(**files) for a in extra]
  code, err = _main(args, capsys)
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2, err
  assert len(lines) == 1 and lines[0].startswith('videogen sample: error: '), err
  assert expected in lines[0], lines[0]


def _export(config, frozen, out):
  model = Transformer(
    TextToVideo(config, frozen.tokenizer, frozen.text_encoder).spec, rngs=nnx.Rngs(0)
  )
  params = nnx.split(model, nnx.Param, ...)[1]
  TextToVideo(config, frozen.tokenizer, frozen.text_encoder, params).export(out)


def test_sample_each_task_from_an_exported_model(files, capsys, tmp_path):
  weights = {f'model.tasks.{name}': 1.0 for name in tasks.TASKS}
  config = helpers.toy_transformer_config(str(tmp_path / 'data'), **weights)
  frozen = helpers.toy_inference(config, tmp_path / 'frozen')
  _export(config, frozen, tmp_path / 'multitask')
  t2v_config = helpers.toy_transformer_config(str(tmp_path / 'data'))
  _export(t2v_config, frozen, tmp_path / 't2v')
  base = ['sample', '--model', str(tmp_path / 'multitask'), '--top_k', '1']
  runs = {
    'uncond': ['--num_samples', '2'],
    'interpolate': [
      '--prompt',
      'a red circle',
      '--first_frame',
      files['frame'],
      '--last_frame',
      files['frame'],
    ],
    'inpaint': ['--prompt', 'a red circle', '--video', files['clip'], '--box', '0,3,4,12,4,12'],
    'outpaint': ['--prompt', 'a red circle', '--video', files['clip']],
    'restyle': ['--prompt', 'a red circle', '--video', files['clip']],
  }
  for task, extra in runs.items():
    out = tmp_path / task
    code, err = _main([*base, '--task', task, '--out', str(out), *extra], capsys)
    assert code == 0, err
    videos = np.load(out / 'samples.npy')
    assert videos.shape == (2 if task == 'uncond' else 1, 5, 16, 16, 3), task
  code, err = _main(
    [
      *base,
      '--task',
      'inpaint',
      '--prompt',
      'p',
      '--video',
      files['clip'],
      '--box',
      '0,9,0,4,0,4',
      '--out',
      str(tmp_path / 'x'),
    ],
    capsys,
  )
  assert code == 2 and 'reaches past the video (5 frames of 16x16 pixels)' in err, err
  code, err = _main(
    [
      'sample',
      '--model',
      str(tmp_path / 't2v'),
      '--task',
      'restore',
      '--prompt',
      'p',
      '--video',
      files['clip'],
      '--out',
      str(tmp_path / 'y'),
    ],
    capsys,
  )
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2 and len(lines) == 1, err
  assert 'trained on t2v, not restore' in lines[0], err


_SAMPLE_EVERY_TASK = """
import sys
import jax
import numpy as np
from videogen.transformer import candidates, tasks
from videogen.transformer.inference import TextToVideo

assert jax.device_count() == 1, jax.devices()
model = TextToVideo.load(sys.argv[1])
assert model.spec.tasks == tasks.TASKS
rng = np.random.default_rng(0)
clip = rng.integers(0, 256, (5, 16, 16, 3), np.uint8)
mask = np.zeros((16, 16), bool)
mask[:8] = True
inputs = {
  'i2v': dict(image=clip[0]),
  'interpolate': dict(image=clip[0], last_frame=clip[-1]),
  'inpaint': dict(video=clip, mask=mask),
  **{name: dict(video=clip) for name in ('predict', 'outpaint', 'restore', 'restyle')},
}
settings = model.default_settings(top_k=1, cfg_scale=1.0)
for task in tasks.TASKS:
  videos = model.run_task(task, ['a red circle moving left'], settings, **inputs.get(task, {}))
  assert videos.shape == (1, 5, 16, 16, 3), (task, videos.shape)
print('sampled', ' '.join(tasks.TASKS))
"""


def test_checkpoint_trained_on_8_devices_samples_every_task_on_1(multitask_run):
  import os  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415

  assert jax.device_count() == 8  # The session's devices, which trained `multitask_run`.
  env = dict(os.environ, JAX_NUM_CPU_DEVICES='1', XLA_FLAGS='')
  result = subprocess.run(
    [sys.executable, '-c', _SAMPLE_EVERY_TASK, str(multitask_run)],
    capture_output=True,
    text=True,
    env=env,
    cwd=helpers.REPO,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'sampled t2v uncond i2v' in result.stdout


def test_multitask_config_samples_each_task_at_its_own_settings():
  config = config_lib.load_config_file(str(helpers.CONFIGS / 'shapes' / 'multitask.py'))
  for task in tasks.TASKS:
    settings = SamplingSettings.from_config(config.sampling, task)
    # Free generation places its objects at 1.0 and sharpens them at 0.1; the tasks that
    # generate new frames sample at 0.2, those whose canvas is the whole clip at their own
    # temperature; every task with a pixel input keeps the best of 16 samples (restore of 32),
    # uncond the steadiest of 8; in/outpaint refine theirs over two sweeps (tokens of p >= 0.1).
    expected = {'t2v': (0.1, 0, 1.0), 'uncond': (0.1, 0, 1.0), 'i2v': (1.0, 0, None)}
    expected.update({'predict': (0.2, 0, None), 'interpolate': (0.2, 0, None)})
    expected.update({'inpaint': (0.5, 0, None), 'outpaint': (1.0, 0, None)})
    expected.update({'restore': (0.3, 0, None), 'restyle': (1.0, 0, None)})
    got = (settings.temperature, settings.top_k, settings.first_frame_temperature)
    assert got == expected[task], task
    ranked = {'uncond': 8, 'restore': 32}.get(task, 16)
    assert settings.candidates == (ranked if task in candidates.RANKED_TASKS else 1), task
    assert settings.candidate_search == ('frame' if task in ('restore', 'restyle') else 'clip')
    refined = task in ('inpaint', 'outpaint')
    assert (settings.refine, settings.refine_min_prob) == ((2, 0.1) if refined else (0, 0)), task
    settings.check()
    # Fields not set per task are shared; restore alone is unguided.
    assert settings.cfg_scale == (1.0 if task == 'restore' else config.sampling.cfg_scale)
  # A flag wins over the task's field; the task's other fields stay.
  flagged = SamplingSettings.from_config(config.sampling, 'interpolate', top_k=3)
  assert (flagged.temperature, flagged.top_k) == (0.2, 3)
  flagged = SamplingSettings.from_config(config.sampling, 't2v', first_frame_temperature=0.4)
  assert (flagged.temperature, flagged.first_frame_temperature) == (0.1, 0.4)
  # A config saved before the field existed (no first_frame_temperature): the temperature.
  old = SamplingSettings.from_config(ml_collections.ConfigDict(_SHARED), 't2v')
  assert old.first_frame_temperature is None
  with pytest.raises(ValueError, match='first_frame_temperature=-0.5 must be >= 0'):
    SamplingSettings(first_frame_temperature=-0.5).check()


def test_per_task_settings_travel_with_the_export_and_the_cli_flags_win(files, capsys, tmp_path):
  # Greedy (temperature 0) for restyle and top-k 1 for t2v; every other task samples at
  # the shared temperature 1.0. Samples then equal across seeds only where the
  # per-task setting was used.
  per_task = {'restyle': {'temperature': 0.0}, 't2v': {'top_k': 1}}
  config = helpers.toy_transformer_config(
    str(tmp_path / 'data'),
    **{f'model.tasks.{name}': 1.0 for name in tasks.TASKS},
    **{'sampling.temperature': 1.0, 'sampling.top_k': 0, 'sampling.per_task': per_task},
  )
  frozen = helpers.toy_inference(config, tmp_path / 'frozen')
  _export(config, frozen, tmp_path / 'model')
  assert (
    json.loads((tmp_path / 'model' / 'config.json').read_text())['sampling']['per_task'] == per_task
  )
  model = TextToVideo.load(tmp_path / 'model')
  assert model.default_settings('restyle').temperature == 0.0
  assert model.default_settings('t2v').top_k == 1
  assert (model.default_settings('restore').temperature, model.default_settings().top_k) == (1, 0)

  def sample(name, *extra):
    args = ['sample', '--model', str(tmp_path / 'model'), '--prompt', 'a red circle']
    code, err = _main([*args, *extra, '--out', str(tmp_path / name)], capsys)
    assert code == 0, err
    return np.load(tmp_path / name / 'samples.npy')

  restyle = ['--task', 'restyle', '--video', files['clip']]
  greedy = sample('restyle_1', *restyle, '--seed', '1')
  np.testing.assert_array_equal(greedy, sample('restyle_2', *restyle, '--seed', '2'))
  flagged = sample('restyle_t1', *restyle, '--seed', '2', '--temperature', '1.0')
  assert np.abs(flagged.astype(int) - greedy).max() > 0  # --temperature wins over per_task.
  restore = ['--task', 'restore', '--video', files['clip']]
  assert (
    np.abs(
      sample('restore_1', *restore, '--seed', '1').astype(int)
      - sample('restore_2', *restore, '--seed', '2')
    ).max()
    > 0
  )  # No per-task entry: the shared temperature 1.0.
  # Best of 3 needs a temperature (restyle's is 0 here) and a task with a pixel input.
  best = sample('restyle_best', *restyle, '--temperature', '1.0', '--candidates', '3')
  assert best.shape == greedy.shape
  by_frame = ['--temperature', '1.0', '--candidates', '2', '--candidate_search', 'frame']
  assert sample('restyle_by_frame', *restyle, *by_frame).shape == greedy.shape
  inpaint = ['--task', 'inpaint', '--video', files['clip'], '--mask', files['mask']]
  refined = ['--refine', '1', '--refine_top_k', '2']
  assert sample('inpaint_refined', *inpaint, *refined).shape == greedy.shape
  interpolate = ['--task', 'interpolate', '--first_frame', files['frame']]
  interpolate += ['--last_frame', files['frame']]
  for extra, expected in (
    (restyle + ['--candidates', '3'], 'candidates=3 needs temperature > 0'),
    (['--candidates', '2'], 'candidates=2: t2v draws one sample'),
    (interpolate + by_frame, "candidate_search='frame': interpolate is ranked on whole clips"),
    (['--refine', '1'], 'refine=1: t2v has no pixel condition to refine its sample against'),
    (inpaint + ['--refine', '-1'], 'refine=-1: give an integer >= 0 (0 = off)'),
    (inpaint + ['--refine', '1', '--refine_top_k', '0'], 'refine_top_k=0: give an integer >= 1'),
    (inpaint + ['--refine_min_prob', '1.5'], 'refine_min_prob=1.5: give a probability in [0, 1)'),
  ):
    args = ['sample', '--model', str(tmp_path / 'model'), '--prompt', 'a red circle']
    code, err = _main([*args, *extra, '--out', str(tmp_path / 'bad')], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
  _check_frame_search(model, files)
  _check_refine(model, files)
  top1 = sample('t2v_1', '--seed', '1')  # No --task: t2v's entry all the same.
  np.testing.assert_array_equal(top1, sample('t2v_2', '--seed', '2'))
  assert np.abs(sample('t2v_k0', '--seed', '2', '--top_k', '0').astype(int) - top1).max() > 0
  spoiled = tmp_path / 'spoiled'  # An export whose config.json was edited by hand.
  shutil.copytree(tmp_path / 'model', spoiled)
  exported = json.loads((spoiled / 'config.json').read_text())
  exported['sampling']['per_task'] = {'restyle': {'temp': 0.5}}
  (spoiled / 'config.json').write_text(json.dumps(exported))
  code, err = _main(
    ['sample', '--model', str(spoiled), '--prompt', 'p', '--out', str(tmp_path / 'z')], capsys
  )
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 1 and len(lines) == 1, err
  assert 'videogen sample: error: config.sampling.per_task.restyle.temp: unknown field' in err


def _check_frame_search(model, files):
  """Restore's best of 3 by latent frame: its first latent frame is the best of the
  first latent frames of the 3 whole-clip candidates, the first being the plain sample."""
  clip = video_io.read_video(files['clip'])
  first = candidates.condition('restore', clip).first_frames(1)  # The first latent frame's.
  plain = SamplingSettings(temperature=1.0, seed=3)
  canvas, _ = model._condition('restore', video=clip)  # noqa: SLF001
  drawn = [
    model._generate(  # noqa: SLF001
      ['a red circle'], plain, 1, task='restore', canvas=lambda rows: canvas, candidate=k
    )
    for k in range(3)
  ]
  by_frame = model.restore(
    ['a red circle'], clip, dataclasses.replace(plain, candidates=3, candidate_search='frame')
  )
  best_first = min(float(candidates.errors(d[:, :1], first)[0]) for d in drawn)
  assert float(candidates.errors(by_frame[:, :1], first)[0]) == pytest.approx(best_first)
  one = dataclasses.replace(plain, candidate_search='frame')  # One sample: no search.
  np.testing.assert_array_equal(model.restore(['a red circle'], clip, one), drawn[0])


def _check_refine(model, files):
  """Inpaint refined over a sweep reproduces the given pixels better than the plain
  sample it starts from (the editable tokens alone change: test_transformer_refine);
  refine=0, or a probability floor no token reaches, gives the plain sample."""
  clip = video_io.read_video(files['clip'])
  mask = np.asarray(Image.open(files['mask'])) > 0
  plain = SamplingSettings(temperature=1.0, seed=3)
  condition = model._ranking_condition('inpaint', video=clip, mask=mask)  # noqa: SLF001
  before = model.inpaint(['a red circle'], clip, mask, plain)
  after = model.inpaint(
    ['a red circle'], clip, mask, dataclasses.replace(plain, refine=1, refine_top_k=3)
  )
  assert np.abs(after.astype(int) - before).max() > 0  # Some edit was kept.
  assert candidates.errors(after, condition)[0] < candidates.errors(before, condition)[0]
  refine_0 = model.inpaint(['a red circle'], clip, mask, dataclasses.replace(plain, refine=0))
  np.testing.assert_array_equal(refine_0, before)
  # The toy model spreads its guesses thin: no token reaches a probability of 0.5, so
  # with that floor no edit is tried.
  floored = dataclasses.replace(plain, refine=1, refine_top_k=3, refine_min_prob=0.5)
  np.testing.assert_array_equal(model.inpaint(['a red circle'], clip, mask, floored), before)


_BAD_PER_TASK = """
from videogen import config_lib


def get_config(arg=None):
  config = config_lib.load_config_file({path!r})
  with config.unlocked():
    config.sampling.per_task = {per_task!r}
  return config
"""


def _train_error_line(capsys, tmp_path, config_text: str) -> str:
  """The one stderr line of `videogen train` on a config file of `config_text` (exit 2,
  no run directory made)."""
  config_file = tmp_path / 'bad.py'
  config_file.write_text(config_text)
  code, err = _main(
    ['train', '--config', str(config_file), '--workdir', str(tmp_path / 'run')], capsys
  )
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2 and len(lines) == 1, err
  assert not (tmp_path / 'run').exists()
  return lines[0]


@pytest.mark.parametrize(
  'per_task, expected',
  [
    (
      {'inpainting': {'temperature': 0.4}},
      'config.sampling.per_task.inpainting: unknown task; valid: i2v, inpaint, interpolate,',
    ),
    (
      {'restore': {'candidate_search': 'frames'}},
      "config.sampling.per_task.restore.candidate_search='frames': valid: clip, frame",
    ),
    (
      {'outpaint': {'refine': -2}},
      'config.sampling.per_task.outpaint.refine=-2: give an integer >= 0 (0 = off)',
    ),
    (
      {'inpaint': {'refine_min_prob': -0.1}},
      'config.sampling.per_task.inpaint.refine_min_prob=-0.1: give a probability in [0, 1)',
    ),
    (
      {'inpaint': {'temprature': 0.4}},
      'config.sampling.per_task.inpaint.temprature: unknown field; '
      'valid: cfg_scale, temperature, first_frame_temperature, top_k, top_p',
    ),
  ],
)
def test_a_bad_per_task_setting_is_a_one_line_error(capsys, tmp_path, per_task, expected):
  multitask = str(helpers.CONFIGS / 'shapes' / 'multitask.py')
  line = _train_error_line(
    capsys, tmp_path, _BAD_PER_TASK.format(path=multitask, per_task=per_task)
  )
  assert line.startswith('videogen train: error: ') and expected in line, line
  with pytest.raises(ValueError, match=re.escape(expected.split(';')[0])):
    SamplingSettings.from_config(ml_collections.ConfigDict({**_SHARED, 'per_task': per_task}))


_BAD_WEIGHTS = """
from videogen import config_lib

def get_config():
  config = config_lib.load_config_file({path!r})
  config.model.tasks.update({weights!r})
  return config
"""


@pytest.mark.parametrize(
  'weights, expected',
  [
    ({'restore': -1.0}, "Task weights must be >= 0; got ['restore']"),
    (dict.fromkeys(tasks.TASKS, 0.0), 'at least one task needs a weight > 0'),
  ],
)
def test_a_bad_task_weight_is_a_one_line_error(capsys, tmp_path, weights, expected):
  multitask = str(helpers.CONFIGS / 'shapes' / 'multitask.py')
  line = _train_error_line(capsys, tmp_path, _BAD_WEIGHTS.format(path=multitask, weights=weights))
  assert line.startswith('videogen train: error: config.model.tasks: '), line
  assert expected in line, line


_BAD_SEARCH = """
from videogen import config_lib

def get_config():
  config = config_lib.load_config_file({path!r})
  config.sampling.candidate_search = 'best'
  return config
"""


def test_an_unknown_candidate_search_is_a_one_line_error(capsys, tmp_path):
  multitask = str(helpers.CONFIGS / 'shapes' / 'multitask.py')
  line = _train_error_line(capsys, tmp_path, _BAD_SEARCH.format(path=multitask))
  assert line == (
    "videogen train: error: config.sampling.candidate_search='best': valid: clip, frame"
  ), line
  with pytest.raises(ValueError, match="candidate_search='best': valid: clip, frame"):
    SamplingSettings(candidate_search='best').check()


_BAD_NOISE = """
from videogen import config_lib

def get_config():
  config = config_lib.load_config_file({path!r})
  config.model.input_token_noise = {noise!r}
  return config
"""


@pytest.mark.parametrize('noise', [-0.1, 1.0])
def test_input_token_noise_out_of_range_is_a_one_line_error(capsys, tmp_path, noise):
  multitask = str(helpers.CONFIGS / 'shapes' / 'multitask.py')
  line = _train_error_line(capsys, tmp_path, _BAD_NOISE.format(path=multitask, noise=noise))
  assert line == (
    f'videogen train: error: config.model.input_token_noise={noise}: '
    'give a probability in [0, 1) (0 = off)'
  ), line


def test_an_unknown_input_token_noise_task_is_a_one_line_error(capsys, tmp_path):
  multitask = str(helpers.CONFIGS / 'shapes' / 'multitask.py')
  source = _BAD_NOISE.format(path=multitask, noise=0.1).replace(
    '  return config',
    "  config.model.input_token_noise_tasks = 'restore,colorize'\n  return config",
  )
  line = _train_error_line(capsys, tmp_path, source)
  assert line == (
    'videogen train: error: config.model.input_token_noise_tasks=restore,colorize: Unknown '
    "tasks ['colorize']; valid: t2v,uncond,i2v,predict,interpolate,inpaint,outpaint,"
    'restore,restyle'
  ), line


@pytest.mark.parametrize(
  ('config', 'copy_tasks', 'message'),
  [
    (
      'multitask.py',
      'restore,restor',
      "Unknown tasks ['restor']; valid: t2v,uncond,i2v,predict,interpolate,inpaint,outpaint,"
      'restore,restyle',
    ),
    (
      'transformer.py',
      'restore',
      'a text-to-video model has no canvas to copy; give config.model.tasks a task besides '
      "t2v, or set it to ''",
    ),
  ],
)
def test_a_bad_copy_canvas_task_list_is_a_one_line_error(
  capsys, tmp_path, config, copy_tasks, message
):
  path = str(helpers.CONFIGS / 'shapes' / config)
  source = _BAD_NOISE.format(path=path, noise=0.0).replace(
    '  return config', f'  config.model.copy_canvas_tasks = {copy_tasks!r}\n  return config'
  )
  line = _train_error_line(capsys, tmp_path, source)
  assert line == (
    f'videogen train: error: config.model.copy_canvas_tasks={copy_tasks}: {message}'
  ), line


_SHARED = dict(cfg_scale=1.0, temperature=1.0, top_k=0, top_p=1.0, seed=0, window_prefix_frames=1)
