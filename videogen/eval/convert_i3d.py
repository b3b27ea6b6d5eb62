"""Converts the published Kinetics-400 I3D (RGB) weights for `videogen.eval.i3d`.

Runs where TensorFlow can read the checkpoint (tensorflow-cpu is enough; no
Sonnet needed). Sources, either:
- the kinetics-i3d checkpoint: `git clone https://github.com/deepmind/kinetics-i3d`
  then `--source kinetics-i3d/data/checkpoints/rgb_imagenet/model.ckpt`
  (or `rgb_scratch/model.ckpt`);
- the TF-Hub module used by the reference FVD code: download and untar
  https://tfhub.dev/deepmind/i3d-kinetics-400/1?tf-hub-format=compressed
  then `--source <dir>/variables/variables`.

  python -m videogen.eval.convert_i3d --source PATH --out i3d_kinetics400.safetensors

Variables are matched by their names after `inception_i3d/` (so the `RGB/`
scope or a TF-Hub module prefix does not matter): Sonnet's `conv_3d/w` is the
NNX conv kernel (same [t, h, w, in, out] layout), `conv_3d/b` its bias,
`batch_norm/{beta,moving_mean,moving_variance}` the batch norm's bias, mean
and variance (reshaped from [1, 1, 1, 1, C]). The output is safetensors
(`.safetensors`) or npz (any other suffix); check it with
`videogen.eval.fvd.fvd_available(path)`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping, Sequence

import numpy as np

from videogen.eval import i3d

SCOPE = 'inception_i3d/'
_LEAVES = {
  'conv/kernel': 'conv_3d/w',
  'conv/bias': 'conv_3d/b',
  'bn/bias': 'batch_norm/beta',
  'bn/mean': 'batch_norm/moving_mean',
  'bn/var': 'batch_norm/moving_variance',
}
_BRANCHES = {
  'branch_0': 'Branch_0/Conv3d_0a_1x1',
  'branch_1a': 'Branch_1/Conv3d_0a_1x1',
  'branch_1b': 'Branch_1/Conv3d_0b_3x3',
  'branch_2a': 'Branch_2/Conv3d_0a_1x1',
  'branch_2b': 'Branch_2/Conv3d_0b_3x3',
  'branch_3b': 'Branch_3/Conv3d_0b_1x1',
}


def tf_name(key: str) -> str:
  """The kinetics-i3d variable name (after `inception_i3d/`) of an NNX key.

  `mixed_4c/branch_1b/conv/kernel` -> `Mixed_4c/Branch_1/Conv3d_0b_3x3/conv_3d/w`.
  """
  for leaf, tf_leaf in _LEAVES.items():
    if key.endswith('/' + leaf):
      unit = key[: -len(leaf) - 1]
      return f'{_tf_unit(unit)}/{tf_leaf}'
  raise ValueError(f'Not an I3D variable: {key}')


def _tf_unit(unit: str) -> str:
  """`mixed_4c/branch_1b` -> `Mixed_4c/Branch_1/Conv3d_0b_3x3`."""
  if unit == 'logits':
    return 'Logits/Conv3d_0c_1x1'
  if unit.startswith('conv3d_'):
    return 'Conv3d_' + unit[len('conv3d_') :]
  block, branch = unit.split('/')
  tf_branch = _BRANCHES[branch]
  # The published graph names this one conv 0a instead of 0b.
  if block == 'mixed_5b' and branch == 'branch_2b':
    tf_branch = 'Branch_2/Conv3d_0a_3x3'
  return f'Mixed_{block[len("mixed_") :]}/{tf_branch}'


def convert(tf_variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Maps checkpoint variables (full TF names) to `videogen.eval.i3d` keys.

  Variables outside `inception_i3d/` (global_step, the Flow stream) and any
  other extra variables (optimizer slots) are ignored.

  Raises:
    ValueError: when a variable is missing, ambiguous or has the wrong size.
  """
  by_name: dict[str, str] = {}
  for full_name in tf_variables:
    # Only the RGB stream's network (a joint checkpoint also holds Flow/).
    if SCOPE not in full_name or full_name.startswith('Flow/') or '/Flow/' in full_name:
      continue
    short = full_name.split(SCOPE, 1)[1]
    if short in by_name:
      raise ValueError(f'Two checkpoint variables for {short}: {by_name[short]}, {full_name}')
    by_name[short] = full_name
  expected = i3d.flat_state(i3d.abstract_model())
  weights, missing = {}, []
  for key, abstract in expected.items():
    name = tf_name(key)
    if name not in by_name:
      missing.append(name)
      continue
    value = np.asarray(tf_variables[by_name[name]], np.float32)
    if value.size != np.prod(abstract.shape):
      raise ValueError(f'{by_name[name]} has shape {value.shape}; {key} needs {abstract.shape}')
    weights[key] = value.reshape(abstract.shape)
  if missing:
    raise ValueError(
      f'{len(missing)} I3D variables missing from the checkpoint, e.g. '
      f'{missing[:5]}; is this the RGB kinetics-i3d checkpoint?'
    )
  return weights


def read_tf_checkpoint(path: str) -> dict[str, np.ndarray]:
  """All variables of a TF checkpoint prefix (needs TensorFlow)."""
  import tensorflow as tf  # Only the converter needs TensorFlow.

  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument(
    '--source',
    required=True,
    help='TF checkpoint prefix (model.ckpt or <hub module>/variables/variables).',
  )
  parser.add_argument('--out', required=True, help='Output .safetensors or .npz file.')
  args = parser.parse_args(argv)
  weights = convert(read_tf_checkpoint(args.source))
  i3d.save_weights(args.out, weights)
  count = sum(v.size for v in weights.values())
  print(f'wrote {len(weights)} arrays ({count:,} parameters) to {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
