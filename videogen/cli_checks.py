"""Input checks of every `videogen` subcommand, run before a model loads or compiles.

`COMMAND_FLAGS` says which flags each subcommand reads; a flag given to one
that ignores it is an error. `VALIDATORS` holds each subcommand's checks
(paths exist and are the right kind, images and videos decode, counts >= 1,
probabilities in range). A new subcommand adds one entry to each table.

Failures are `InputError` (exit 2) or, raised later by the work itself, one
of `RUNTIME_ERRORS` (exit 1); `videogen.cli` prints either as one line
`videogen <command>: error: <what>`, with the traceback only when asked for
(`--verbosity=1` or VIDEOGEN_TRACEBACK=1). Anything else is a bug and keeps
its full traceback.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable

TRACEBACK_ENV = 'VIDEOGEN_TRACEBACK'
# Flags every subcommand accepts (logging, devices).
COMMON_FLAGS = frozenset({'library_logs', 'cpu_devices'})
_DISTRIBUTED = frozenset({'coordinator_address', 'num_processes', 'process_id'})
_SAMPLING = frozenset(
  {
    'model',
    'workdir',
    'prompt',
    'prompts_file',
    'num_samples',
    'cfg_scale',
    'temperature',
    'first_frame_temperature',
    'top_k',
    'top_p',
    'seed',
    'candidates',
    'candidate_search',
    'refine',
    'refine_top_k',
    'refine_min_prob',
    'first_frame',
    'prefix_video',
    'num_frames',
    'out',
    'task',
    'last_frame',
    'video',
    'mask',
    'box',
  }
)
# --task -> the inputs it needs (flags), the inputs it also takes, and whether it reads prompts.
TASK_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
  't2v': ((), ('first_frame', 'prefix_video'), True),
  'uncond': ((), (), False),
  'i2v': (('first_frame',), (), True),
  'predict': (('video',), (), True),
  'interpolate': (('first_frame', 'last_frame'), (), True),
  'inpaint': (('video',), ('mask', 'box'), True),
  'outpaint': (('video',), (), True),
  'restore': (('video',), (), True),
  'restyle': (('video',), (), True),
}
_TASK_FLAGS = ('first_frame', 'prefix_video', 'last_frame', 'video', 'mask', 'box')
# Subcommand -> the videogen flags it reads (besides COMMON_FLAGS). `config`
# covers its `--config.key=value` overrides.
COMMAND_FLAGS: dict[str, frozenset[str]] = {
  'quickstart': frozenset({'workdir'}),
  'train': frozenset({'config', 'workdir'}) | _DISTRIBUTED,
  'sample': _SAMPLING | _DISTRIBUTED,
  'eval': frozenset({'workdir', 'split', 'i3d_weights', 'fvd_num_videos'}) | _DISTRIBUTED,
  'build-dataset': frozenset({'config'}),
  'export': frozenset({'workdir', 'out', 'dtype', 'copy_text_encoder'}),
  'compile': frozenset({'config', 'topology', 'num_slices', 'out'}),
  'tokenize': frozenset(
    {'tokenizer', 'video', 'config', 'out', 'height', 'width', 'max_frames', 'clips_per_shard'}
  )
  | _DISTRIBUTED,
  'detokenize': frozenset({'tokenizer', 'tokens', 'out'}),
  'serve': frozenset({'model', 'host', 'port', 'share', 'concurrency'}),
}


class InputError(ValueError):
  """A bad command line: one line to the user, exit status 2."""


def runtime_errors() -> tuple[type[BaseException], ...]:
  """Failures of the work itself that are the user's to fix (exit 1, one line)."""
  from videogen import integrity, weights
  from videogen.data import video_io
  from videogen.train import checkpointing, compiled_step, warm_start

  errors = [
    integrity.NoRestorableCheckpointError,
    checkpointing.CheckpointSaveError,
    compiled_step.CompiledStepMismatchError,
    warm_start.WarmStartError,
    checkpointing.CheckpointMismatchError,
    weights.CheckpointMismatchError,
    video_io.VideoReadError,
    FloatingPointError,
  ]
  try:
    from videogen.data import pipeline

    errors += [pipeline.TooManySkippedExamples, pipeline.SplitSizeError]
  except (ImportError, AttributeError):
    pass
  return tuple(errors)


def show_traceback(verbosity: int) -> bool:
  """Whether an expected error also prints its traceback."""
  return verbosity >= 1 or os.environ.get(TRACEBACK_ENV, '') not in ('', '0')


# --- the flags given --------------------------------------------------------


def given_flags(flag_values, own: frozenset[str]) -> list[str]:
  """Names of videogen's own flags present on the command line (overrides as `config`)."""
  given = set()
  for name in flag_values:
    if not flag_values[name].present:
      continue
    base = 'config' if name.startswith('config.') else name
    if base in own:
      given.add(base)
  return sorted(given)


def check_flags_used(command: str, given: list[str]) -> None:
  """Raises InputError for a flag the subcommand ignores (unknown subcommands: no check)."""
  allowed = COMMAND_FLAGS.get(command)
  if allowed is None:
    return
  ignored = [name for name in given if name not in allowed | COMMON_FLAGS]
  if ignored:
    names = ', '.join(f'--{name}' for name in ignored)
    valid = ', '.join(f'--{name}' for name in sorted(allowed))
    raise InputError(f'{names} is not used by videogen {command}; it takes {valid}')


# --- value checks -------------------------------------------------------------


def _is_remote(path: str) -> bool:
  return '://' in path


def need_dir(flag: str, path: str | None) -> None:
  if path is None or _is_remote(path):
    return
  if not os.path.exists(path):
    raise InputError(f'--{flag}={path}: no such directory')
  if not os.path.isdir(path):
    raise InputError(f'--{flag}={path}: is a file, expected a directory')


def need_file(flag: str, path: str | None) -> None:
  if path is None or _is_remote(path):
    return
  if not os.path.exists(path):
    raise InputError(f'--{flag}={path}: no such file')
  if os.path.isdir(path):
    raise InputError(f'--{flag}={path}: is a directory, expected a file')
  if os.path.getsize(path) == 0:
    raise InputError(f'--{flag}={path}: the file is empty')


def out_dir(flag: str, path: str | None) -> None:
  """An output directory: absent (it is made) or a directory, never a file."""
  if path and not _is_remote(path) and os.path.exists(path) and not os.path.isdir(path):
    raise InputError(f'--{flag}={path}: is a file; give a directory to write into')


def run_dir(flag: str, path: str | None, *, stages: tuple[str, ...], what: str) -> None:
  """A videogen workdir or export whose `config.json` names one of `stages`."""
  if path is None:
    return
  need_dir(flag, path)
  if _is_remote(path):
    return
  config_path = os.path.join(path, 'config.json')
  if not os.path.exists(config_path):
    raise InputError(f'--{flag}={path}: not a videogen run or export (no config.json); {what}')
  try:
    with open(config_path, encoding='utf-8') as f:
      stage = json.load(f).get('stage')
  except (OSError, ValueError) as error:
    raise InputError(f'--{flag}={path}: its config.json is unreadable ({error})') from None
  if stage is not None and stage not in stages:
    raise InputError(f'--{flag}={path}: is a {stage} run; {what}')


def at_least(flag: str, value: int | float | None, low: float) -> None:
  if value is not None and not value >= low:
    raise InputError(f'--{flag}={value}: must be >= {low:g}')


def in_range(flag: str, value: float | None, low: float, high: float, low_open: bool) -> None:
  if value is None:
    return
  ok = (low < value if low_open else low <= value) and value <= high and math.isfinite(value)
  if not ok:
    bracket = '(' if low_open else '['
    raise InputError(f'--{flag}={value}: must be in {bracket}{low:g}, {high:g}]')


def image_decodes(flag: str, path: str | None) -> None:
  if path is None or _is_remote(path):
    return
  need_file(flag, path)
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(path) as image:
      image.load()
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise InputError(f'--{flag}={path}: not a readable image ({error})') from None


def video_decodes(flag: str, path: str | None) -> None:
  if path is None or _is_remote(path):
    return
  need_file(flag, path)
  from videogen.data import video_io

  try:
    video_io.read_video(path, max_frames=1)
  except (video_io.VideoReadError, OSError, ValueError) as error:
    raise InputError(f'--{flag}={path}: not a readable video ({error})') from None


def prompts_file(flag: str, path: str | None) -> None:
  if path is None:
    return
  need_file(flag, path)
  if _is_remote(path):
    return
  try:
    with open(path, encoding='utf-8') as f:
      lines = [line for line in f if line.strip()]
  except UnicodeDecodeError as error:
    raise InputError(f'--{flag}={path}: not UTF-8 text ({error.reason})') from None
  if not lines:
    raise InputError(f'--{flag}={path}: holds no prompt (one per line)')


# --- per subcommand -----------------------------------------------------------


def _sample(v: Any) -> None:
  if v.model and v.workdir:
    raise InputError('give --model or --workdir, not both')
  flag = 'model' if v.model else 'workdir'
  run_dir(
    flag,
    v.model or v.workdir,
    stages=('transformer',),
    what='sample needs a transformer workdir or export',
  )
  at_least('num_samples', v.num_samples, 1)
  at_least('num_frames', v.num_frames, 1)
  at_least('top_k', v.top_k, 0)
  at_least('temperature', v.temperature, 0)
  at_least('first_frame_temperature', v.first_frame_temperature, 0)
  at_least('cfg_scale', v.cfg_scale, 0)
  at_least('candidates', v.candidates, 1)
  in_range('top_p', v.top_p, 0.0, 1.0, low_open=True)
  if v.first_frame and v.prefix_video:
    raise InputError('give --first_frame or --prefix_video, not both')
  _sample_task(v)
  image_decodes('first_frame', v.first_frame)
  video_decodes('prefix_video', v.prefix_video)
  image_decodes('last_frame', v.last_frame)
  video_decodes('video', v.video)
  image_decodes('mask', v.mask)
  prompts_file('prompts_file', v.prompts_file)
  out_dir('out', v.out)


def _sample_task(v: Any) -> None:
  """--task names its inputs: each given, none it ignores, --mask or --box for inpaint."""
  task = v.task or 't2v'
  needed, optional, reads_prompts = TASK_INPUTS[task]
  for name in needed:
    if not getattr(v, name):
      raise InputError(f'--task {task} needs --{name}; it takes {_task_inputs(task)}')
  for name in _TASK_FLAGS:
    if getattr(v, name) and name not in needed + optional:
      raise InputError(f'--{name} is not used by --task {task}; it takes {_task_inputs(task)}')
  has_prompts = bool(v.prompt) or bool(v.prompts_file)
  if v.task is None:
    return
  if not reads_prompts and has_prompts:
    raise InputError(f'--task {task} takes no --prompt or --prompts_file (no text)')
  if reads_prompts and not has_prompts:
    raise InputError(f'--task {task} needs --prompt (may repeat) or --prompts_file')
  if task == 'inpaint' and bool(v.mask) == bool(v.box):
    raise InputError('--task inpaint needs --mask M.png or --box t0,t1,y0,y1,x0,x1 (one of them)')
  if v.box:
    parse_box(v.box)


def _task_inputs(task: str) -> str:
  needed, optional, reads_prompts = TASK_INPUTS[task]
  parts = [f'--{name}' for name in needed]
  if optional:
    parts.append('optionally ' + ' or '.join(f'--{name}' for name in optional))
  parts.append('--prompt' if reads_prompts else 'no --prompt')
  return ', '.join(parts)


def parse_box(box: str) -> tuple[int, int, int, int, int, int]:
  """`t0,t1,y0,y1,x0,x1` (frames and pixels, end-exclusive) -> ints; InputError if not."""
  try:
    values = tuple(int(part) for part in box.split(','))
  except ValueError:
    values = ()
  if len(values) != 6 or min(values) < 0 or any(values[i] >= values[i + 1] for i in (0, 2, 4)):
    raise InputError(
      f'--box={box}: give t0,t1,y0,y1,x0,x1, integers >= 0 with t0 < t1, y0 < y1, x0 < x1'
    )
  return values


def _check_model(model: Any) -> None:
  """`config.model`'s task weights, input token noise and copy path."""
  from videogen.transformer import layers, tasks

  try:
    if 'tasks' in model:
      tasks.active_tasks(model.tasks)
  except ValueError as error:
    raise InputError(f'config.model.tasks: {error}') from None
  noise = model.get('input_token_noise', 0.0)
  if not 0 <= noise < 1:
    raise InputError(
      f'config.model.input_token_noise={noise}: give a probability in [0, 1) (0 = off)'
    )
  noise_tasks = model.get('input_token_noise_tasks', '')
  try:
    tasks.parse_task_list(noise_tasks)
  except ValueError as error:
    raise InputError(f'config.model.input_token_noise_tasks={noise_tasks}: {error}') from None
  copy_tasks = model.get('copy_canvas_tasks', '')
  try:
    layers.copy_tasks(model)
  except ValueError as error:
    raise InputError(f'config.model.copy_canvas_tasks={copy_tasks}: {error}') from None
  if copy_tasks and layers.trained_tasks(model) == ('t2v',):
    raise InputError(
      f'config.model.copy_canvas_tasks={copy_tasks}: a text-to-video model has no canvas to '
      "copy; give config.model.tasks a task besides t2v, or set it to ''"
    )


def _check_sampling(sampling: Any) -> None:
  """One-line errors for a training config's `config.sampling` (per-task entries, search)."""
  from videogen.transformer import config as transformer_config

  try:
    if 'per_task' in sampling:
      transformer_config.check_per_task(sampling.per_task)
    transformer_config.check_candidate_search(
      sampling.get('candidate_search', 'clip'), 'config.sampling.candidate_search'
    )
    transformer_config.check_refine(sampling, 'config.sampling.')
  except ValueError as error:
    raise InputError(str(error)) from None


def _train(v: Any) -> None:
  if v.workdir and not _is_remote(v.workdir) and os.path.isfile(v.workdir):
    raise InputError(f'--workdir={v.workdir}: is a file, expected a directory')
  if v.config is not None and 'sampling' in v.config:
    _check_sampling(v.config.sampling)
  model = v.config.get('model') if v.config is not None else None
  if model is not None:
    _check_model(model)
  config_path = v.workdir and os.path.join(v.workdir, 'config.json')
  if config_path and os.path.isfile(config_path) and v.config is not None:
    try:
      with open(config_path, encoding='utf-8') as f:
        stage = json.load(f).get('stage')
    except (OSError, ValueError):
      return
    if stage and stage != v.config.stage:
      raise InputError(
        f'--workdir={v.workdir}: holds a {stage} run; this config trains a '
        f'{v.config.stage} (use another --workdir)'
      )


def _eval(v: Any) -> None:
  run_dir('workdir', v.workdir, stages=('tokenizer', 'transformer'), what='eval needs a workdir')
  if v.workdir and not _is_remote(v.workdir) and os.path.isdir(v.workdir):
    if not os.path.isdir(os.path.join(v.workdir, 'checkpoints')):
      raise InputError(f'--workdir={v.workdir}: has no checkpoints/; train it first')
  need_file('i3d_weights', v.i3d_weights)
  at_least('fvd_num_videos', v.fvd_num_videos, 1)


def _export(v: Any) -> None:
  run_dir(
    'workdir',
    v.workdir,
    stages=('tokenizer', 'transformer'),
    what='export needs a training workdir',
  )
  out_dir('out', v.out)


def _compile(v: Any) -> None:
  at_least('num_slices', v.num_slices, 1)
  out_dir_parent = v.out and os.path.dirname(os.path.abspath(v.out))
  if v.out and not _is_remote(v.out) and os.path.isdir(v.out):
    raise InputError(f'--out={v.out}: is a directory; give a file to write the report to')
  need_dir('out', out_dir_parent if v.out and not _is_remote(v.out) else None)


def _tokenizer_dir(v: Any) -> None:
  run_dir(
    'tokenizer',
    v.tokenizer,
    stages=('tokenizer',),
    what='give a tokenizer workdir or exported tokenizer',
  )


def _tokenize(v: Any) -> None:
  _tokenizer_dir(v)
  need_file('video', v.video)
  at_least('height', v.height, 0)
  at_least('width', v.width, 0)
  at_least('max_frames', v.max_frames, 0)
  at_least('clips_per_shard', v.clips_per_shard, 1)


def _detokenize(v: Any) -> None:
  _tokenizer_dir(v)
  need_file('tokens', v.tokens)


def _quickstart(v: Any) -> None:
  out_dir('workdir', v.workdir)


def _serve(v: Any) -> None:
  if v.model is None:
    raise InputError('needs --model (a transformer workdir or an export)')
  run_dir(
    'model', v.model, stages=('transformer',), what='serve needs a transformer workdir or export'
  )
  at_least('concurrency', v.concurrency, 1)
  if not 0 <= v.port <= 65535:
    raise InputError(f'--port={v.port}: must be from 0 to 65535')


# Subcommand -> its checks over the parsed flags (absent entries: none).
VALIDATORS: dict[str, Callable[[Any], None]] = {
  'quickstart': _quickstart,
  'train': _train,
  'sample': _sample,
  'eval': _eval,
  'export': _export,
  'compile': _compile,
  'tokenize': _tokenize,
  'detokenize': _detokenize,
  'serve': _serve,
}


def check(command: str, flag_values) -> None:
  """All checks of `command` (flags used, values) over absl's parsed flags."""
  own = frozenset().union(*COMMAND_FLAGS.values()) | COMMON_FLAGS
  check_flags_used(command, given_flags(flag_values, own))
  validator = VALIDATORS.get(command)
  if validator is not None:
    validator(_Values(flag_values))


class _Values:
  """Attribute access to flag values; flags not defined read as None."""

  def __init__(self, flag_values):
    self._flags = flag_values

  def __getattr__(self, name: str):
    try:
      return self._flags[name].value
    except KeyError:
      return None


# --- config files -------------------------------------------------------------

_KNOWN_VARIANTS = ('tiny', 'small', 'base', 'large', 'xl', 'fsq', 'lfq', 'vq')


def explain_config_arg_error(config_arg: str, error: Exception) -> str | None:
  """For `file.py:key=value` whose value the file rejects with a bare KeyError,
  the message naming the key, the value and the values that load."""
  if not isinstance(error, KeyError) or ':' not in config_arg:
    return None
  from videogen import config_lib

  path, _, arg = config_arg.partition(':')
  bad = str(error.args[0]) if error.args else ''
  items = [item.partition('=') for item in arg.split(',') if item.strip()]
  for key, eq, value in items:
    if not eq or value != bad:
      continue
    valid = []
    for candidate in _KNOWN_VARIANTS:
      probe = ','.join(f'{k}={candidate if k == key else v}' if e else k for k, e, v in items)
      try:
        config_lib.load_config_file(f'{path}:{probe}')
      except Exception:  # noqa: BLE001 - a candidate that does not load is not listed.
        continue
      valid.append(candidate)
    listed = ', '.join(valid) if valid else 'see the file docstring'
    return f'config argument {key}={value!r} is not valid for {path}; valid: {listed}'
  return None
