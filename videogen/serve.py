"""`videogen serve`: a web page and an HTTP API for a trained text-to-video model.

```
videogen serve --model runs/quickstart/transformer      # http://127.0.0.1:7860
```

A Gradio app (`pip install 'videogen[serve]'`) over
`videogen.transformer.TextToVideo`: a prompt, the sampling settings, an
optional first frame (image-to-video) or clip to continue, and the videos as
playable, downloadable MP4s with the `videogen sample` command that makes the
same videos again. Every input is also an argument of the `/generate` API
endpoint (`gradio_client`, curl). Requests queue and run one at a time by
default; a bad request is a message in the page, never a stopped server.

In a notebook: `serve.build_app(model, model_path=MODEL).launch(inline=True)`.
"""

from __future__ import annotations

import atexit
import dataclasses
import pathlib
import shlex
import shutil
import tempfile
import time
import uuid
from typing import Any

import gradio as gr
import numpy as np

from videogen import sample
from videogen.data import video_io
from videogen.transformer.inference import SamplingSettings, TextToVideo

DEFAULT_HOST = '127.0.0.1'  # Reachable from this machine only; 0.0.0.0 serves the network.
DEFAULT_PORT = 7860
MAX_SAMPLES = 8  # Most videos one request may ask for.
API_NAME = 'generate'  # The endpoint: `client.predict(..., api_name='/generate')`.


@dataclasses.dataclass(frozen=True)
class Result:
  """One request's output.

  Attributes:
    videos: uint8 [N, T, H, W, 3], exactly what `model.generate` returned.
    out_dir: where `sample.write_samples` wrote them (sample_NNN.mp4/.gif,
      samples.npy, prompts.json, grid.gif).
    command: the `videogen sample` command that makes the same videos.
    seconds: generation time.
  """

  videos: np.ndarray
  out_dir: pathlib.Path
  command: str
  seconds: float

  @property
  def mp4s(self) -> list[str]:
    return [str(self.out_dir / f'sample_{i:03d}.mp4') for i in range(len(self.videos))]


def example_prompts(model: TextToVideo) -> list[str]:
  """The run's fixed sample prompts (`config.sampling.prompts`: on `shapes`,
  captions of the kind it was trained on), without repeats."""
  return list(dict.fromkeys(str(p) for p in model.config.sampling.prompts if str(p).strip()))


def reproduce_command(
  model_path: str,
  prompt: str,
  settings: SamplingSettings,
  num_samples: int,
  *,
  first_frame: str | None = None,
  prefix_video: str | None = None,
  out: str = 'samples',
) -> str:
  """The `videogen sample` command line that generates the same videos."""
  parts = ['videogen', 'sample', '--model', model_path, '--prompt', prompt]
  parts += ['--num_samples', str(num_samples), '--cfg_scale', repr(settings.cfg_scale)]
  parts += ['--temperature', repr(settings.temperature), '--top_k', str(settings.top_k)]
  parts += ['--top_p', repr(settings.top_p), '--seed', str(settings.seed)]
  if settings.first_frame_temperature is not None:
    parts += ['--first_frame_temperature', repr(settings.first_frame_temperature)]
  if settings.num_frames is not None:
    parts += ['--num_frames', str(settings.num_frames)]
  if first_frame:
    parts += ['--first_frame', first_frame]
  if prefix_video:
    parts += ['--prefix_video', prefix_video]
  return shlex.join([*parts, '--out', out])


def run_request(
  model: TextToVideo,
  model_path: str,
  out_root: pathlib.Path,
  prompt: str,
  settings: SamplingSettings,
  num_samples: int,
  *,
  image_path: str | None = None,
  video_path: str | None = None,
  max_samples: int = MAX_SAMPLES,
) -> Result:
  """Checks a request, generates and writes its videos.

  Raises:
    ValueError: a one-line message the page shows (empty prompt, a setting out
      of range, an unreadable upload, a length the model cannot generate).
  """
  prompt = (prompt or '').strip()
  if not prompt:
    raise ValueError('Enter a prompt, e.g. "a red circle moving left".')
  if not 1 <= num_samples <= max_samples:
    raise ValueError(f'Number of samples {num_samples} must be from 1 to {max_samples}.')
  settings.check()
  num_frames = settings.num_frames or model.frames_per_clip
  if num_frames > model.max_frames:
    raise ValueError(
      f'Length {num_frames} frames is beyond what this model can generate '
      f'(at most {model.max_frames}; one training clip is {model.frames_per_clip}).'
    )
  if image_path and video_path:
    raise ValueError('Give a first frame (image to video) or a video to continue, not both.')
  image = sample.read_image(image_path) if image_path else None
  video = None
  if video_path:
    try:
      video = video_io.read_video(video_path)
    except video_io.VideoReadError as error:
      raise ValueError(f'The uploaded video is not readable ({error}).') from None
    if not len(video):
      raise ValueError('The uploaded video has no frames.')
  start = time.perf_counter()
  videos = model.generate([prompt], settings, num_samples=num_samples, image=image, video=video)
  seconds = time.perf_counter() - start
  out_dir = out_root / uuid.uuid4().hex
  sample.write_samples(str(out_dir), videos, [prompt] * len(videos), fps=model.fps)
  command = reproduce_command(
    model_path,
    prompt,
    settings,
    num_samples,
    first_frame=image_path,
    prefix_video=video_path,
  )
  return Result(videos=videos, out_dir=out_dir, command=command, seconds=seconds)


def build_app(
  model: TextToVideo,
  model_path: str,
  *,
  concurrency: int = 1,
  max_samples: int = MAX_SAMPLES,
  queue_size: int | None = None,
) -> gr.Blocks:
  """The Gradio app for `model` (queued; call `.launch(...)` on it).

  Args:
    model: the loaded model.
    model_path: the path it was loaded from (for the reproducing command).
    concurrency: generations that may run at once; more requests wait in the queue.
    max_samples: most videos per request.
    queue_size: most waiting requests; None = no limit.
  """
  out_root = pathlib.Path(tempfile.mkdtemp(prefix='videogen-serve-'))
  atexit.register(shutil.rmtree, out_root, ignore_errors=True)
  defaults = model.default_settings('t2v')
  clip, longest = model.frames_per_clip, model.max_frames
  hints = {
    name: _per_task_hint(model, name) for name in ('cfg_scale', 'temperature', 'top_k', 'top_p')
  }

  def initial(name: str) -> Any:
    """A setting's field starts empty (the task's value) when it differs by task."""
    return None if hints[name] else getattr(defaults, name)

  def generate(
    prompt: str,
    cfg_scale: float,
    temperature: float,
    top_k: float,
    top_p: float,
    seed: float,
    num_samples: float,
    num_frames: float,
    image: str | None,
    video: str | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's progress convention.
  ) -> tuple[list[tuple[str, str]], list[str], str, str]:
    progress(0.0, desc='Reading the request')
    try:
      task = model.generate_task(image=image or None, video=video or None)
      settings = model.default_settings(
        task,
        cfg_scale=_number(cfg_scale, float),
        temperature=_number(temperature, float),
        top_k=_number(top_k, int),
        top_p=_number(top_p, float),
        seed=_number(seed, int),
        num_frames=_number(num_frames, int) or None,
      )
      samples = _number(num_samples, int) or 1
      frames = settings.num_frames or clip
      progress(0.1, desc=f'Generating {samples} video(s) of {frames} frames')
      result = run_request(
        model,
        model_path,
        out_root,
        prompt,
        settings,
        samples,
        image_path=image or None,
        video_path=video or None,
        max_samples=max_samples,
      )
    except ValueError as error:
      raise gr.Error(str(error), print_exception=False) from None
    progress(1.0, desc='Done')
    gallery = [(path, f'#{i} (seed {settings.seed})') for i, path in enumerate(result.mp4s)]
    files = [*result.mp4s, str(result.out_dir / 'samples.npy')]
    n, t, h, w, _ = result.videos.shape
    info = f'{n} video(s), {t} frames of {h}x{w} at {model.fps} fps, in {result.seconds:.1f} s.'
    return gallery, files, result.command, info

  with gr.Blocks(title='videogen', analytics_enabled=False) as app:
    gr.Markdown(
      f'## videogen: text to video\n`{model_path}`: clips of {clip} frames '
      f'({model.config.data.height}x{model.config.data.width}, {model.fps} fps); '
      f'longest video {longest} frames.'
    )
    with gr.Row():
      with gr.Column():
        prompt = gr.Textbox(label='Prompt', placeholder='a red circle moving left', lines=2)
        button = gr.Button('Generate', variant='primary', elem_id='generate')
        with gr.Accordion('Sampling settings', open=True):
          with gr.Row():
            cfg_scale = gr.Number(
              initial('cfg_scale'),
              label='Guidance (CFG scale; 1 = off' + hints['cfg_scale'] + ')',
              minimum=0,
            )
            temperature = gr.Number(
              initial('temperature'),
              label='Temperature (0 = greedy' + hints['temperature'] + ')',
              minimum=0,
            )
          with gr.Row():
            top_k = gr.Number(
              initial('top_k'),
              label='Top-k (0 = off' + hints['top_k'] + ')',
              precision=0,
              minimum=0,
            )
            top_p = gr.Number(
              initial('top_p'),
              label='Top-p (1 = off' + hints['top_p'] + ')',
              minimum=0,
              maximum=1,
            )
          with gr.Row():
            seed = gr.Number(defaults.seed, label='Seed', precision=0)
            num_samples = gr.Slider(1, max_samples, 1, step=1, label='Number of samples')
          num_frames = gr.Number(
            0,
            label=f'Length in frames (0 = one clip of {clip}; up to {longest})',
            precision=0,
            minimum=0,
          )
        with gr.Accordion('Start from an image or a video (optional)', open=False):
          image = gr.Image(label='First frame (image to video)', type='filepath')
          video = gr.Video(label='Video to continue', include_audio=True)
          _clear_upload_errors(image, 'first frame')
          _clear_upload_errors(video, 'video')
      with gr.Column():
        gallery = gr.Gallery(label='Videos', columns=2, elem_id='videos')
        info = gr.Markdown(elem_id='info')
        command = gr.Textbox(
          label='Reproduce with', elem_id='command', buttons=['copy'], interactive=False
        )
        files = gr.File(label='Download (MP4 + samples.npy)', file_count='multiple')
    inputs = [prompt, cfg_scale, temperature, top_k, top_p, seed, num_samples, num_frames]
    inputs += [image, video]
    examples = example_prompts(model)
    if examples:
      gr.Examples([[p] for p in examples], inputs=[prompt], label='Example prompts')
    event = dict(
      fn=generate,
      inputs=inputs,
      outputs=[gallery, files, command, info],
      api_name=API_NAME,
      concurrency_id='generate',
      concurrency_limit=concurrency,
    )
    button.click(**event)
    prompt.submit(**{**event, 'api_name': False})
  app.queue(default_concurrency_limit=concurrency, max_size=queue_size)
  app.videogen_out_root = out_root  # Where the request outputs are written.
  return app


def launch(
  app: gr.Blocks,
  *,
  host: str = DEFAULT_HOST,
  port: int = DEFAULT_PORT,
  share: bool = False,
  block: bool = True,
  **kwargs: Any,
) -> gr.Blocks:
  """Starts the server (`block=False` returns once it listens).

  Raises:
    OSError: the port is taken.
  """
  app.launch(
    server_name=host,
    server_port=port,
    share=share,
    prevent_thread_lock=not block,
    show_error=True,
    ssr_mode=False,
    allowed_paths=[str(app.videogen_out_root)],
    **kwargs,
  )
  return app


def _clear_upload_errors(component: gr.components.Component, what: str) -> None:
  """An upload Gradio cannot read becomes a one-line message in the page, not its
  generic 'could not preprocess' report."""
  preprocess = component.preprocess

  def checked(payload: Any) -> Any:
    try:
      return preprocess(payload)
    except gr.Error:
      raise
    except Exception as error:  # noqa: BLE001 - whatever the decoder raised, say what failed.
      name = getattr(payload, 'orig_name', None) or 'file'
      raise gr.Error(
        f'The uploaded {what} ({name}) is not readable: {error}', print_exception=False
      ) from None

  component.preprocess = checked


def _per_task_hint(model: TextToVideo, name: str) -> str:
  """'; empty = t2v 1.0, predict 0.4' when setting `name` differs between the tasks
  the page samples (`config.sampling.per_task`), else ''."""
  names = dict.fromkeys(model.generate_task(**given) for given in ({}, {'image': 1}, {'video': 1}))
  values = {t: getattr(model.default_settings(t), name) for t in names}
  if len(set(values.values())) < 2:
    return ''
  return '; empty = ' + ', '.join(f'{t} {v:g}' for t, v in values.items())


def _number(value: Any, kind: type) -> Any:
  """A Gradio number (None when the field is empty) as int or float."""
  if value is None or value == '':
    return None
  try:
    return kind(value)
  except (TypeError, ValueError):
    raise ValueError(f'{value!r} is not a number.') from None
