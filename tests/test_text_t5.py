"""T5 encoder numerics against the PyTorch reference, and checkpoint-loading errors."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen import safetensors_io
from videogen.text import (
  CheckpointError,
  T5Encoder,
  T5EncoderConfig,
  checkpoint,
  encode_fn,
)
from videogen.text.t5 import relative_position_buckets

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

VOCAB = 40
LENGTH = 24  # Past relative_attention_max_distance / 2, so log-spaced buckets are used.


# The small encoder every test here builds, in both T5 config classes.
SIZES = dict(
  vocab_size=VOCAB,
  d_model=32,
  d_kv=8,
  d_ff=48,
  num_layers=2,
  num_heads=4,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=20,
)


def _hf_config(feed_forward_proj, model='t5'):
  config_class = transformers.UMT5Config if model == 'umt5' else transformers.T5Config
  return config_class(
    **SIZES,
    feed_forward_proj=feed_forward_proj,
    dropout_rate=0.0,
  )


def _save_reference(path, feed_forward_proj='gated-gelu', model='t5', dtype=None):
  """A random reference encoder saved with save_pretrained(safe_serialization=True)."""
  torch.manual_seed(0)
  model_class = {
    't5': transformers.T5EncoderModel,
    'umt5': transformers.UMT5EncoderModel,
    't5-seq2seq': transformers.T5ForConditionalGeneration,
  }[model]
  reference = model_class(_hf_config(feed_forward_proj, model)).eval()
  if dtype is not None:
    reference = reference.to(dtype)
  reference.save_pretrained(str(path), safe_serialization=True)
  return reference


def _padded_batch():
  rng = np.random.default_rng(0)
  mask = np.ones((3, LENGTH), np.int64)
  mask[1, 10:] = 0
  mask[2, 3:] = 0
  ids = rng.integers(3, VOCAB, (3, LENGTH)) * mask
  ids[np.arange(3), mask.sum(1) - 1] = 1  # eos ends each prompt.
  return ids, mask


def _reference_output(reference, ids, mask):
  if isinstance(reference, transformers.T5ForConditionalGeneration):
    reference = reference.encoder
  with torch.no_grad():
    output = reference.float()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  return output.last_hidden_state.numpy()


@pytest.mark.parametrize(
  'feed_forward_proj,model',
  [
    ('gated-gelu', 't5'),
    ('relu', 't5'),
    ('gated-gelu', 'umt5'),
    ('gated-gelu', 't5-seq2seq'),
  ],
)
def test_matches_reference_with_padding(tmp_path, feed_forward_proj, model):
  reference = _save_reference(tmp_path, feed_forward_proj, model)
  ids, mask = _padded_batch()
  encoder = T5Encoder.from_pretrained(tmp_path, dtype='float32')
  assert encoder.config.per_layer_position_bias == (model == 'umt5')
  assert encoder.tokenizer is None  # No spiece.model in the directory.
  output = np.asarray(encoder.encode_ids(ids.astype(np.int32), mask))
  assert output.shape == (3, LENGTH, 32) and output.dtype == np.float32
  # Padded positions too: the reference computes them, and so do we.
  np.testing.assert_allclose(output, _reference_output(reference, ids, mask), rtol=0, atol=1e-4)


def test_relative_buckets_match_reference():
  positions = torch.arange(70)
  relative = positions[None, :] - positions[:, None]
  for buckets, distance in [(32, 128), (8, 20)]:
    expected = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
      relative, bidirectional=True, num_buckets=buckets, max_distance=distance
    ).numpy()
    np.testing.assert_array_equal(relative_position_buckets(70, buckets, distance), expected)


def test_sharded_safetensors_with_index(tmp_path):
  reference = _save_reference(tmp_path / 'single')
  tensors = safetensors_io.SafetensorsFile(tmp_path / 'single' / 'model.safetensors')
  names = sorted(tensors.names)
  halves = {
    'model-00001-of-00002.safetensors': names[::2],
    'model-00002-of-00002.safetensors': names[1::2],
  }
  sharded = tmp_path / 'sharded'
  sharded.mkdir()
  (sharded / 'config.json').write_text((tmp_path / 'single' / 'config.json').read_text())
  weight_map = {}
  for file_name, part in halves.items():
    safetensors_io.save_file({n: np.array(tensors.get(n)) for n in part}, sharded / file_name)
    weight_map.update({n: file_name for n in part})
  (sharded / checkpoint.INDEX_NAME).write_text(
    json.dumps({'metadata': {}, 'weight_map': weight_map})
  )

  ids, mask = _padded_batch()
  output = T5Encoder.from_pretrained(sharded).encode_ids(ids, mask)
  np.testing.assert_allclose(np.asarray(output), _reference_output(reference, ids, mask), atol=1e-4)

  (sharded / 'model-00002-of-00002.safetensors').unlink()
  with pytest.raises(FileNotFoundError, match='model-00002-of-00002'):
    T5Encoder.from_pretrained(sharded)


def test_bfloat16_checkpoint_and_compute(tmp_path):
  """bf16-stored weights (as many released T5s are) load without torch; bf16 compute is close."""
  reference = _save_reference(tmp_path, dtype=torch.bfloat16)
  assert (
    safetensors_io.SafetensorsFile(tmp_path / 'model.safetensors').dtype_name('shared.weight')
    == 'BF16'
  )
  ids, mask = _padded_batch()
  expected = _reference_output(reference, ids, mask)  # bf16 weights, f32 compute.
  np.testing.assert_allclose(
    np.asarray(T5Encoder.from_pretrained(tmp_path, 'float32').encode_ids(ids, mask)),
    expected,
    atol=1e-4,
  )
  bf16 = T5Encoder.from_pretrained(tmp_path, 'bfloat16')
  assert bf16.network.layers.query[...].dtype == jnp.bfloat16
  output = np.asarray(bf16.encode_ids(ids, mask))
  assert output.dtype == np.float32
  valid = mask.astype(bool)
  assert np.abs(output - expected)[valid].max() < 0.1 * np.abs(expected).max()


def test_untied_checkpoint_prefers_encoder_embedding(tmp_path):
  """A checkpoint storing encoder.embed_tokens.weight is read from that tensor."""
  reference = _save_reference(tmp_path)
  file = tmp_path / 'model.safetensors'
  tensors = safetensors_io.SafetensorsFile(file)
  values = {n: np.array(tensors.get(n)) for n in tensors.names}
  values['encoder.embed_tokens.weight'] = values.pop('shared.weight')
  values['shared.weight'] = np.zeros_like(values['encoder.embed_tokens.weight'])  # A decoy.
  safetensors_io.save_file(values, file)
  ids, mask = _padded_batch()
  output = T5Encoder.from_pretrained(tmp_path).encode_ids(ids, mask)
  np.testing.assert_allclose(np.asarray(output), _reference_output(reference, ids, mask), atol=1e-4)


def test_save_pretrained_round_trip_loads_in_transformers(tmp_path):
  config = T5EncoderConfig(
    **SIZES,
  )
  ours = T5Encoder.from_config(config, seed=3)
  ours.save_pretrained(tmp_path)
  reference = transformers.T5EncoderModel.from_pretrained(str(tmp_path)).eval()
  ids, mask = _padded_batch()
  np.testing.assert_allclose(
    np.asarray(ours.encode_ids(ids, mask)),
    _reference_output(reference, ids, mask),
    atol=1e-4,
  )


def test_shape_mismatch_names_the_tensor(tmp_path):
  _save_reference(tmp_path)
  values = json.loads((tmp_path / 'config.json').read_text())
  values['d_ff'] = 64
  (tmp_path / 'config.json').write_text(json.dumps(values))
  expected = (
    r"'encoder\.block\.0\.layer\.1\.DenseReluDense\.wo\.weight' has shape \(32, 48\)"
    r'.*d_ff=64.*implies \(32, 64\)'
  )
  with pytest.raises(CheckpointError, match=expected):
    T5Encoder.from_pretrained(tmp_path)


def test_missing_files_and_unsupported_architecture(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    T5Encoder.from_pretrained(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='config.json'):
    T5Encoder.from_pretrained(tmp_path)
  _save_reference(tmp_path)
  (tmp_path / 'model.safetensors').rename(tmp_path / 'elsewhere.safetensors')
  with pytest.raises(FileNotFoundError, match='model.safetensors'):
    T5Encoder.from_pretrained(tmp_path)
  (tmp_path / 'elsewhere.safetensors').rename(tmp_path / 'model.safetensors')
  with pytest.raises(FileNotFoundError, match='tokenizer_path'):
    T5Encoder.from_pretrained(tmp_path, tokenizer_path=tmp_path / 'spiece.model')
  with pytest.raises(ValueError, match='no spiece.model'):
    T5Encoder.from_pretrained(tmp_path).encode_text(['a red circle'])
  values = json.loads((tmp_path / 'config.json').read_text())
  values.update(model_type='bert', architectures=['BertModel'])
  (tmp_path / 'config.json').write_text(json.dumps(values))
  with pytest.raises(CheckpointError, match='unsupported architecture.*bert'):
    T5Encoder.from_pretrained(tmp_path)


def test_encode_fn_is_frozen_and_jittable():
  config = T5EncoderConfig(vocab_size=VOCAB, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
  encoder = T5Encoder.from_config(config)
  ids, mask = _padded_batch()
  graphdef, state = encoder.graphdef, encoder.state

  def loss(state):
    return jnp.sum(encode_fn(graphdef, state, ids, mask) ** 2)

  value, grads = jax.jit(jax.value_and_grad(loss))(state)
  assert math.isfinite(float(value))
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
  with pytest.raises(ValueError, match='must lie in'):
    encoder.encode_ids(np.full((1, 4), VOCAB), np.ones((1, 4)))
  assert encoder.encode_ids(np.zeros((0, 4), np.int32), np.zeros((0, 4))).shape == (
    0,
    4,
    16,
  )
