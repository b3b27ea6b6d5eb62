"""The non-finite-loss guard (`nan_policy`) and the learning-rate schedules' end values."""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen import config_lib
from videogen.train import loop, optim


@flax.struct.dataclass
class _State:
  step: jax.Array
  params: jax.Array


class _Task:
  """Adds 1 to the params; the loss is NaN when the batch says so."""

  def train_step(self, state, batch, rng):
    del rng
    loss = jnp.where(batch['bad'], jnp.nan, 1.0)
    return _State(step=state.step + 1, params=state.params + 1.0), {'loss': loss}


def _run(policy, bad_steps, steps=4):
  step_fn = jax.jit(loop._loop_step(_Task(), policy))  # noqa: SLF001
  state = _State(step=jnp.int32(0), params=jnp.zeros(3))
  flags = []
  for step in range(1, steps + 1):
    state, metrics = step_fn(state, {'bad': jnp.bool_(step in bad_steps)}, jax.random.key(0))
    flags.append(float(metrics['nonfinite']))
  return state, flags


def test_skip_drops_the_update_of_a_non_finite_step_and_counts_it():
  state, flags = _run('skip', bad_steps={2, 3})
  assert int(state.step) == 4  # The step counter still advances.
  np.testing.assert_array_equal(state.params, np.full(3, 2.0))  # Only steps 1 and 4 applied.
  assert flags == [0.0, 1.0, 1.0, 0.0]


def test_stop_keeps_the_state_and_raises_naming_the_step():
  state, flags = _run('stop', bad_steps={2}, steps=2)
  np.testing.assert_array_equal(state.params, np.full(3, 1.0))
  with pytest.raises(FloatingPointError, match='Non-finite loss at step 2;'):
    loop._check_finite(2, {'nonfinite': jnp.float32(flags[1])}, 'stop')  # noqa: SLF001
  loop._check_finite(2, {'nonfinite': jnp.float32(flags[1])}, 'skip')  # noqa: SLF001


def test_unknown_policy_names_the_valid_ones():
  with pytest.raises(ValueError, match="valid: 'stop', 'skip'"):
    loop._loop_step(_Task(), 'ignore')  # noqa: SLF001


def _optimizer(decay, warmup=10, ratio=0.1):
  config = config_lib.optimizer_config(learning_rate=2e-3, warmup_steps=warmup)
  config.decay = decay
  config.min_lr_ratio = ratio
  return config


@pytest.mark.parametrize(
  'decay, ratio, end',
  [('cosine', 0.1, 2e-4), ('linear', 0.1, 2e-4), ('linear', 0.0, 0.0), ('constant', 0.1, 2e-3)],
)
def test_schedules_warm_up_to_the_peak_and_end_at_their_end_value(decay, ratio, end):
  schedule = optim.make_schedule(_optimizer(decay, ratio=ratio), num_train_steps=100)
  values = np.array([float(schedule(step)) for step in range(101)])
  assert values[0] == 0.0
  np.testing.assert_allclose(values[10], 2e-3, rtol=1e-6)  # Peak at the end of warmup.
  np.testing.assert_allclose(values[100], end, rtol=1e-6, atol=1e-12)
  assert np.all(np.diff(values[:11]) > 0)  # Warmup rises.
  assert np.all(np.diff(values[10:]) <= 1e-12)  # Never rises after the peak.


def test_warmup_longer_than_the_run_still_reaches_the_end_value():
  schedule = optim.make_schedule(_optimizer('linear', warmup=500, ratio=0.5), num_train_steps=20)
  np.testing.assert_allclose(float(schedule(20)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(19)), 2e-3, rtol=1e-6)


def test_unknown_decay_names_the_valid_ones():
  with pytest.raises(ValueError, match="valid: 'cosine', 'linear', 'constant'"):
    optim.make_schedule(_optimizer('exponential'), 100)
