"""Preparing the dataset a config names: `build_dataset` and `ensure_built`.

`shapes` and `video_folder` are built here, offline. TFDS writes into an
`incomplete.*` directory next to the final one and renames it into place only
after every split is written, so a build that fails (or is killed) leaves no
half dataset behind and never touches datasets built before. A TFDS dataset
named by `config.data.name` is only checked: it must have been prepared (as
array_record) with `tfds build` or `videogen build-dataset` where it could be
downloaded.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shlex
import time
import uuid

import ml_collections
import tensorflow_datasets as tfds
from etils import epath

from videogen.data import config as config_lib
from videogen.data import sources, video_folder

_POLL_SECONDS = 2.0
_SHORT_SCENES_LISTED = 10  # The report lists this many short scenes, then counts the rest.


@dataclasses.dataclass
class BuildReport:
  """What `build_dataset` did.

  Attributes:
    name: dataset name ('shapes', 'video_folder', 'ucf101', ...).
    config_name: TFDS builder config name ('' when the dataset has none).
    path: the dataset's directory (data_dir/name/config/version).
    num_examples: clips per split.
    skipped: files left out, with reasons (video_folder only).
    short_scenes: scenes left out as shorter than one window (video_folder
      with `scene_detect` only), named `<video>#t=<start>,<end>`.
    already_built: True when the dataset existed and nothing was written.
    seconds: wall time of the build (0 when already built).
  """

  name: str
  config_name: str
  path: str
  num_examples: dict[str, int]
  skipped: list[video_folder.SkippedFile] = dataclasses.field(default_factory=list)
  short_scenes: list[video_folder.SkippedFile] = dataclasses.field(default_factory=list)
  already_built: bool = False
  seconds: float = 0.0

  def summary(self) -> str:
    """Several lines for people: where, how many, what was skipped and why."""
    title = f'{self.name}/{self.config_name}' if self.config_name else self.name
    verb = 'already built' if self.already_built else f'built in {self.seconds:.1f} s'
    lines = [f'Dataset {title} {verb} at {self.path}']
    lines += [f'  {split}: {count} clips' for split, count in sorted(self.num_examples.items())]
    if self.skipped:
      lines.append(f'  skipped {len(self.skipped)} files:')
      lines += [
        f'    {f"row {item.row}, " if item.row else ""}{item.path}: {item.reason}'
        for item in self.skipped
      ]
    if self.short_scenes:
      lines.append(f'  scenes shorter than one window, left out: {len(self.short_scenes)}')
      lines += [
        f'    row {item.row}, {item.path}' if item.row else f'    {item.path}'
        for item in self.short_scenes[:_SHORT_SCENES_LISTED]
      ]
      if len(self.short_scenes) > _SHORT_SCENES_LISTED:
        lines.append(f'    ... and {len(self.short_scenes) - _SHORT_SCENES_LISTED} more')
    return '\n'.join(lines)

  def __str__(self) -> str:
    return self.summary()


def _report(
  data: ml_collections.ConfigDict,
  builder: tfds.core.DatasetBuilder,
  already_built: bool,
  seconds: float,
) -> BuildReport:
  metadata = builder.info.metadata or {}
  return BuildReport(
    name=builder.name,
    config_name=builder.builder_config.name if builder.builder_config else '',
    path=os.fspath(builder.data_path),
    num_examples={name: split.num_examples for name, split in builder.info.splits.items()},
    skipped=[video_folder.SkippedFile(**item) for item in metadata.get('skipped', [])],
    short_scenes=[video_folder.SkippedFile(**item) for item in metadata.get('short_scenes', [])],
    already_built=already_built,
    seconds=seconds,
  )


def _check_folder_unchanged(
  data: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder
) -> None:
  """Refuses a video_folder build whose folder changed since (when the folder is here)."""
  if data.name != config_lib.VIDEO_FOLDER:
    return
  current = video_folder.current_fingerprint(data)
  saved = (builder.info.metadata or {}).get('fingerprint')
  if current and saved and saved != current:
    source = data.get('manifest', '') or data.source_dir
    raise RuntimeError(
      f'The dataset at {builder.data_path} was built from an earlier state of '
      f'{source} (captions or videos changed since). Delete '
      f'{builder.data_path} to rebuild it from the folder as it is now.'
    )


def build_dataset(data: ml_collections.ConfigDict) -> BuildReport:
  """Builds the dataset `config.data` names, unless it is already there.

  `shapes` and `video_folder` are generated locally; a TFDS dataset by name is
  downloaded and prepared by TFDS (as array_record), which needs internet
  access (and for some datasets a manual download).

  Args:
    data: the `config.data` section.

  Returns:
    A BuildReport (print it: `str(report)` is a summary).
  """
  config_lib.validate(data)
  if data.name == config_lib.VIDEO_FOLDER:  # Bad input fails here, by path.
    video_folder.read_clips(video_folder.video_folder_config(data))
  builder = sources.get_builder(data)
  if builder.is_prepared():  # Its info (splits, skipped files) came from disk.
    _check_folder_unchanged(data, builder)
    return _report(data, builder, already_built=True, seconds=0.0)
  start = time.perf_counter()
  if data.get('beam_runner', ''):
    _beam_build(data, builder)
  else:
    builder.download_and_prepare(file_format=sources.ARRAY_RECORD)
  return _report(data, builder, already_built=False, seconds=time.perf_counter() - start)


def _beam_build(data: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder) -> None:
  """Runs the build as an Apache Beam pipeline (`config.data.beam_runner`)."""
  if data.name != config_lib.VIDEO_FOLDER:
    raise ValueError(
      f'config.data.beam_runner builds video_folder datasets; {data.name!r} is built in process '
      "(set config.data.beam_runner='')."
    )
  try:
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
      "config.data.beam_runner needs Apache Beam: pip install 'videogen[beam]'."
    ) from error
  options = pipeline_options.PipelineOptions(
    [f'--runner={data.beam_runner}', *shlex.split(data.get('beam_options', ''))]
  )
  skipped_dir = epath.Path(builder.data_path).parent / f'.skipped-{uuid.uuid4().hex[:12]}'
  builder.use_beam(os.fspath(skipped_dir))
  try:
    builder.download_and_prepare(
      file_format=sources.ARRAY_RECORD,
      download_config=tfds.download.DownloadConfig(beam_options=options),
    )
  finally:
    if skipped_dir.exists():
      skipped_dir.rmtree()


def _process_topology(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return process_index, process_count


def _distributed() -> bool:
  """Whether JAX runs as several processes (jax.distributed.initialize)."""
  import jax  # pylint: disable=g-import-not-at-top  # Only multi-process runs need it.

  return jax.process_count() > 1


_BARRIERS = itertools.count()  # Every process calls ensure_built in the same order.


def _barrier(name: str, timeout_s: float) -> None:
  """Every process waits here for up to `timeout_s`: long enough for a build.

  The coordination service's barrier, not a device collective: a collective
  barrier (`sync_global_devices`) gives up after the CPU collectives' timeout,
  which a process waiting out another's dataset build can exceed (seen as an
  abort of a 2-process run on a loaded 2-core machine).
  """
  from jax._src import distributed  # pylint: disable=g-import-not-at-top

  client = distributed.global_state.client
  if client is None:  # Multi-process without jax.distributed's client: a collective.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)
    return
  client.wait_at_barrier(name, int(timeout_s * 1000))


def _poll_until_built(data: ml_collections.ConfigDict, timeout_s: float) -> None:
  """Waits for another process on this host to finish building (no JAX barrier)."""
  deadline = time.monotonic() + timeout_s
  while not sources.get_builder(data).is_prepared():
    if time.monotonic() > deadline:
      raise TimeoutError(
        f'Waited {timeout_s:.0f} s for process 0 to build {data.name!r} in '
        f'{config_lib.resolve_data_dir(data)}.'
      )
    time.sleep(_POLL_SECONDS)


def ensure_built(
  data: ml_collections.ConfigDict,
  *,
  process_index: int | None = None,
  process_count: int | None = None,
  timeout_s: float = 3600.0,
) -> None:
  """Makes sure the dataset `config.data` names can be read; builds it if needed.

  Quiet when the dataset exists. In a multi-process run only process 0
  builds; the others wait for it (a JAX barrier when JAX runs distributed,
  else by polling the data dir) and then check that they see the dataset,
  which needs a data_dir shared by all hosts (e.g. a gs:// bucket) or one
  built on every host beforehand.

  Args:
    data: the `config.data` section.
    process_index: this process; default `jax.process_index()`.
    process_count: number of processes; default `jax.process_count()`.
    timeout_s: how long the other processes wait for process 0's build.

  Raises:
    sources.DatasetNotReadyError: a TFDS dataset by name is not prepared, or
      the dataset is still missing after process 0's build.
  """
  config_lib.validate(data)
  builder = sources.get_builder(data)
  if data.name not in config_lib.BUILT_DATASETS:
    if not builder.is_prepared():
      raise sources.DatasetNotReadyError(sources.not_prepared_message(data, builder))
    return
  process_index, process_count = _process_topology(process_index, process_count)
  # Distributed processes all meet at the barrier, built or not: a process that
  # found the dataset prepared (because process 0 had just finished building
  # it) and skipped the barrier would leave process 0 waiting there for good.
  distributed = process_count > 1 and _distributed()
  prepared = builder.is_prepared()
  if prepared and not distributed:
    _check_folder_unchanged(data, builder)
    return
  if process_count == 1:
    build_dataset(data)
    return
  if distributed:
    barrier = f'videogen_data_built_{builder.info.full_name}_{next(_BARRIERS)}'
    try:
      if process_index == 0 and not prepared:
        build_dataset(data)
    finally:  # Release the other processes even when the build failed.
      _barrier(barrier, timeout_s)
    if prepared:
      _check_folder_unchanged(data, builder)
  elif process_index == 0:
    build_dataset(data)
  else:
    _poll_until_built(data, timeout_s)
  if not sources.get_builder(data).is_prepared():
    raise sources.DatasetNotReadyError(
      f'Process {process_index} cannot see dataset {data.name!r} at '
      f'{builder.data_path} after process 0 built it (see its log if it failed). '
      'All hosts need one data_dir (e.g. gs://...), or build on each host first.'
    )
