"""`videogen export --workdir W --out DIR`: a trained run as a self-contained directory.

A transformer workdir becomes a model directory (`TextToVideo.export`): the
sampling config, `transformer.safetensors`, `tokenizer/` and
`text_encoder/` (Hugging Face T5 layout). A tokenizer workdir becomes a
tokenizer directory (`vq.Tokenizer.export`), for people who only want
tokens. Both load with the same `load(path)` as a workdir does, from a local
path or `gs://`, without orbax and without pickle; samples from an export
equal those of its workdir (float32 weights, same seed).
"""

from __future__ import annotations

import dataclasses
import time

from etils import epath

from videogen import weights


@dataclasses.dataclass
class ExportReport:
  """What `export` wrote.

  Attributes:
    stage: 'transformer' or 'tokenizer'.
    source: the workdir (and the step) it came from.
    out: the export directory.
    sizes: bytes written per part, with 'total'.
    seconds: wall time of the export, loading included.
  """

  stage: str
  source: str
  out: str
  sizes: dict[str, int]
  seconds: float

  def summary(self) -> str:
    parts = ', '.join(f'{k} {_mib(v)}' for k, v in self.sizes.items() if k != 'total')
    if self.stage == 'transformer':
      load = f'videogen sample --model {self.out} --prompt ... --out OUTDIR'
    else:
      load = f'videogen.vq.Tokenizer.load({self.out!r})'
    return (
      f'Exported the {self.stage} of {self.source} to {self.out}: '
      f'{_mib(self.sizes["total"])} ({parts}) in {self.seconds:.1f} s.\nLoad it with {load}'
    )


def _mib(size: int) -> str:
  return f'{size / 2**20:.2f} MiB'


def export(
  workdir: str, out: str, *, dtype: str = 'float32', copy_text_encoder: bool = True
) -> ExportReport:
  """Exports the latest checkpoint (EMA weights when kept) of `workdir` into `out`.

  Args:
    workdir: a transformer or tokenizer training workdir (local or gs://).
    out: the directory to write.
    dtype: 'float32' (samples equal the workdir's) or 'bfloat16' (half the size).
    copy_text_encoder: for a run on a named external T5, copy it in rather
      than refer to its path.
  """
  start = time.perf_counter()
  config = weights.read_config(workdir)
  if not weights.is_workdir(workdir):
    raise ValueError(f'{workdir} has no checkpoints/: export takes a training workdir.')
  precision = None if dtype == 'float32' else dtype
  if config.get('stage') == 'transformer':
    from videogen.transformer.inference import TextToVideo

    model = TextToVideo.load(workdir)
    sizes = model.export(out, dtype=precision, copy_text_encoder=copy_text_encoder)
    step = model.step
  elif config.get('stage') == 'tokenizer':
    from videogen import vq

    tokenizer = vq.Tokenizer.load(workdir)
    total = tokenizer.export(out, dtype=precision)
    sizes = {'tokenizer': total, 'total': total}
    step = tokenizer.step
  else:
    raise ValueError(f'{workdir} is a {config.get("stage")!r} run; export takes a training run.')
  return ExportReport(
    stage=config.stage,
    source=f'{workdir} (step {step})',
    out=str(epath.Path(out)),
    sizes=sizes,
    seconds=time.perf_counter() - start,
  )
