"""The parameter EMA kept by both training stages."""

import jax.numpy as jnp
import numpy as np

from videogen.train import optim


def test_ema_decay_warms_up_then_holds():
  decays = [float(optim.ema_decay_at(step, 0.999)) for step in (0, 10, 90, 10_000, 10**6)]
  np.testing.assert_allclose(decays[:3], [0.1, 11 / 20, 0.91], rtol=1e-6)
  assert decays[3] == decays[4] == np.float32(0.999)


def test_ema_forgets_the_initial_weights():
  """After 2000 updates towards constant weights, the init's share is tiny.

  A constant decay of 0.999 would still hold 0.999**2000 = 13.5% of the init.
  """
  ema = {'w': jnp.zeros((3,), jnp.float32)}
  params = {'w': jnp.ones((3,), jnp.float32)}
  for step in range(2000):
    ema = optim.update_ema(ema, params, 0.999, step)
  assert ema['w'].dtype == jnp.float32
  init_share = 1.0 - float(ema['w'][0])
  assert init_share < 0.01, init_share
