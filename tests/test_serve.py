"""`videogen serve`: the Gradio app over a random-weight exported model.

One server per module, in this process, on 127.0.0.1 and a free port, closed
at the end. `gradio_client` calls its `/generate` API: the videos equal
`TextToVideo.generate` for the same seed and settings (exactly in the
lossless `samples.npy` it returns; the MP4 decodes to the same frames as those
videos written and read through the same MP4 path). Headless Chromium
(Selenium) drives the page.
"""

import concurrent.futures
import os
import shlex
import shutil
import socket

import jax
import numpy as np
import pytest
from flax import nnx

from tests import helpers
from videogen import serve
from videogen.data import video_io
from videogen.transformer.inference import TextToVideo
from videogen.transformer.model import Transformer

gradio_client = pytest.importorskip('gradio_client')

PROMPT = 'a red circle moving left'
# API arguments in page order after the prompt (see `serve.build_app`).
SETTINGS = dict(cfg_scale=2.0, temperature=0.8, top_k=5, top_p=0.9, seed=3, num_samples=2)
CHROMIUM, CHROMEDRIVER = shutil.which('chromium'), shutil.which('chromedriver')


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A random-weight toy model (5x16x16 clips), exported as `videogen export` writes it."""
  root = tmp_path_factory.mktemp('serve')
  config = helpers.toy_transformer_config(str(root / 'data'))
  model = helpers.toy_inference(config, root)
  params = jax.jit(
    lambda: nnx.split(Transformer(model.spec, rngs=nnx.Rngs(0)), nnx.Param, ...)[1]
  )()
  model.params = jax.device_put(params, jax.devices()[0])
  model.export(root / 'model')
  return root / 'model'


@pytest.fixture(scope='module')
def server(exported):
  model = TextToVideo.load(exported)
  app = serve.build_app(model, str(exported), concurrency=1)
  serve.launch(app, host='127.0.0.1', port=_free_port(), block=False, quiet=True)
  try:
    yield app.local_url, model
  finally:
    app.close()


def _predict(url, prompt=PROMPT, *, num_frames=0, image=None, video=None, **settings):
  values = {**SETTINGS, **settings}
  client = gradio_client.Client(url, verbose=False)
  return client.predict(
    prompt,
    *values.values(),
    num_frames,
    gradio_client.handle_file(str(image)) if image else None,
    gradio_client.handle_file(str(video)) if video else None,
    api_name='/generate',
  )


def _expected(model, **settings):
  values = {**SETTINGS, **settings}
  num_samples = values.pop('num_samples')
  return model.generate([PROMPT], model.default_settings(**values), num_samples=num_samples)


def _through_mp4(video, fps, path):
  """Frames as they come out of the app's MP4 path (H.264 is lossy)."""
  return video_io.read_video(video_io.write_video(path, video, fps=fps))


def test_client_videos_equal_generate_and_the_command_reproduces_them(server, tmp_path):
  url, model = server
  gallery, files, command, info = _predict(url)
  expected = _expected(model)
  assert expected.shape == (2, 5, 16, 16, 3)
  assert len(gallery) == 2 and '2 video(s), 5 frames of 16x16' in info
  npy = next(f for f in files if f.endswith('.npy'))
  np.testing.assert_array_equal(np.load(npy), expected)  # Lossless: bit for bit.
  for index, item in enumerate(gallery):
    decoded = video_io.read_video(item['video'])
    reference = _through_mp4(expected[index], model.fps, tmp_path / f'{index}.mp4')
    np.testing.assert_array_equal(decoded, reference)
  args = shlex.split(command)
  assert args[:2] == ['videogen', 'sample'] and '--seed' in args and args[-2] == '--out'
  args[-1] = str(tmp_path / 'cli')
  helpers.run_videogen(*args[1:])
  np.testing.assert_array_equal(np.load(tmp_path / 'cli' / 'samples.npy'), expected)


def test_image_and_video_uploads(server, tmp_path):
  url, model = server
  frame = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
  image = tmp_path / 'first.png'
  from PIL import Image

  Image.fromarray(frame).save(image)
  _, files, command, _ = _predict(url, image=image, num_samples=1)
  expected = _expected(model, num_samples=1)  # Unconditioned: must differ.
  got = np.load(next(f for f in files if f.endswith('.npy')))
  settings = {**SETTINGS, 'num_samples': 1}
  num_samples = settings.pop('num_samples')
  conditioned = model.generate(
    [PROMPT], model.default_settings(**settings), num_samples=num_samples, image=frame
  )
  np.testing.assert_array_equal(got, conditioned)
  assert not np.array_equal(got, expected) and '--first_frame' in command
  clip = _through_mp4(conditioned[0], model.fps, tmp_path / 'clip.mp4')
  _, files, command, _ = _predict(url, video=tmp_path / 'clip.mp4', num_samples=1, seed=4)
  continued = model.generate(
    [PROMPT], model.default_settings(**{**settings, 'seed': 4}), video=clip
  )
  np.testing.assert_array_equal(np.load(next(f for f in files if f.endswith('.npy'))), continued)
  assert '--prefix_video' in command


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    ({'prompt': '   '}, 'Enter a prompt'),
    ({'num_frames': 10_000}, 'beyond what this model can generate (at most'),
    ({'top_p': 1.5}, 'Value 1.5 is greater than maximum value 1'),  # Gradio's bounds.
    ({'image': 'bad.png'}, 'The uploaded first frame (bad.png) is not readable'),
    ({'video': 'bad.mp4'}, 'The uploaded video is not readable'),
  ],
)
def test_a_bad_request_is_a_message_and_the_server_keeps_serving(server, tmp_path, kwargs, message):
  url, _ = server
  for key in ('image', 'video'):
    if key in kwargs:
      (tmp_path / kwargs[key]).write_bytes(b'not a picture, not a video')
      kwargs[key] = tmp_path / kwargs[key]
  with pytest.raises(gradio_client.exceptions.AppError) as error:
    _predict(url, **kwargs)
  assert message in str(error.value)
  gallery, *_ = _predict(url, num_samples=1)
  assert len(gallery) == 1


def test_four_concurrent_clients_all_get_their_videos(server):
  url, model = server
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    futures = {seed: pool.submit(_predict, url, seed=seed, num_samples=1) for seed in range(4)}
    results = {seed: future.result(timeout=300) for seed, future in futures.items()}
  for seed, (gallery, files, command, _) in results.items():
    assert len(gallery) == 1 and f'--seed {seed}' in command
    npy = next(f for f in files if f.endswith('.npy'))
    np.testing.assert_array_equal(np.load(npy), _expected(model, seed=seed, num_samples=1))


@pytest.mark.skipif(
  not (CHROMIUM and CHROMEDRIVER), reason='needs Debian chromium + chromium-driver (.ci/run)'
)
def test_the_page_in_headless_chromium(server, tmp_path):
  from selenium import webdriver
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions
  from selenium.webdriver.support.ui import WebDriverWait

  url, _ = server
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in (
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
    '--window-size=1280,1000',
    f'--user-data-dir={tmp_path / "chromium-profile"}',
  ):
    options.add_argument(flag)
  driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
  try:
    driver.get(url)
    wait = WebDriverWait(driver, 120)
    button = wait.until(expected_conditions.element_to_be_clickable((By.ID, 'generate')))
    button.click()  # Empty prompt.
    wait.until(lambda d: 'Enter a prompt' in d.find_element(By.TAG_NAME, 'body').text)
    driver.find_element(By.CSS_SELECTOR, 'textarea').send_keys(PROMPT)
    button.click()
    video = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#videos video'))
    assert video
    wait.until(
      lambda d: (
        '--seed 0' in d.find_element(By.CSS_SELECTOR, '#command textarea').get_attribute('value')
      )
    )
    driver.save_screenshot(str(tmp_path / 'page.png'))
    screenshot = os.environ.get('VIDEOGEN_SERVE_SCREENSHOT')
    if screenshot:  # For a look at the page: VIDEOGEN_SERVE_SCREENSHOT=/tmp/page.png.
      shutil.copyfile(tmp_path / 'page.png', screenshot)
  finally:
    driver.quit()
  assert (tmp_path / 'page.png').stat().st_size > 10_000


def test_settings_that_differ_by_task_start_empty_and_name_each_tasks_value(tmp_path):
  import gradio as gr  # noqa: PLC0415

  per_task = {'predict': {'temperature': 0.4, 'top_k': 5}}
  config = helpers.toy_transformer_config(
    str(tmp_path / 'data'), **{'model.tasks.predict': 1.0, 'sampling.per_task': per_task}
  )
  model = helpers.toy_inference(config, tmp_path)  # No weights: the page only.
  app = serve.build_app(model, 'model/')
  fields = {c.label: c.value for c in app.blocks.values() if isinstance(c, gr.Number)}
  assert fields['Temperature (0 = greedy; empty = t2v 1, predict 0.4)'] is None
  assert fields['Top-k (0 = off; empty = t2v 0, predict 5)'] is None
  assert fields['Top-p (1 = off)'] == 1.0  # The same for every task: shown as it is.
