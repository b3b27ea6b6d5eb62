"""The `videogen` command: a thin absl entry that dispatches subcommands.

videogen quickstart --workdir DIR
videogen train --config configs/X.py[:arg] --workdir DIR [--config.key=value ...]
videogen sample --model DIR --prompt "a red circle moving left" --out OUTDIR
videogen sample --model DIR --task inpaint --video V.mp4 --box 0,9,8,24,8,24 --prompt P --out OUTDIR
videogen export --workdir DIR --out MODEL_DIR [--dtype bfloat16]
videogen eval --workdir DIR [--split test] [--i3d_weights FILE] [--fvd_num_videos N]
videogen build-dataset --config configs/X.py
videogen tokenize --tokenizer T --video IN.mp4 --out IN.tokens.npz [--height H --width W]
videogen tokenize --tokenizer T --config configs/X.py[:arg] --out DIR [--clips_per_shard N]
videogen detokenize --tokenizer T --tokens IN.tokens.npz --out OUT.mp4
videogen compile --config configs/X.py[:arg] --topology v5p-128 [--num_slices N] [--out FILE]
videogen serve --model DIR [--host 127.0.0.1] [--port 7860] [--concurrency 1] [--share]

Errors print one line, `videogen <command>: error: <what>`, and exit 2 (a bad
command line) or 1 (the work failed: no checkpoint restores, a save failed,
too many damaged examples); --verbosity=1 or VIDEOGEN_TRACEBACK=1 also
prints the traceback. A flag the command does not use is an error.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys

# TensorFlow (TFDS, clu) must never take an accelerator from JAX.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

COMMANDS = (
  'quickstart',
  'train',
  'sample',
  'eval',
  'build-dataset',
  'compile',
  'export',
  'tokenize',
  'detokenize',
  'serve',
)

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  None,
  'Experiment config file, e.g. configs/shapes/tokenizer.py:size=tiny.',
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (local path or gs://).')
_TOPOLOGY = flags.DEFINE_string(
  'topology',
  None,
  'compile: a TPU slice (v5p-128, v5e-64, v6e-256, v4-8) or topology (v5e:2x2); cpu or gpu: '
  'the devices of this machine.',
)
_NUM_SLICES = flags.DEFINE_integer('num_slices', 1, 'compile: TPU slices joined over DCN.')
_MODEL = flags.DEFINE_string(
  'model', None, 'sample: a transformer workdir or an exported model directory (local or gs://).'
)
_DTYPE = flags.DEFINE_enum(
  'dtype', 'float32', ['float32', 'bfloat16'], 'export: dtype of the written weights.'
)
_COPY_TEXT_ENCODER = flags.DEFINE_bool(
  'copy_text_encoder',
  True,
  'export: copy a named external T5 (config.text.path) into the export; false refers to it.',
)
_PROMPT = flags.DEFINE_multi_string('prompt', [], 'Prompt to sample; may repeat.')
_PROMPTS_FILE = flags.DEFINE_string('prompts_file', None, 'File with one prompt per line.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1, 'Samples per prompt.')
_CFG_SCALE = flags.DEFINE_float('cfg_scale', None, 'Classifier-free guidance scale.')
_TEMPERATURE = flags.DEFINE_float('temperature', None, 'Sampling temperature.')
_FIRST_FRAME_TEMPERATURE = flags.DEFINE_float(
  'first_frame_temperature',
  None,
  "Temperature of the clip's first latent frame (where objects are placed); "
  'default: the run config, else --temperature.',
)
_TOP_K = flags.DEFINE_integer('top_k', None, 'Top-k filtering; 0 = off.')
_TOP_P = flags.DEFINE_float('top_p', None, 'Nucleus (top-p) filtering; 1 = off.')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_CANDIDATES = flags.DEFINE_integer(
  'candidates',
  None,
  'sample --task uncond|interpolate|inpaint|outpaint|restore|restyle: samples drawn per '
  'output, the one that best reproduces the input (uncond: the steadiest) kept (needs '
  'temperature > 0); default: the run config.',
)
_CANDIDATE_SEARCH = flags.DEFINE_enum(
  'candidate_search',
  None,
  ['clip', 'frame'],
  "How --candidates are ranked: 'clip' (whole samples) or 'frame' (one latent frame at a "
  'time, the best kept before the next is drawn; inpaint, outpaint, restore, restyle); '
  'default: the run config.',
)
_REFINE = flags.DEFINE_integer(
  'refine',
  None,
  'sample --task interpolate|inpaint|outpaint|restore|restyle: sweeps refining the sample '
  "token by token against the input (each generated token swapped for each of the model's "
  '--refine_top_k likeliest there when that reproduces the input better); 0 = off; '
  'default: the run config.',
)
_REFINE_TOP_K = flags.DEFINE_integer(
  'refine_top_k',
  None,
  'Tokens tried at each position by a --refine sweep; default: the run config.',
)
_REFINE_MIN_PROB = flags.DEFINE_float(
  'refine_min_prob',
  None,
  'Of the --refine_top_k tokens, only those the model gives at least this probability; '
  'default: the run config.',
)
_FIRST_FRAME = flags.DEFINE_string(
  'first_frame', None, 'Image to start the video from (also --task i2v and interpolate).'
)
_PREFIX_VIDEO = flags.DEFINE_string('prefix_video', None, 'Video to continue.')
_TASK = flags.DEFINE_enum(
  'task',
  None,
  ['t2v', 'uncond', 'i2v', 'predict', 'interpolate', 'inpaint', 'outpaint', 'restore', 'restyle'],
  'sample: the task of a multi-task model (default t2v); see videogen.transformer.tasks.',
)
_LAST_FRAME = flags.DEFINE_string('last_frame', None, 'sample --task interpolate: the last frame.')
_MASK = flags.DEFINE_string(
  'mask', None, 'sample --task inpaint: image, white where to fill (every frame).'
)
_BOX = flags.DEFINE_string(
  'box',
  None,
  'sample --task inpaint: t0,t1,y0,y1,x0,x1 region to fill (frames, pixels; end-exclusive).',
)
_NUM_FRAMES = flags.DEFINE_integer(
  'num_frames', None, 'Frames to generate; more than training makes a long video.'
)
_HOST = flags.DEFINE_string(
  'host', '127.0.0.1', 'serve: address to listen on (0.0.0.0 = every network interface).'
)
_PORT = flags.DEFINE_integer('port', 7860, 'serve: port to listen on.')
_SHARE = flags.DEFINE_bool('share', False, 'serve: also open a public gradio.live share link.')
_CONCURRENCY = flags.DEFINE_integer(
  'concurrency', 1, 'serve: generations run at once; more requests wait in the queue.'
)
_OUT = flags.DEFINE_string('out', None, 'Output directory for samples.')
_SPLIT = flags.DEFINE_string('split', 'test', 'Dataset split to evaluate on.')
_I3D_WEIGHTS = flags.DEFINE_string(
  'i3d_weights', None, 'Converted I3D weights for FVD (default: $VIDEOGEN_I3D_WEIGHTS).'
)
_FVD_NUM_VIDEOS = flags.DEFINE_integer(
  'fvd_num_videos', 2048, 'Most real and generated videos behind an FVD.'
)
_LIBRARY_LOGS = flags.DEFINE_bool(
  'library_logs', False, 'Keep the INFO lines of orbax, TFDS, grain and clu.'
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address', None, 'HOST:PORT of process 0 for multi-process runs.'
)
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index (0-based).')
_CPU_DEVICES = flags.DEFINE_integer(
  'cpu_devices',
  -1,
  'JAX devices the CPU is split into (one per core runs small models faster); -1 = one per '
  'core, a power of 2, at most 8. JAX_NUM_CPU_DEVICES or XLA_FLAGS, when set, take precedence.',
)


_TOKENIZER = flags.DEFINE_string(
  'tokenizer', None, 'tokenize/detokenize: a tokenizer workdir or exported tokenizer directory.'
)
_VIDEO = flags.DEFINE_string(
  'video', None, 'tokenize: the video file to encode; sample --task X: the clip to condition on.'
)
_TOKENS = flags.DEFINE_string('tokens', None, 'detokenize: a .tokens.npz from videogen tokenize.')
_HEIGHT = flags.DEFINE_integer('height', 0, "tokenize: frame height to encode at; 0 = the video's.")
_WIDTH = flags.DEFINE_integer('width', 0, "tokenize: frame width to encode at; 0 = the video's.")
_MAX_FRAMES = flags.DEFINE_integer(
  'max_frames', 0, 'tokenize: encode at most this many frames; 0 = all.'
)
_CLIPS_PER_SHARD = flags.DEFINE_integer(
  'clips_per_shard', 1024, 'tokenize --config: clips per ArrayRecord token shard.'
)


class UsageError(app.UsageError):
  pass


def _require(flag_holder, command: str):
  if flag_holder.value is None:
    raise UsageError(f'videogen {command} needs --{flag_holder.name}.')
  return flag_holder.value


def _init_distributed() -> None:
  from videogen.parallel import distributed

  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def _prompts() -> list[str]:
  prompts = list(_PROMPT.value)
  if _PROMPTS_FILE.value:
    with open(_PROMPTS_FILE.value) as f:
      prompts += [line.strip() for line in f if line.strip()]
  return prompts


def _train() -> None:
  from videogen import stages

  config = _require(_CONFIG, 'train')
  workdir = _require(_WORKDIR, 'train')
  _init_distributed()
  result = stages.train(config, workdir)
  if result.preempted:
    logging.warning('Stopped at step %d on a preemption notice; rerun to resume.', result.step)


def _build_dataset() -> None:
  from videogen.data import build

  config = _require(_CONFIG, 'build-dataset')
  try:
    report = build.build_dataset(config.data)
  except (FileNotFoundError, ValueError, ImportError) as error:  # Bad folder or settings; an extra.
    _fail('build-dataset', error, 1)
  print(report.summary(), flush=True)


def _sample() -> None:
  from videogen import sample
  from videogen.transformer import candidates
  from videogen.transformer.inference import TextToVideo

  if _MODEL.value and _WORKDIR.value:
    raise UsageError('videogen sample takes --model or --workdir, not both.')
  path = _MODEL.value or _WORKDIR.value
  if not path:
    raise UsageError('videogen sample needs --model (a transformer workdir or an export).')
  out = _require(_OUT, 'sample')
  prompts = _prompts()
  task = _TASK.value or 't2v'
  if not prompts and task != 'uncond':
    raise UsageError('videogen sample needs --prompt (may repeat) or --prompts_file.')
  _init_distributed()
  model = TextToVideo.load(path)
  if _TASK.value is None:  # t2v, or i2v / predict from --first_frame / --prefix_video.
    task = model.generate_task(image=_FIRST_FRAME.value, video=_PREFIX_VIDEO.value)
  try:  # The task's config.sampling (its per_task entry over it); flags given win.
    settings = model.default_settings(
      task,
      cfg_scale=_CFG_SCALE.value,
      temperature=_TEMPERATURE.value,
      first_frame_temperature=_FIRST_FRAME_TEMPERATURE.value,
      top_k=_TOP_K.value,
      top_p=_TOP_P.value,
      seed=_SEED.value,
      num_frames=_NUM_FRAMES.value,
      candidates=_CANDIDATES.value,
      candidate_search=_CANDIDATE_SEARCH.value,
      refine=_REFINE.value,
      refine_top_k=_REFINE_TOP_K.value,
      refine_min_prob=_REFINE_MIN_PROB.value,
    )
  except ValueError as error:  # A config.sampling.per_task the model's config.json spoils.
    _fail('sample', error, 1)
  try:  # Flags that do not fit together or the task (e.g. --candidates for t2v).
    settings.check()
    candidates.check(task, settings.candidates, settings.candidate_search, settings.refine)
  except ValueError as error:
    raise UsageError(str(error)) from None
  if _TASK.value is not None:
    try:
      inputs = sample.read_task_inputs(
        first_frame=_FIRST_FRAME.value,
        last_frame=_LAST_FRAME.value,
        video=_VIDEO.value,
        mask=_MASK.value,
        box=_BOX.value,
      )
      sample.sample_task_to_dir(
        model, task, prompts, out, settings, num_samples=_NUM_SAMPLES.value, **inputs
      )
    except ValueError as error:  # The model's own checks (trained tasks, input sizes).
      raise UsageError(str(error)) from None
    return
  image, video = sample.read_conditioning(_FIRST_FRAME.value, _PREFIX_VIDEO.value)
  sample.sample_to_dir(
    model, prompts, out, settings, num_samples=_NUM_SAMPLES.value, image=image, video=video
  )


def _export() -> None:
  from videogen import export

  workdir = _require(_WORKDIR, 'export')
  out = _require(_OUT, 'export')
  report = export.export(
    workdir, out, dtype=_DTYPE.value, copy_text_encoder=_COPY_TEXT_ENCODER.value
  )
  print(report.summary(), flush=True)


def _eval() -> None:
  from videogen.eval import run as eval_run

  workdir = _require(_WORKDIR, 'eval')
  _init_distributed()
  results = eval_run.evaluate_workdir(
    workdir,
    split=_SPLIT.value,
    i3d_weights=_I3D_WEIGHTS.value,
    fvd_num_videos=_FVD_NUM_VIDEOS.value,
  )
  print(results.summary(), flush=True)


def _quickstart() -> None:
  from videogen import quickstart

  workdir = _require(_WORKDIR, 'quickstart')
  quickstart.run(workdir)


def _compile() -> None:
  from videogen import compile as compile_lib

  config = _require(_CONFIG, 'compile')
  topology = _require(_TOPOLOGY, 'compile')
  try:
    if topology in compile_lib.LOCAL_PLATFORMS:
      print(compile_lib.compile_local(config, topology, out=_OUT.value), flush=True)
      return
    report = compile_lib.compile_config(config, topology, _NUM_SLICES.value, out=_OUT.value)
  except compile_lib.CompileUsageError as error:
    raise UsageError(f'videogen compile: error: {error}') from None
  print(report.summary(), flush=True)
  if not report.fits:
    print(f'videogen compile: error: {report.verdict()}', file=sys.stderr)
    sys.exit(1)


def _tokens_command(command: str, work) -> None:
  """Runs `work()` and prints its report; bad inputs are one-line errors (exit 1)."""
  from videogen.data import video_io

  try:
    report = work()
  except (FileNotFoundError, ValueError, video_io.VideoReadError) as error:
    print(f'videogen {command}: error: {error}', file=sys.stderr)
    sys.exit(1)
  print(report.summary(), flush=True)


def _tokenize() -> None:
  from videogen import tokenize, vq

  path = _require(_TOKENIZER, 'tokenize')
  out = _require(_OUT, 'tokenize')
  if (_VIDEO.value is None) == (_CONFIG.value is None):
    raise UsageError(
      'videogen tokenize: error: give --video IN.mp4 (one file) or --config CONFIG '
      '(a dataset into token shards), not both or neither.'
    )
  if _CONFIG.value is not None:
    _init_distributed()
    _tokens_command(
      'tokenize',
      lambda: tokenize.tokenize_dataset(
        vq.Tokenizer.load(path), path, _CONFIG.value, out, clips_per_shard=_CLIPS_PER_SHARD.value
      ),
    )
    return
  video = _VIDEO.value
  _tokens_command(
    'tokenize',
    lambda: tokenize.tokenize_video(
      vq.Tokenizer.load(path),
      video,
      out,
      height=_HEIGHT.value,
      width=_WIDTH.value,
      max_frames=_MAX_FRAMES.value,
    ),
  )


def _detokenize() -> None:
  from videogen import tokenize, vq

  path = _require(_TOKENIZER, 'detokenize')
  tokens = _require(_TOKENS, 'detokenize')
  out = _require(_OUT, 'detokenize')
  _tokens_command('detokenize', lambda: tokenize.detokenize(vq.Tokenizer.load(path), tokens, out))


def _serve() -> None:
  from videogen.transformer.inference import TextToVideo

  path = _require(_MODEL, 'serve')
  try:
    from videogen import serve
  except ImportError as error:
    _fail('serve', RuntimeError(f'needs Gradio: pip install "videogen[serve]" ({error})'), 1)
  try:
    model = TextToVideo.load(path)
  except (FileNotFoundError, ValueError) as error:
    _fail('serve', error, 1)
  app = serve.build_app(model, path, concurrency=_CONCURRENCY.value)
  try:
    serve.launch(app, host=_HOST.value, port=_PORT.value, share=_SHARE.value)
  except OSError as error:  # The port is taken or the address is not this machine's.
    _fail('serve', error, 1)


_HANDLERS = {
  'quickstart': _quickstart,
  'train': _train,
  'sample': _sample,
  'eval': _eval,
  'build-dataset': _build_dataset,
  'tokenize': _tokenize,
  'detokenize': _detokenize,
  'compile': _compile,
  'export': _export,
  'serve': _serve,
}


# Libraries whose INFO lines (every orbax save step, TFDS reads, clu's copy of
# the metrics line) bury videogen's own progress lines; their warnings stay.
_QUIET_LIBRARIES = (
  '/orbax/',
  '/tensorflow_datasets/',
  '/grain/',
  '/scenedetect/',  # 'Detecting scenes...' per video of a scene_detect build.
  '/clu/metric_writers/',
  '/jax/_src/xla_bridge.py',
)


class _LibraryInfoFilter(std_logging.Filter):
  def filter(self, record) -> bool:
    return record.levelno >= std_logging.WARNING or not any(
      part in record.pathname for part in _QUIET_LIBRARIES
    )


def _fail(command: str, error: BaseException, exit_code: int) -> None:
  """One line `videogen <command>: error: ...` (plus the traceback if asked), then exit."""
  from videogen import cli_checks

  message = str(error).strip()
  for prefix in (f'videogen {command}: error: ', f'videogen {command} ', 'videogen: '):
    message = message.removeprefix(prefix)
  if cli_checks.show_traceback(flags.FLAGS['verbosity'].value):
    import traceback

    traceback.print_exception(error)
  line = message.splitlines()[0] if message else type(error).__name__
  print(f'videogen {command}: error: {line}', file=sys.stderr)
  sys.exit(exit_code)


def main(argv: list[str]) -> None:
  from videogen import cli_checks

  if not _LIBRARY_LOGS.value:
    # ABSLHandler hands records to its python_handler without applying its own filters.
    logging.get_absl_handler().python_handler.addFilter(_LibraryInfoFilter())
  if len(argv) < 2 or argv[1] not in _HANDLERS:
    given = argv[1] if len(argv) > 1 else '(none)'
    print(
      f'videogen: error: unknown command {given!r}; commands: {", ".join(COMMANDS)}.',
      file=sys.stderr,
    )
    sys.exit(2)
  command = argv[1]
  try:
    if len(argv) > 2:
      raise UsageError(f'unexpected arguments: {" ".join(argv[2:])}')
    cli_checks.check(command, flags.FLAGS)
  except (UsageError, cli_checks.InputError) as error:
    _fail(command, error, 2)
  from videogen.parallel import distributed

  distributed.set_cpu_devices(_CPU_DEVICES.value)
  try:
    _HANDLERS[command]()
  except (UsageError, cli_checks.InputError) as error:
    _fail(command, error, 2)
  except cli_checks.runtime_errors() as error:
    _fail(command, error, 1)


def packaged_config_path(value: str) -> str:
  """`configs/X.py[:arg]` resolved to the copy inside the package when `configs/X.py`
  is not in the current directory (a wheel install: Colab, another directory)."""
  path, colon, arg = value.partition(':')
  if os.path.exists(path) or not path.startswith('configs/'):
    return value
  import importlib.resources

  packaged = importlib.resources.files('videogen.configs').joinpath(path.removeprefix('configs/'))
  return f'{packaged}{colon}{arg}' if packaged.is_file() else value


def _with_packaged_configs(argv: list[str]) -> list[str]:
  resolved = list(argv)
  for index, arg in enumerate(resolved):
    if arg.startswith('--config='):
      resolved[index] = '--config=' + packaged_config_path(arg.removeprefix('--config='))
    elif arg == '--config' and index + 1 < len(resolved):
      resolved[index + 1] = packaged_config_path(resolved[index + 1])
  return resolved


def _flags_parser(argv: list[str]) -> list[str]:
  """absl's parser, with config errors that name the bad key and the valid ones."""
  argv = _with_packaged_configs(argv)
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as error:
    command = argv[1] if len(argv) > 1 and not argv[1].startswith('-') else None
    where = f'videogen {command}' if command else 'videogen'
    message = _explain_config_error(error, argv).removeprefix('videogen: ')
    print(f'{where}: error: {message}', file=sys.stderr)
    sys.exit(2)


def _explain_config_error(error: Exception, argv: list[str]) -> str:
  from videogen import config_lib

  message = str(error)
  bad = [a.split('=')[0][2:] for a in argv if a.startswith('--config.')]
  config_path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if config_path is None and '--config' in argv:
    config_path = argv[argv.index('--config') + 1]
  if not config_path:
    return message
  try:
    config = config_lib.load_config_file(config_path)
  except Exception as load_error:  # noqa: BLE001 - the original message is the better one then.
    from videogen import cli_checks

    return cli_checks.explain_config_arg_error(config_path, load_error) or message
  for override in bad:
    problem = config_lib.describe_missing_key(config, override.removeprefix('config.'))
    if problem:
      return problem
  return message


def run() -> None:
  """Console-script entry point."""
  from videogen.parallel import host_memory, platform

  platform.prefer_cpu_without_tpu()  # libtpu (for `compile`) must not claim a CPU-only machine.
  host_memory.restart_with_kept_memory()
  # absl's --help prints the __main__ module's docstring: make it this one
  # (the commands and the error style), whichever entry point started us.
  if sys.modules.get('__main__') is not None:
    sys.modules['__main__'].__doc__ = __doc__
  app.run(main, argv=sys.argv, flags_parser=_flags_parser)


if __name__ == '__main__':
  run()
