"""videogen: text-to-video training in JAX, from a laptop CPU to TPU pods."""

import pathlib
import re

import setuptools

_VERSION = re.search(
  r"__version__ = '([^']+)'",
  pathlib.Path(__file__).with_name('videogen').joinpath('__init__.py').read_text(),
).group(1)

# Ranges that resolved together on Python 3.11 (see shared/docs/STACK.md).
_INSTALL_REQUIRES = [
  'jax>=0.10.2,<0.12',
  'flax>=0.12.8,<0.13',
  'optax>=0.2.8,<0.3',
  'orbax-checkpoint>=0.12.8,<0.13',
  'tensorflow-cpu>=2.21,<2.22',  # TFDS builders and clu writers; CPU only.
  'tensorflow-datasets>=4.9.10,<4.10',
  'array_record>=0.8.6,<0.9',
  'grain>=0.2.18,<0.3',
  'sentencepiece>=0.2.3,<0.3',
  'safetensors>=0.4',
  'ml_collections>=1.1.0,<1.2',
  'clu>=0.0.12,<0.1',
  'tensorboard>=2.20',
  'mediapy>=1.2.7,<1.3',
  'imageio-ffmpeg==0.7.0',  # 0.8's ffmpeg breaks mediapy.read_video.
  'pillow>=10',
  'einops>=0.8',
  'etils[epath]>=1.7',
  'absl-py>=2.1',
  'numpy>=1.26',
  'scipy>=1.11',
  'tqdm>=4.66',
  'importlib_resources>=6',  # TFDS 4.9.10 imports it without declaring it.
]

# `config.data.beam_runner`: video_folder builds as Apache Beam pipelines. apache-beam
# 2.77.0 pins protobuf<7 and pyarrow<26: pip downgrades those two (to 6.33.6 / 25.0.1).
_BEAM_REQUIRES = ['apache-beam==2.77.0']

_TEST_REQUIRES = [
  'pytest>=8',
  'pytest-xdist>=3.5',
  'torch==2.13.0',  # T5 reference numerics; the CPU wheel is on the machine.
  'transformers>=5,<6',
  'nbclient>=0.10',
  'nbformat>=5.10',
  'ipykernel>=6.29',
  'ruff>=0.6',
  'setuptools>=68',  # The wheel test builds videogen's wheel without build isolation.
  'wheel>=0.40',
  'av==18.1.0',  # The PyAV clip decoder (the `av` extra) is tested too.
  'gradio==6.31.0',  # `videogen serve` (the `serve` extra) is tested too,
  'gradio_client==2.7.2',  # through its API
  'selenium==4.51.0',  # and in headless Chromium (Debian chromium + chromium-driver).
  'scenedetect==0.7.2',  # Scene-cut splitting (the `scenes` extra) is tested too.
  # Beam builds (the `beam` extra) are tested too: with it pip resolves protobuf 6.x and
  # pyarrow 25.x, which the rest of the stack accepts; the default install keeps 7.x / 26.x.
  *_BEAM_REQUIRES,
]

# `videogen compile`: libtpu for ahead-of-time XLA:TPU compilation on any machine,
# pinned the way jax[tpu] of this JAX pins it. Without TPU chips JAX stays on the CPU.
_TPU_REQUIRES = ['jax[tpu]==0.10.2']

# Faster clip decoding (PyAV, same pixels as the ffmpeg binary): `pip install 'videogen[av]'`.
_AV_REQUIRES = ['av==18.1.0']

# `videogen serve`, a web page and HTTP API for a trained model: `pip install 'videogen[serve]'`.
_SERVE_REQUIRES = ['gradio==6.31.0']

# `config.data.scene_detect`: split videos at scene cuts with PySceneDetect: `pip install
# 'videogen[scenes]'`. It pulls opencv-python, whose cv2 loads libGL.so.1 (Debian: libgl1).
_SCENES_REQUIRES = ['scenedetect==0.7.2']


setuptools.setup(
  name='videogen',
  version=_VERSION,
  description='Text-to-video generation in JAX: video tokenizer + autoregressive transformer.',
  long_description=pathlib.Path(__file__).with_name('README.md').read_text(),
  long_description_content_type='text/markdown',
  python_requires='>=3.11',
  # configs/ ships inside the package as `videogen.configs`, so that a wheel
  # (`pip install git+URL`, Colab) has the experiment files the checkout has.
  packages=[
    *setuptools.find_packages(include=['videogen', 'videogen.*']),
    *('videogen.' + name for name in setuptools.find_packages(include=['configs', 'configs.*'])),
  ],
  package_dir={'videogen.configs': 'configs'},
  install_requires=_INSTALL_REQUIRES,
  extras_require={
    'av': _AV_REQUIRES,
    'beam': _BEAM_REQUIRES,
    'scenes': _SCENES_REQUIRES,
    'serve': _SERVE_REQUIRES,
    'test': _TEST_REQUIRES + _TPU_REQUIRES,
    'tpu': _TPU_REQUIRES,
  },
  entry_points={'console_scripts': ['videogen = videogen.cli:run']},
)
