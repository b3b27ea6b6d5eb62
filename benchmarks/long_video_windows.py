"""Cutting a long video into windows: streamed (the builder) vs decoded whole first.

`clip_examples.iter_clips` gives each `clip_seconds` window as soon as its
last frame is decoded and resizes only frames some window needs. The
reference, measured in the same run, is what the builder did before:
decode every frame resized to the stored size, then cut the windows. Peak
memory is Python's traced allocations (numpy's arrays are traced), so it
counts frames and clips, not the decoder's own buffers.

  python benchmarks/long_video_windows.py --video /tmp/long.mp4 \
      --out benchmarks/results/long_video_windows
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import tracemalloc

import numpy as np

from videogen.data import clip_decode, clip_examples, manifest, transforms


def streamed(settings: clip_examples.ClipSettings, row: manifest.ClipRow) -> int:
  report = clip_examples.RowReport()
  for _ in clip_examples.iter_clips(settings, row, 0, report):
    pass  # The builder writes each clip out here.
  return report.clips


def whole_then_cut(settings: clip_examples.ClipSettings, row: manifest.ClipRow) -> int:
  frames = []
  decoded = clip_decode.decode_range(
    row.location,
    lambda frame: frames.append(
      transforms.resize_video(frame[None], settings.height, settings.width)[0]
    ),
  )
  spans = clip_decode.window_starts(
    len(frames),
    decoded.fps,
    settings.clip_seconds,
    settings.clip_stride_seconds,
    settings.min_frames,
  )
  clips = [np.stack(frames[first:last]) for first, last in spans]  # All held until written.
  return len(clips)


def measure(method, settings, row, fps: float) -> dict[str, float]:
  tracemalloc.start()
  begin = time.perf_counter()
  clips = method(settings, row)
  seconds = time.perf_counter() - begin
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  frames = clips * round(settings.clip_seconds * fps)
  return {
    'clips': clips,
    'seconds': round(seconds, 2),
    'clip_frames_per_s': round(frames / seconds, 1),
    'peak_mib': round(peak / 2**20, 1),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--video', required=True)
  parser.add_argument('--size', type=int, default=128)
  parser.add_argument('--clip_seconds', type=float, default=2.0)
  parser.add_argument('--strides', type=float, nargs='+', default=[2.0, 10.0])
  parser.add_argument('--out', default='benchmarks/results/long_video_windows')
  args = parser.parse_args()
  row = manifest.ClipRow(args.video, 'long', None, None, 1, args.video)
  with clip_decode.open_range(args.video) as stream:
    fps, duration = stream.fps, stream.duration
  rows = []
  for stride in args.strides:
    settings = clip_examples.ClipSettings(
      height=args.size,
      width=args.size,
      max_frames=0,
      min_frames=1,
      clip_seconds=args.clip_seconds,
      clip_stride_seconds=stride,
      from_manifest=True,
    )
    for name, method in (('whole_then_cut', whole_then_cut), ('streamed', streamed)):
      result = measure(method, settings, row, fps)
      rows.append({'method': name, 'stride_seconds': stride, **result})
      print(json.dumps(rows[-1]), flush=True)
  record = {
    'video': pathlib.Path(args.video).name,
    'fps': fps,
    'duration_s': round(duration, 1),
    'size': args.size,
    'clip_seconds': args.clip_seconds,
    'rows': rows,
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix('.json').write_text(json.dumps(record, indent=2) + '\n')
  lines = [
    f'Windows of {args.clip_seconds:g} s cut from {record["video"]} '
    f'({record["duration_s"]} s at {fps:g} fps) at {args.size}x{args.size}',
    '',
    '| stride | method | clips | seconds | clip frames/s | peak traced memory (MiB) | '
    'memory / reference | speed / reference |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ]
  for row_ in rows:
    ref = next(
      r
      for r in rows
      if r['method'] == 'whole_then_cut' and r['stride_seconds'] == row_['stride_seconds']
    )
    lines.append(
      f'| {row_["stride_seconds"]:g} s | {row_["method"]} | {row_["clips"]} | {row_["seconds"]} | '
      f'{row_["clip_frames_per_s"]} | {row_["peak_mib"]} | '
      f'{row_["peak_mib"] / ref["peak_mib"]:.3f} | '
      f'{row_["clip_frames_per_s"] / ref["clip_frames_per_s"]:.2f} |'
    )
  out.with_suffix('.md').write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
  main()
