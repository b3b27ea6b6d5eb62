"""A trained text-to-video model: prompts (and optionally an image or a clip) in, videos out.

```
t2v = TextToVideo.load('runs/quickstart/transformer')  # workdir or export; local or gs://
videos = t2v.generate(['a red circle moving left'])    # uint8 [N, T, H, W, 3]
videos = t2v.generate(prompts, SamplingSettings(cfg_scale=2.0, seed=1), num_samples=4)
videos = t2v.generate(prompts, image=first_frame)      # image-to-video
videos = t2v.generate(prompts, video=clip)              # continuation
videos = t2v.generate(prompts, SamplingSettings(num_frames=33))  # long video
t2v.export('model/')                                    # self-contained, safetensors
```

It owns the frozen video tokenizer (`vq.Tokenizer`), the T5 text encoder and
the transformer weights, and reads no dataset: `load` needs only the
directory. The training stage samples through the same object
(`with_weights` swaps in the live, sharded train state).

Where a training workdir finds its tokenizer, first that works:
  1. `<workdir>/tokenizer/`, the copy written when training started (the
     exact weights the transformer was trained on; moves with the workdir);
  2. `config.tokenizer.checkpoint`, the path given at training time;
  3. the directory of that name next to the workdir (`runs/x/tokenizer`
     beside `runs/x/transformer`, wherever `runs/x` was copied to).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from videogen import text, vq, weights
from videogen.parallel import sharding
from videogen.text import config as text_config_lib
from videogen.transformer import candidates, sampling, tasks
from videogen.transformer import config as transformer_config
from videogen.transformer.layers import TransformerSpec
from videogen.transformer.model import Transformer
from videogen.transformer.task_sampling import TaskSampling

TOKENIZER_DIR = (
  'tokenizer'  # In a workdir or export: the tokenizer (config.json + model.safetensors).
)
TEXT_ENCODER_DIR = text_config_lib.DEFAULT_DIR_NAME  # In a workdir or export: HF-layout T5.
TRANSFORMER_WEIGHTS = 'transformer.safetensors'  # In an export: the transformer's parameters.
EXPORT_SECTIONS = ('stage', 'compute_dtype', 'data', 'model', 'sampling', 'text', 'tokenizer')


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
  """How to sample. `SamplingSettings.from_config(config.sampling)` gives a run's defaults.

  Attributes:
    cfg_scale: classifier-free guidance: uncond + s * (cond - uncond); 1 = off.
    temperature: softmax temperature; 0 = greedy.
    first_frame_temperature: the temperature of the clip's first latent frame
      when it is sampled (where objects are placed); None = `temperature`.
    top_k: sample among the k most likely tokens; 0 = all.
    top_p: nucleus mass; 1 = off.
    seed: the token at each position draws from fold_in(key(seed), position).
    num_frames: frames to generate; None = the training clip; more = a long
      video (the window slides over latent frames).
    window_prefix_frames: latent frames carried into the next window of a
      long video.
    candidates: samples drawn per output of a task with a pixel condition or of
      uncond, keeping the one that best reproduces the condition (interpolate's
      weighed by how steadily it moves) or, for uncond, the steadiest
      (`videogen.transformer.candidates`; the first is the plain sample of
      `seed`); 1 = one sample.
    candidate_search: 'clip' ranks whole candidate clips; 'frame' draws the
      candidates one latent frame at a time, keeping the best of each before
      drawing the next (inpaint, outpaint, restore, restyle;
      `candidates.search_frames`).
    refine: sweeps refining the kept sample of a task with a pixel condition:
      each generated token in turn swapped for each of the model's
      `refine_top_k` likeliest there, kept when the sample reproduces the
      condition better (`videogen.transformer.refine`); 0 = off.
    refine_top_k: tokens tried at each position by a refine sweep.
    refine_min_prob: of those, only tokens the model gives at least this
      probability (guided, at temperature 1); 0 = all.
  """

  cfg_scale: float = 1.0
  temperature: float = 1.0
  first_frame_temperature: float | None = None
  top_k: int = 0
  top_p: float = 1.0
  seed: int = 0
  num_frames: int | None = None
  window_prefix_frames: int = 1
  candidates: int = 1
  candidate_search: str = 'clip'
  refine: int = 0
  refine_top_k: int = 4
  refine_min_prob: float = 0.0

  @classmethod
  def from_config(
    cls, config: ml_collections.ConfigDict, task: str | None = None, **overrides: Any
  ) -> SamplingSettings:
    """`config.sampling` values, then `config.sampling.per_task[task]`'s, then the
    `overrides` that are not None.

    Raises:
      ValueError: `per_task` names an unknown task or field.
    """
    per_task = config.get('per_task') or {}
    transformer_config.check_per_task(per_task)
    # Runs saved before a field existed take its default.
    defaults = transformer_config.sampling_config()
    merged = {name: config.get(name, defaults[name]) for name in transformer_config.PER_TASK_FIELDS}
    if task is not None and task in per_task:
      merged.update(per_task[task])
    first_frame = float(merged['first_frame_temperature'])
    values = dict(
      cfg_scale=float(merged['cfg_scale']),
      temperature=float(merged['temperature']),
      first_frame_temperature=None if first_frame < 0 else first_frame,
      top_k=int(merged['top_k']),
      top_p=float(merged['top_p']),
      candidates=int(merged['candidates']),
      candidate_search=str(merged['candidate_search']),
      refine=int(merged['refine']),
      refine_top_k=int(merged['refine_top_k']),
      refine_min_prob=float(merged['refine_min_prob']),
      seed=int(config.seed),
      window_prefix_frames=int(config.window_prefix_frames),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)

  def check(self) -> None:
    """Raises ValueError naming the first setting out of range."""
    problems = (
      ('cfg_scale', self.cfg_scale < 0, 'must be >= 0 (1 = no guidance)'),
      ('temperature', self.temperature < 0, 'must be >= 0 (0 = greedy)'),
      (
        'first_frame_temperature',
        self.first_frame_temperature is not None and self.first_frame_temperature < 0,
        'must be >= 0 (0 = greedy) or None (= temperature)',
      ),
      ('top_k', self.top_k < 0, 'must be >= 0 (0 = off)'),
      ('top_p', not 0 < self.top_p <= 1, 'must be in (0, 1] (1 = off)'),
      ('num_frames', self.num_frames is not None and self.num_frames < 1, 'must be >= 1'),
      ('candidates', self.candidates < 1, 'must be >= 1 (1 = one sample)'),
      (
        'candidates',
        self.candidates > 1 and self.temperature == 0 and not self.first_frame_temperature,
        'needs temperature > 0: greedy sampling draws the same candidate every time',
      ),
    )
    for name, bad, rule in problems:
      if bad:
        raise ValueError(f'{name}={getattr(self, name)} {rule}.')
    transformer_config.check_candidate_search(self.candidate_search)
    transformer_config.check_refine(dataclasses.asdict(self))


class TextToVideo(TaskSampling):
  """A trained text-to-video model. Build with `TextToVideo.load(path)`.

  A model trained on more tasks (`config.model.tasks`) also samples them:
  `unconditional`, `image_to_video`, `predict`, `interpolate`, `inpaint`,
  `outpaint`, `restore`, `restyle` (see `TaskSampling`), or `run_task(name, ...)`.

  Attributes:
    config: the run's config (sections model, sampling, text, data, tokenizer).
    tokenizer: the frozen `vq.Tokenizer`.
    text_encoder: the frozen `text.T5Encoder`.
    spec: the transformer's `TransformerSpec`.
    latent_shape: (t, h, w) tokens of one training clip.
    graphdef, params: the split transformer.
    step: the training step `load` restored, None for an export.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    tokenizer: vq.Tokenizer,
    text_encoder: text.T5Encoder,
    params: Any = None,
    *,
    mesh: jax.sharding.Mesh | None = None,
  ):
    """Assembles the model from loaded parts.

    Args:
      config: a transformer config.
      tokenizer: the video tokenizer the transformer was trained on.
      text_encoder: the T5 it was trained with.
      params: transformer parameters (`nnx.State`); None builds only the
        structure (the training stage passes its weights to `with_weights`).
      mesh: the mesh `params` live on when sharded (the training mesh);
        None: one device, and the models' sharding constraints are off.
    """
    self.config = config
    self.tokenizer = tokenizer
    self.text_encoder = text_encoder
    data = config.data
    self.latent_shape = tuple(
      int(s) for s in tokenizer.latent_shape(data.num_frames, data.height, data.width)
    )
    self.spec = TransformerSpec.from_config(
      config.model,
      vocab_size=tokenizer.codebook_size,
      latent_shape=self.latent_shape,
      text_dim=text_encoder.embed_dim,
      compute_dtype=config.compute_dtype,
    )
    abstract = nnx.eval_shape(lambda: Transformer(self.spec, rngs=nnx.Rngs(0)))
    self.graphdef, self.abstract_params, self.abstract_rest = nnx.split(abstract, nnx.Param, ...)
    self.params = params
    self.mesh = mesh
    self.step: int | None = None  # The checkpoint step `load` restored (None: an export).
    self._text_graphdef = text_encoder.graphdef
    self._text_state = text_encoder.state
    self._tokenizer_state = tokenizer.state

  # --- loading and saving ----------------------------------------------------

  @classmethod
  def load(cls, path: str | epath.PathLike, *, use_ema: bool = True) -> TextToVideo:
    """Loads a transformer workdir (latest checkpoint) or an exported model directory.

    Args:
      path: local or remote (`gs://`) directory; the model lands on the first
        local device whatever mesh it was trained on.
      use_ema: take the EMA weights when the run kept them (exports hold the
        weights they were written with).

    Raises:
      FileNotFoundError: not a videogen run/export, or a part of it is missing.
      ValueError: a tokenizer workdir, or another stage's run.
    """
    path = epath.Path(path)
    config = weights.read_config(path)
    if config.get('stage') != 'transformer':
      raise ValueError(
        f'{path} is a {config.get("stage")!r} run; text-to-video needs a transformer '
        'workdir or an exported model directory.'
      )
    tokenizer = vq.Tokenizer.load(str(find_tokenizer(path, config)))
    text_dir = path / TEXT_ENCODER_DIR
    if not (text_dir / 'config.json').exists():
      text_dir = epath.Path(config.text.path) if config.text.path else text_dir
    if not (text_dir / 'config.json').exists():
      raise FileNotFoundError(
        f'No text encoder for {path}: neither {path / TEXT_ENCODER_DIR} nor config.text.path '
        f'({config.text.path or "unset"}) holds one.'
      )
    encoder = text.T5Encoder.from_pretrained(
      text_dir, config.text.dtype, tokenizer_path=config.text.tokenizer_path or None
    )
    model = cls(config, tokenizer, encoder)
    step = None
    if weights.is_workdir(path):
      step, params, _ = weights.restore_model_at(
        path, model.abstract_params, model.abstract_rest, use_ema=use_ema
      )
      logging.info('Loaded %s (step %d).', path, step)
    else:
      params = weights.load_tree(path / TRANSFORMER_WEIGHTS, model.abstract_params)
      logging.info('Loaded the exported model %s.', path)
    model.params = params
    model.step = step
    return model

  def export(
    self, out: str | epath.PathLike, *, dtype: str | None = None, copy_text_encoder: bool = True
  ) -> dict[str, int]:
    """Writes a self-contained model directory that `TextToVideo.load` reads.

    Layout: `config.json` (the sections sampling needs), `transformer.safetensors`
    (parameters by logical path), `tokenizer/` (`vq.Tokenizer.export`) and
    `text_encoder/` (Hugging Face T5 layout: config.json, model.safetensors,
    spiece.model). With `copy_text_encoder=False` and a named external T5
    (`config.text.path`), the export refers to that path instead.

    Args:
      out: the directory (local or remote).
      dtype: cast floating-point weights, e.g. 'bfloat16'; None keeps float32
        (and samples equal the source's bit for bit).
      copy_text_encoder: copy a named external T5 into the export.

    Returns:
      Bytes written per part: {'transformer', 'tokenizer', 'text_encoder', 'total'}.
    """
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = ml_collections.ConfigDict({k: self.config[k] for k in EXPORT_SECTIONS})
    sizes = {
      'transformer': weights.save_tree(out / TRANSFORMER_WEIGHTS, self.params, dtype=dtype),
      'tokenizer': self.tokenizer.export(out / TOKENIZER_DIR, dtype=dtype),
    }
    external = bool(self.config.text.path)
    with config.unlocked():
      if external and copy_text_encoder:
        config.text.path = ''  # The copy below is the encoder now.
    if external and not copy_text_encoder:
      sizes['text_encoder'] = 0
    else:
      self.text_encoder.save_pretrained(out / TEXT_ENCODER_DIR)
      if config.text.tokenizer_path:
        shutil.copyfile(config.text.tokenizer_path, out / TEXT_ENCODER_DIR / 'spiece.model')
        with config.unlocked():
          config.text.tokenizer_path = ''
      sizes['text_encoder'] = sum(f.stat().length for f in (out / TEXT_ENCODER_DIR).iterdir())
    with config.unlocked():
      config.tokenizer.checkpoint = TOKENIZER_DIR
    text_json = json.dumps(config.to_dict(), indent=2, sort_keys=True)
    (out / weights.CONFIG_FILE).write_text(text_json)
    sizes['total'] = sum(sizes.values()) + len(text_json)
    return sizes

  def with_weights(
    self, params: Any, *, tokenizer_state: Any = None, text_state: Any = None
  ) -> TextToVideo:
    """The same model with other weights (the training stage's live state).

    Shares the compiled functions: sampling with new weights of the same
    shapes and shardings does not recompile.
    """
    clone = object.__new__(TextToVideo)
    clone.__dict__.update(self.__dict__)
    clone.params = params
    if tokenizer_state is not None:
      clone._tokenizer_state = tokenizer_state
    if text_state is not None:
      clone._text_state = text_state
    return clone

  # --- sampling ----------------------------------------------------------------

  @property
  def frames_per_clip(self) -> int:
    """Frames of one training clip (what `generate` returns by default)."""
    return int(self.config.data.num_frames)

  @property
  def fps(self) -> int:
    return int(self.config.sampling.fps)

  @property
  def max_frames(self) -> int:
    """The longest video the model's positions can address."""
    return self.tokenizer.num_frames(self.spec.max_latent_frames)

  def default_settings(self, task: str | None = None, **overrides: Any) -> SamplingSettings:
    """The run's `config.sampling` for `task` (its `per_task` entry over the shared
    values; None: the shared values alone), with the given (non-None) overrides."""
    return SamplingSettings.from_config(self.config.sampling, task, **overrides)

  def generate_task(self, *, image: Any = None, video: Any = None) -> str:
    """The task `generate` samples given these conditions: t2v; i2v with an image
    (predict on a multi-task model trained without i2v); predict with a video."""
    if image is not None:
      return 'i2v' if 'i2v' in self.spec.tasks or not self.spec.multitask else 'predict'
    return 'predict' if video is not None else 't2v'

  def tokenize_prompts(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Prompts -> (ids int32 [B, L], mask int32 [B, L]) for the T5."""
    return tokenize_prompts(self.text_encoder, prompts, self.config.text.max_length)

  def generate(
    self,
    prompts: Sequence[str],
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
    image: np.ndarray | None = None,
    video: np.ndarray | None = None,
  ) -> np.ndarray:
    """Samples `num_samples` videos per prompt.

    Args:
      prompts: text prompts (any unicode; longer than `config.text.max_length`
        tokens is truncated).
      settings: default `self.default_settings(task)` for the task sampled
        (`generate_task`: t2v, i2v or predict).
      num_samples: videos per prompt.
      image: uint8 [H, W, 3] first frame (image-to-video); any size, resized.
      video: uint8 [T, H, W, 3] clip to continue; its whole latent frames
        (1 + 4k frames each) are kept and the rest generated.

    Returns:
      uint8 [len(prompts) * num_samples, T, H, W, 3], prompt-major; T is
      `settings.num_frames` or the training clip's length.
    """
    if image is not None and video is not None:
      raise ValueError('Give an image (image-to-video) or a video (continuation), not both.')
    task = self.generate_task(image=image, video=video)
    settings = settings or self.default_settings(task)
    settings.check()
    candidates.check(task, settings.candidates, settings.candidate_search, settings.refine)
    if not prompts:
      raise ValueError('No prompts to sample.')
    if num_samples < 1:
      raise ValueError(f'num_samples={num_samples} must be >= 1.')
    if image is not None:
      video = np.asarray(image)[None]
    if self.spec.multitask:
      tasks.check_task(self.spec, task)
    return self._generate(prompts, settings, num_samples, task=task, video=video)

  def _generate(
    self,
    prompts: Sequence[str],
    settings: SamplingSettings,
    num_samples: int,
    *,
    task: str,
    video: np.ndarray | None = None,
    canvas: Callable[[int], jax.Array] | None = None,
    prefix: jax.Array | None = None,
    candidate: int = 0,
  ) -> np.ndarray:
    """`generate` after its checks, for any task.

    Args:
      task: the task token of a multi-task model (ignored by text-to-video ones).
      video: uint8 [T, H, W, 3] whose first latent frames are kept (i2v, predict).
      canvas: rows -> int32 [rows, t, h, w] conditioning canvas (multi-task
        models; default: the kept frames of `video`, mask elsewhere).
      prefix: int32 [rows, m, h, w] kept first latent frames, per row (instead
        of `video`'s).
      candidate: k > 0 draws from fold_in(key(seed), k) instead of key(seed)
        (`TaskSampling`'s candidates: other seeds, other candidates).
    """
    num_frames = self._num_frames(settings)
    tokens = self._generate_tokens(
      prompts,
      settings,
      num_samples,
      task=task,
      latent_frames=self.latent_frames_for(num_frames),
      video=video,
      canvas=canvas,
      prefix=prefix,
      candidate=candidate,
    )
    return self._decode_uint8(tokens)[:, :num_frames]

  def _num_frames(self, settings: SamplingSettings) -> int:
    """Frames `settings` asks for (default: a training clip), checked against the model."""
    num_frames = settings.num_frames or self.frames_per_clip
    if num_frames > self.max_frames:
      raise ValueError(
        f'num_frames={num_frames} is beyond what the model can generate '
        f'(at most {self.max_frames}: max_latent_frames={self.spec.max_latent_frames}).'
      )
    return num_frames

  def _generate_tokens(
    self,
    prompts: Sequence[str],
    settings: SamplingSettings,
    num_samples: int,
    *,
    task: str,
    latent_frames: int,
    video: np.ndarray | None = None,
    canvas: Callable[[int], jax.Array] | None = None,
    prefix: jax.Array | None = None,
    candidate: int = 0,
  ) -> jax.Array:
    """`_generate`'s tokens: int32 [rows, latent_frames, h, w], before decoding."""
    rows = [p for p in prompts for _ in range(num_samples)]
    with self._context():
      text_emb, mask = self._embed_prompts(rows)
      if video is not None:
        prefix = self.prefix_tokens(video, len(rows))
      task_prefix = None
      if self.spec.multitask:
        num_frames = self.tokenizer.num_frames(latent_frames)
        task_prefix = self._task_prefix(task, len(rows), num_frames, prefix, canvas)
      no_text = task == 'uncond' and self.spec.multitask
      return sampling.sample_tokens(
        (self.graphdef, self.params),
        text_emb,
        mask,
        latent_shape=self.latent_shape,
        num_latent_frames=latent_frames,
        prefix_tokens=prefix,
        cfg_scale=None if settings.cfg_scale == 1.0 or no_text else settings.cfg_scale,
        temperature=settings.temperature,
        first_frame_temperature=settings.first_frame_temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        rng=_candidate_key(settings.seed, candidate),
        window_prefix_frames=settings.window_prefix_frames,
        task_prefix=task_prefix,
        no_text=no_text,
      )

  def _embed_prompts(self, prompts: Sequence[str]) -> tuple[jax.Array, jax.Array]:
    """(T5 embeddings, mask) of `prompts` on the weights' devices (in `_context`)."""
    ids, mask = self._place(*self.tokenize_prompts(prompts))
    return _encode_text(self._text_graphdef, self._text_state, ids, mask), mask

  def _decode_uint8(self, tokens: jax.Array) -> np.ndarray:
    """int32 [N, t, h, w] -> uint8 [N, T, H, W, 3], gathered on every host."""
    with self._context():
      clips = _decode_tokens(self.tokenizer.graphdef, self._tokenizer_state, tokens)
    return _to_uint8(np.asarray(multihost_utils.process_allgather(clips, tiled=True)))

  def latent_frames_for(self, num_frames: int) -> int:
    """Latent frames that decode to at least `num_frames` frames."""
    latent = 1
    while self.tokenizer.num_frames(latent) < num_frames:
      latent += 1
    return latent

  def prefix_tokens(self, video: np.ndarray, batch: int) -> jax.Array:
    """Tokens of a conditioning clip (or one frame), repeated `batch` times.

    Args:
      video: uint8 [T, H, W, 3] (an image is [1, H, W, 3]); resized to the
        model's resolution; 1 + 4k frames give 1 + k latent frames, at most
        one fewer than a training clip has.
      batch: rows to make.

    Returns:
      int32 [batch, m, h, w].
    """
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
      raise ValueError(f'A conditioning clip is [T, H, W, 3] RGB; got shape {video.shape}.')
    data = self.config.data
    if video.shape[1:3] != (data.height, data.width):
      resized = jax.image.resize(
        video.astype(np.float32), (video.shape[0], data.height, data.width, 3), 'linear'
      )
      video = np.asarray(resized).round().clip(0, 255).astype(np.uint8)
    latent = 1
    while latent + 1 < self.latent_shape[0] and self.tokenizer.num_frames(latent + 1) <= len(video):
      latent += 1
    clip = jnp.asarray(video[: self.tokenizer.num_frames(latent)], jnp.float32)[None] / 127.5 - 1.0
    tokens = _encode_video(self.tokenizer.graphdef, self._tokenizer_state, clip)[:, :latent]
    return jnp.repeat(tokens, batch, axis=0)

  def _context(self):
    if self.mesh is None:
      return sharding.local_computation()
    return sharding.axis_rules(self.mesh, self.config.logical_axis_rules)

  def _place(self, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
    """Host arrays onto the weights' devices (replicated over a training mesh)."""
    target = (
      sharding.replicated(self.mesh)
      if self.mesh is not None
      else jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    )
    return tuple(jax.device_put(a, target) for a in arrays)


def tokenize_prompts(
  text_encoder: text.T5Encoder, prompts: Sequence[str], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
  """Prompts -> (ids int32 [B, max_length], mask int32 [B, max_length]) for `text_encoder`."""
  ids, mask = text_encoder.tokenizer(list(prompts), max_length)
  return np.asarray(ids, np.int32), np.asarray(mask, np.int32)


def find_tokenizer(path: epath.Path, config: ml_collections.ConfigDict) -> epath.Path:
  """The tokenizer directory of a transformer workdir or export (see the module doc)."""
  candidates = [path / TOKENIZER_DIR]
  named = config.tokenizer.checkpoint
  if named:
    named_path = epath.Path(named)
    candidates.append(named_path if named_path.is_absolute() else path / named_path)
    workdir_name = named_path.parent.parent.name if named_path.parent.name == 'checkpoints' else ''
    candidates.append(path.parent / (workdir_name or named_path.name))
  for candidate in candidates:
    if (candidate / weights.CONFIG_FILE).exists() or (
      candidate.parent.name == 'checkpoints' and candidate.exists()
    ):
      return candidate
  tried = ', '.join(str(c) for c in dict.fromkeys(candidates))
  raise FileNotFoundError(f'No video tokenizer for {path}; looked in: {tried}.')


def _to_uint8(video: np.ndarray) -> np.ndarray:
  return np.round((video + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


_encode_text: Callable[..., jax.Array] = jax.jit(text.encode_fn, static_argnums=0)
_encode_video: Callable[..., jax.Array] = jax.jit(vq.encode_fn, static_argnums=0)
_decode_tokens: Callable[..., jax.Array] = jax.jit(vq.decode_fn, static_argnums=0)


def _candidate_key(seed: int, candidate: int) -> jax.Array:
  """key(seed) for the plain sample, fold_in(key(seed), k) for candidate k > 0."""
  key = jax.random.key(seed)
  return jax.random.fold_in(key, candidate) if candidate else key
