"""colabs/tasks.ipynb on a toy run trained on every task: each task's section
shows original | condition | result for every held-out clip."""

from tests import helpers
from videogen.data import video_io
from videogen.transformer import tasks

NUM_CLIPS = 2


def test_tasks_notebook_shows_every_task(multitask_run, tmp_path):
  notebook = helpers.run_notebook(
    'tasks.ipynb',
    {'MODEL': str(multitask_run), 'NUM_CLIPS': NUM_CLIPS, 'SEED': 1, 'SAVE_TO': 'grids'},
    tmp_path,
  )
  text = helpers.notebook_text(notebook)
  assert f'Trained on {", ".join(tasks.TASKS)}; clips of 5 frames at 16x16.' in text
  assert 'skipped' not in text
  sections = {}
  for cell in notebook.cells:
    head = cell.source.split('\n', 1)[0]
    if cell.cell_type == 'code' and head.startswith("if trained('"):
      sections[head.split("'")[1]] = helpers.cell_text(cell)
  assert tuple(sections) == tasks.TASKS
  for task, output in sections.items():
    # A row of 3 videos per clip (restore: per clip and degradation); uncond: one row of samples.
    videos = {'uncond': NUM_CLIPS, 'restore': 2 * NUM_CLIPS * 3}.get(task, NUM_CLIPS * 3)
    assert output.count('<img') == videos, (task, output[:500])
    assert output.count('>original<') == (task != 'uncond') * (2 if task == 'restore' else 1), task
  # SAVE_TO (relative to the kernel's folder) gets each section as one GIF: a row per clip of
  # 3 tiles upscaled to 128 pixels with their labels; uncond one row of NUM_CLIPS samples.
  names = [t for t in tasks.TASKS if t != 'restore'] + ['restore_downscaled', 'restore_noisy']
  assert sorted(p.stem for p in (tmp_path / 'grids').iterdir()) == sorted(names)
  for name in names:
    grid = video_io.read_video(tmp_path / 'grids' / f'{name}.gif')
    columns = NUM_CLIPS if name == 'uncond' else 3
    assert grid.shape[0] == 5 and grid.shape[2] == columns * 128 + (columns - 1) * 2, name
