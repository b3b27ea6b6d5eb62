"""`videogen tokenize --video` / `videogen detokenize`: a video file <-> its tokens.

```
videogen tokenize   --tokenizer runs/tok --video in.mp4 --out in.tokens.npz
videogen detokenize --tokenizer runs/tok --tokens in.tokens.npz --out out.mp4
```

The video is decoded (optionally resized with `--height/--width`, centre
crop; by default its own size, cropped to a multiple of the tokenizer's
spatial downsampling) and encoded in consecutive chunks of `chunk_frames`
frames (1 + temporal downsampling * k, the causal tokenizer's unit); the
last chunk is filled by repeating the final frame, and decoding trims it
again. The `.npz` (no pickle: every entry a plain numpy array) holds:

| key | meaning |
|---|---|
| `tokens` | int32 [chunks, t, h, w] |
| `num_frames` | frames of the tokenized video (before chunk padding) |
| `fps` | its frame rate |
| `height`, `width` | the frame size the tokens decode to |
| `frame_height`, `frame_width` | the size before the centre crop to a whole latent grid |
| `codebook_size` | distinct tokens of the tokenizer |
| `chunk_frames` | frames per chunk |
| `psnr` | PSNR (dB) of the decoded tokens against the tokenized frames |
| `source` | the input file's path |

The compression ratio is raw RGB bytes (`frames * height * width * 3`) over
the token bits (`tokens * log2(codebook_size)` / 8): what an ideal entropy-free
packing of the tokens would take. The `.npz` size is printed as well.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from videogen.data import transforms, video_io
from videogen.vq import metrics

DEFAULT_LATENT_FRAMES = 5  # Chunks of 1 + 4 * 4 = 17 frames for a 4x temporal tokenizer.


@dataclasses.dataclass(frozen=True)
class TokensReport:
  """What a tokenize or detokenize run did.

  Attributes:
    out: the file written.
    num_frames: video frames covered.
    height: frame height.
    width: frame width.
    num_tokens: tokens stored (chunk padding included).
    codebook_size: distinct tokens.
    compression_ratio: raw RGB bytes / ideal token bytes.
    file_bytes: size of the written file.
    psnr: dB of the decoded video against the tokenized frames.
  """

  out: str
  num_frames: int
  height: int
  width: int
  num_tokens: int
  codebook_size: int
  compression_ratio: float
  file_bytes: int
  psnr: float

  def summary(self) -> str:
    raw = self.num_frames * self.height * self.width * 3
    return (
      f'{self.out}: {self.num_frames} frames of {self.height}x{self.width} <-> '
      f'{self.num_tokens} tokens of {self.codebook_size} codes; compression ratio '
      f'{self.compression_ratio:.1f}:1 ({raw} raw bytes, '
      f'{self.num_tokens * math.log2(self.codebook_size) / 8:.0f} token bytes; '
      f'file {self.file_bytes} bytes); PSNR {self.psnr:.2f} dB'
    )


def compression_ratio(
  num_frames: int, height: int, width: int, num_tokens: int, codes: int
) -> float:
  """Raw uint8 RGB bytes over `num_tokens * log2(codes)` bits."""
  return num_frames * height * width * 3 / (num_tokens * math.log2(codes) / 8)


def _fit_size(tokenizer, height: int, width: int) -> tuple[int, int]:
  """The largest size <= (height, width) whose latent grid is whole."""
  frames = tokenizer.num_frames_for(1)
  for step in range(1, min(height, width) + 1):  # The spatial downsampling factor.
    try:
      tokenizer.latent_shape(frames, step, step)
      return height // step * step, width // step * step
    except ValueError:
      continue
  raise ValueError(f'Frames of {height}x{width} are smaller than one token of the tokenizer.')


def _chunks(video: np.ndarray, chunk_frames: int) -> np.ndarray:
  """uint8 [T, H, W, 3] -> [ceil(T / chunk), chunk, H, W, 3], last frame repeated."""
  count = -(-len(video) // chunk_frames)
  return video_io.pad_frames(video, count * chunk_frames).reshape(
    count, chunk_frames, *video.shape[1:]
  )


def _decode_chunks(tokenizer, tokens: np.ndarray, num_frames: int, batch: int) -> np.ndarray:
  """int32 [chunks, t, h, w] -> uint8 [num_frames, H, W, 3]."""
  parts = [tokenizer.decode_uint8(tokens[i : i + batch]) for i in range(0, len(tokens), batch)]
  video = np.concatenate(parts)
  return video.reshape(-1, *video.shape[2:])[:num_frames]


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
  """Mean PSNR (dB) of uint8 clips [T, H, W, 3]."""
  scale = lambda v: v.astype(np.float32)[None] / 127.5 - 1.0  # noqa: E731
  return float(np.asarray(metrics.psnr(scale(reference), scale(decoded)))[0])


def tokenize_video(
  tokenizer,
  video_path: str,
  out: str,
  *,
  height: int = 0,
  width: int = 0,
  max_frames: int = 0,
  latent_frames: int = DEFAULT_LATENT_FRAMES,
  batch: int = 4,
) -> TokensReport:
  """Encodes a video file into an `.npz` of tokens (see the module docstring).

  Args:
    tokenizer: a `videogen.vq.Tokenizer`.
    video_path: the video file.
    out: the `.npz` to write.
    height: frame height to encode at; 0 = the video's (cropped to fit).
    width: frame width; 0 = the video's.
    max_frames: encode at most this many frames; 0 = all.
    latent_frames: token frames per chunk (chunk_frames follows).
    batch: chunks encoded together.
  """
  video = video_io.read_video(video_path, max_frames=max_frames)
  fps = _fps(video_path)
  if height or width:
    video = transforms.resize_video(video, height or video.shape[1], width or video.shape[2])
  frame_h, frame_w = video.shape[1:3]
  crop_h, crop_w = _fit_size(tokenizer, *video.shape[1:3])
  if (crop_h, crop_w) != video.shape[1:3]:
    top, left = (video.shape[1] - crop_h) // 2, (video.shape[2] - crop_w) // 2
    video = video[:, top : top + crop_h, left : left + crop_w]
  chunk_frames = tokenizer.num_frames_for(latent_frames)
  chunks = _chunks(video, chunk_frames)
  tokens = np.concatenate(
    [
      np.asarray(tokenizer.encode_uint8(chunks[i : i + batch]))
      for i in range(0, len(chunks), batch)
    ]
  ).astype(np.int32)
  decoded = _decode_chunks(tokenizer, tokens, len(video), batch)
  quality = psnr(video, decoded)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  np.savez_compressed(
    out,
    tokens=tokens,
    num_frames=np.int64(len(video)),
    fps=np.float64(fps),
    height=np.int64(crop_h),
    width=np.int64(crop_w),
    frame_height=np.int64(frame_h),
    frame_width=np.int64(frame_w),
    codebook_size=np.int64(tokenizer.codebook_size),
    chunk_frames=np.int64(chunk_frames),
    psnr=np.float64(quality),
    source=np.str_(os.path.abspath(video_path)),
  )
  return TokensReport(
    out=out,
    num_frames=len(video),
    height=crop_h,
    width=crop_w,
    num_tokens=tokens.size,
    codebook_size=tokenizer.codebook_size,
    compression_ratio=compression_ratio(
      len(video), crop_h, crop_w, tokens.size, tokenizer.codebook_size
    ),
    file_bytes=os.path.getsize(out),
    psnr=quality,
  )


def read_tokens(path: str) -> dict[str, np.ndarray]:
  """The arrays of a tokens `.npz` (read without pickle).

  Raises:
    ValueError: a key is missing (not a `videogen tokenize` file).
  """
  with np.load(path, allow_pickle=False) as file:
    arrays = {key: file[key] for key in file.files}
  missing = {'tokens', 'num_frames', 'fps', 'height', 'width', 'codebook_size'} - set(arrays)
  if missing:
    raise ValueError(f'{path} is not a videogen tokens file: no {", ".join(sorted(missing))}.')
  return arrays


def detokenize(tokenizer, tokens_path: str, out: str, *, batch: int = 4) -> TokensReport:
  """Decodes a tokens `.npz` into a video file (`.mp4` or `.gif`).

  The PSNR is against the source video named in the file when it is still
  there (decoded at the stored size), else the one measured at tokenize time.

  Raises:
    ValueError: the tokens do not belong to this tokenizer (codebook size).
  """
  arrays = read_tokens(tokens_path)
  tokens = arrays['tokens'].astype(np.int32)
  if int(arrays['codebook_size']) != tokenizer.codebook_size:
    raise ValueError(
      f'{tokens_path} holds tokens of a {int(arrays["codebook_size"])}-code tokenizer; this '
      f'one has {tokenizer.codebook_size} codes.'
    )
  num_frames = int(arrays['num_frames'])
  video = _decode_chunks(tokenizer, tokens, num_frames, batch)
  height, width = video.shape[1:3]
  video_io.write_video(out, video, fps=float(arrays['fps']) or 8.0)
  quality = float(arrays['psnr']) if 'psnr' in arrays else float('nan')
  source = str(arrays['source']) if 'source' in arrays else ''
  if source and os.path.isfile(source):
    reference = video_io.read_video(source, max_frames=num_frames)
    size = (int(arrays.get('frame_height', height)), int(arrays.get('frame_width', width)))
    if reference.shape[1:3] != size:
      reference = transforms.resize_video(reference, *size)
    top, left = (reference.shape[1] - height) // 2, (reference.shape[2] - width) // 2
    reference = reference[:, top : top + height, left : left + width]
    if reference.shape == video.shape:
      quality = psnr(reference, video)
  return TokensReport(
    out=out,
    num_frames=num_frames,
    height=height,
    width=width,
    num_tokens=tokens.size,
    codebook_size=tokenizer.codebook_size,
    compression_ratio=compression_ratio(
      num_frames, height, width, tokens.size, tokenizer.codebook_size
    ),
    file_bytes=os.path.getsize(out),
    psnr=quality,
  )


def _fps(path: str) -> float:
  try:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top

    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    reader.close()
    return float(meta.get('fps') or 8.0)
  except (RuntimeError, OSError, StopIteration):
    return 8.0  # GIFs and odd containers: the default of videogen's writers.


# --- a dataset split into token shards (`videogen tokenize --config`) ---------


@dataclasses.dataclass
class DatasetReport:
  """What `tokenize_dataset` did on this process."""

  out: str
  process_index: int
  process_count: int
  num_devices: int
  splits: list

  def summary(self) -> str:
    lines = [
      f'Token shards in {self.out} (process {self.process_index} of {self.process_count}, '
      f'{self.num_devices} local devices):'
    ]
    for split in self.splits:
      lines.append(
        f'  {split.split}: {split.num_clips} clips in {split.num_shards} shards; this process '
        f'encoded {split.encoded_shards} shards ({split.encoded_clips} clips, '
        f'{split.clips_per_s:.1f} clips/s) and found {split.skipped_shards} finished.'
      )
    return '\n'.join(lines)


def tokenize_dataset(
  tokenizer,
  tokenizer_path: str,
  config,
  out: str,
  *,
  clips_per_shard: int = 1024,
  per_device_batch: int = 4,
) -> DatasetReport:
  """Encodes the train and eval splits of `config.data` into token shards.

  Every process runs this (after `jax.distributed.initialize` when there
  are several); each encodes its shards on all its local devices. See
  `videogen.data.token_shards` for the layout; resumable.

  Args:
    tokenizer: the loaded `videogen.vq.Tokenizer`.
    tokenizer_path: where it was loaded from (recorded in tokens_info.json).
    config: a training config (its `data` section names the dataset).
    out: the output directory (local or `gs://`).
    clips_per_shard: clips per ArrayRecord shard.
    per_device_batch: clips per device per encoder call.

  Raises:
    ValueError: the config's clips do not fit the tokenizer.
  """
  import jax  # noqa: PLC0415

  from videogen.data import build, token_shards  # noqa: PLC0415

  data = config.data
  latent = tokenizer.latent_shape(data.num_frames, data.height, data.width)
  if clips_per_shard < 1 or per_device_batch < 1:
    raise ValueError(
      f'--clips_per_shard and the per-device batch must be >= 1, got {clips_per_shard} and '
      f'{per_device_batch}.'
    )
  build.ensure_built(data)
  encode_clips = tokenizer.device_encoder()

  def encode(video: np.ndarray) -> np.ndarray:
    return np.asarray(encode_clips(video), np.int32)

  batch = per_device_batch * jax.local_device_count()
  index, count = jax.process_index(), jax.process_count()
  splits = [
    token_shards.write_split(
      config,
      out,
      split,
      encode,
      batch_size=batch,
      clips_per_shard=clips_per_shard,
      process_index=index,
      process_count=count,
    )
    for split in dict.fromkeys((data.train_split, data.eval_split))
  ]
  if index == 0:
    token_shards.write_info(
      out,
      {
        'tokenizer': tokenizer_path,
        'codebook_size': tokenizer.codebook_size,
        'latent_shape': list(latent),
        'clip': {
          'num_frames': data.num_frames,
          'frame_stride': data.frame_stride,
          'height': data.height,
          'width': data.width,
        },
        'dataset': {'name': data.name, 'source_dir': data.source_dir},
        'splits': {
          split.split: {'clips': split.num_clips, 'shards': split.num_shards} for split in splits
        },
      },
    )
  return DatasetReport(out, index, count, len(jax.local_devices()), splits)
