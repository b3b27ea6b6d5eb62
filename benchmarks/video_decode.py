"""Clip decode throughput: ffmpeg (imageio-ffmpeg) vs PyAV, seeking to each clip's start.

Decodes `--clip_frames` frames from several start times of each source video
and resizes them to `--size`x`--size` (centre crop), one core: ffmpeg and
PyAV are asked for one decoding thread, and the script is meant to run under
`taskset -c 0`. Figures are clip frames per second of wall time.

  taskset -c 0 python benchmarks/video_decode.py --videos /tmp/footage/*.mp4 \
      --out benchmarks/results/video_decode

Decoders:
* `ffmpeg_pipe`: what the builder does (`clip_decode.decode_range`): ffmpeg
  seeks (`-ss` before `-i`), pipes full-size RGB frames, Pillow resizes.
* `ffmpeg_scale`: ffmpeg seeks, crops and scales (`area`) itself; 128x128 RGB
  comes through the pipe.
* `pyav`: PyAV seeks to the keyframe before the start, decodes up to it,
  converts full-size frames to RGB, Pillow resizes.
* `pyav_scale`: the same, but libswscale scales each frame to the crop's
  size on conversion (`to_ndarray(width=, height=)`), then the centre is cut.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import time

import numpy as np

from videogen.data import clip_decode, transforms


def _ffmpeg_exe() -> str:
  import imageio_ffmpeg  # noqa: PLC0415

  return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_pipe(path: str, start: float, frames: int, size: int) -> np.ndarray:
  out = []

  def keep(frame):
    out.append(transforms.resize_video(frame[None], size, size)[0])
    return len(out) == frames

  clip_decode.decode_range(path, keep, start=start)
  return np.stack(out)


def ffmpeg_scale(path: str, start: float, frames: int, size: int) -> np.ndarray:
  command = [
    _ffmpeg_exe(),
    '-loglevel', 'error',
    '-threads', '1',
    '-ss', f'{start:.6f}',
    '-i', path,
    '-frames:v', str(frames),
    '-vf', f"crop='min(iw,ih)':'min(iw,ih)',scale={size}:{size}:flags=area",
    '-filter_threads', '1',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-',
  ]  # fmt: skip
  raw = subprocess.run(command, capture_output=True, check=True).stdout
  return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def _pyav_frames(path: str, start: float, frames: int):
  import av  # noqa: PLC0415

  with av.open(path) as container:
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    stream.thread_type = 'SLICE'
    container.seek(int(start / stream.time_base), stream=stream, backward=True)
    count = 0
    for frame in container.decode(stream):
      if frame.time is not None and frame.time < start - 1e-3:
        continue  # Between the keyframe and the clip's start.
      yield frame
      count += 1
      if count == frames:
        return


def pyav(path: str, start: float, frames: int, size: int) -> np.ndarray:
  return np.stack(
    [
      transforms.resize_video(frame.to_ndarray(format='rgb24')[None], size, size)[0]
      for frame in _pyav_frames(path, start, frames)
    ]
  )


def pyav_scale(path: str, start: float, frames: int, size: int) -> np.ndarray:
  out = []
  for frame in _pyav_frames(path, start, frames):
    scale = size / min(frame.width, frame.height)
    width, height = round(frame.width * scale), round(frame.height * scale)
    image = frame.to_ndarray(format='rgb24', width=width, height=height, interpolation='AREA')
    top, left = (height - size) // 2, (width - size) // 2
    out.append(image[top : top + size, left : left + size])
  return np.stack(out)


DECODERS = {
  'ffmpeg_pipe': ffmpeg_pipe,
  'ffmpeg_scale': ffmpeg_scale,
  'pyav': pyav,
  'pyav_scale': pyav_scale,
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--videos', nargs='+', required=True)
  parser.add_argument('--starts', type=float, nargs='+', default=[1.3, 6.7, 11.1, 15.9])
  parser.add_argument('--clip_frames', type=int, default=17)
  parser.add_argument('--size', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--out', default='benchmarks/results/video_decode')
  args = parser.parse_args()
  results = {}
  reference = {}
  for name, decode in DECODERS.items():
    rates = []
    for path in args.videos:
      for start in args.starts:
        for _ in range(args.repeats):
          began = time.perf_counter()
          clip = decode(path, start, args.clip_frames, args.size)
          rates.append(len(clip) / (time.perf_counter() - began))
        key = (path, start)
        if key not in reference:
          reference[key] = clip.astype(np.float32)
        elif clip.shape == reference[key].shape:  # Same frames as the first decoder?
          error = float(np.abs(clip - reference[key]).mean())
          results.setdefault(f'{name}_mean_abs_diff_vs_ffmpeg_pipe', []).append(error)
        assert len(clip) == args.clip_frames, (name, path, start, len(clip))
    results[name] = {
      'clip_frames_per_s': statistics.median(rates),
      'min': min(rates),
      'max': max(rates),
    }
    print(f'{name}: {statistics.median(rates):.1f} clip frames/s (median of {len(rates)})')
  diffs = {k: float(np.mean(v)) for k, v in results.items() if k.endswith('_vs_ffmpeg_pipe')}
  for key in diffs:
    results.pop(key)
  record = {
    'videos': [{'path': os.path.basename(p), 'bytes': os.path.getsize(p)} for p in args.videos],
    'clip_frames': args.clip_frames,
    'size': args.size,
    'starts': args.starts,
    'cpu_affinity': sorted(os.sched_getaffinity(0)),
    'decoders': results,
    'mean_abs_pixel_diff_vs_ffmpeg_pipe': diffs,
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix('.json').write_text(json.dumps(record, indent=2) + '\n')
  lines = [
    f'Clip decode, {args.clip_frames} frames from {len(args.starts)} starts per video, '
    f'to {args.size}x{args.size}, one core ({len(args.videos)} 720p videos)',
    '',
    '| decoder | clip frames/s (median) | min | max | mean abs pixel diff vs ffmpeg_pipe |',
    '|---|---|---|---|---|',
  ]
  for name, figures in results.items():
    diff = diffs.get(f'{name}_mean_abs_diff_vs_ffmpeg_pipe', 0.0)
    lines.append(
      f'| {name} | {figures["clip_frames_per_s"]:.1f} | {figures["min"]:.1f} | '
      f'{figures["max"]:.1f} | {diff:.2f} |'
    )
  out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
