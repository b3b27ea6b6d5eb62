"""I3D port against TensorFlow: checkpoint conversion, padding/pooling, resize."""

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from flax import nnx  # noqa: E402

from videogen.eval import convert_i3d, fvd, i3d  # noqa: E402


def _write_tf1_checkpoint(prefix, variables):
  graph = tf.Graph()
  with graph.as_default():
    tf_vars = [
      tf.compat.v1.get_variable(name, initializer=value) for name, value in variables.items()
    ]
    saver = tf.compat.v1.train.Saver(tf_vars)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      saver.save(session, prefix, write_meta_graph=False)


def test_converter_reads_a_kinetics_i3d_style_checkpoint(tmp_path):
  rng = np.random.default_rng(0)
  expected = {
    key: rng.normal(size=a.shape).astype(np.float32)
    for key, a in i3d.flat_state(i3d.abstract_model()).items()
  }
  variables = {}
  for key, value in expected.items():
    # Sonnet keeps batch-norm statistics as [1, 1, 1, 1, C].
    shape = (1, 1, 1, 1, -1) if '/bn/' in key else value.shape
    variables['RGB/inception_i3d/' + convert_i3d.tf_name(key)] = value.reshape(shape)
  prefix = str(tmp_path / 'rgb' / 'model.ckpt')
  _write_tf1_checkpoint(prefix, variables)
  out = str(tmp_path / 'i3d.npz')
  assert convert_i3d.main(['--source', prefix, '--out', out]) == 0
  assert fvd.fvd_available(out)[0]
  converted = i3d.read_weights(out)
  for key, value in expected.items():
    np.testing.assert_array_equal(converted[key], value)


def _unit(kernel, strides, beta, mean, var):
  unit = nnx.eval_shape(
    lambda: i3d.Unit3D(
      kernel.shape[3], kernel.shape[4], kernel.shape[:3], strides, rngs=nnx.Rngs(0)
    )
  )
  graphdef, state = nnx.split(unit)
  state['conv']['kernel'].set_value(kernel)
  state['bn']['bias'].set_value(beta)
  state['bn']['mean'].set_value(mean)
  state['bn']['var'].set_value(var)
  return nnx.merge(graphdef, state)


@pytest.mark.parametrize(
  'shape,kernel_size,strides',
  [
    ((1, 9, 15, 14, 3), (7, 7, 7), (2, 2, 2)),  # Conv3d_1a_7x7 on odd sizes.
    ((2, 4, 6, 6, 5), (3, 3, 3), (1, 1, 1)),
  ],
)
def test_unit3d_matches_tf_conv_batchnorm_relu(shape, kernel_size, strides):
  rng = np.random.default_rng(1)
  x = rng.normal(size=shape).astype(np.float32)
  channels = 4
  kernel = rng.normal(size=(*kernel_size, shape[-1], channels)).astype(np.float32)
  beta, mean = rng.normal(size=(2, channels)).astype(np.float32)
  var = rng.uniform(0.5, 2.0, channels).astype(np.float32)
  got = _unit(kernel, strides, beta, mean, var)(x)
  reference = tf.nn.conv3d(x, kernel, strides=(1, *strides, 1), padding='SAME')
  reference = tf.nn.relu(tf.nn.batch_normalization(reference, mean, var, beta, None, 1e-3))
  np.testing.assert_allclose(got, reference.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
  'window,strides',
  [
    ((1, 3, 3), (1, 2, 2)),
    ((3, 3, 3), (2, 2, 2)),
    ((2, 2, 2), (2, 2, 2)),
    ((3, 3, 3), (1, 1, 1)),
  ],
)
def test_max_pool_same_matches_tf(window, strides):
  x = np.random.default_rng(2).normal(size=(1, 5, 7, 6, 3)).astype(np.float32)
  got = i3d._max_pool(x, window, strides)
  reference = tf.nn.max_pool3d(x, (1, *window, 1), (1, *strides, 1), padding='SAME')
  np.testing.assert_array_equal(got, reference.numpy())


def test_resize_matches_tf1_resize_bilinear():
  frames = np.random.default_rng(3).uniform(0, 255, (2, 13, 17, 3)).astype(np.float32)
  videos = frames[None].astype(np.uint8)
  got = fvd.preprocess(videos, num_frames=2, resolution=29)[0]
  reference = tf.compat.v1.image.resize_bilinear(
    videos[0], (29, 29), align_corners=False, half_pixel_centers=False
  )
  reference = 2.0 * reference.numpy() / 255.0 - 1.0
  np.testing.assert_allclose(got, reference, atol=1e-5)
