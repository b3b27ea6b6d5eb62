"""Imports run one way (DESIGN.md "Layers"): apps > stages > engine > models > base.

Every `import videogen...` in the package, at module level or inside a
function, is read from the source; none may name a layer above its own.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'videogen'
CONFIGS = PACKAGE.parent / 'configs'

APPS, STAGES, ENGINE, MODELS, BASE = 4, 3, 2, 1, 0
NAMES = {APPS: 'apps', STAGES: 'stages', ENGINE: 'engine', MODELS: 'models', BASE: 'base'}


def layer(module: str) -> int:
  """The layer of a dotted module name inside `videogen`."""
  parts = module.split('.')[1:]
  if not parts:
    return BASE  # `videogen` itself: the version string.
  head = parts[0]
  if module in ('videogen.vq.task', 'videogen.transformer.task'):
    return STAGES
  if head == 'train':
    return ENGINE
  if head in ('vq', 'transformer', 'text'):
    return MODELS
  if head in ('parallel', 'data', 'config_lib', 'weights', 'safetensors_io', 'integrity'):
    return BASE
  return APPS  # cli, sample, eval, quickstart, export, stages, compile(_report), serve, ...


def _module_name(path: pathlib.Path) -> str:
  if path.is_relative_to(CONFIGS):
    relative = pathlib.Path('videogen', 'configs', path.relative_to(CONFIGS))
  else:
    relative = path.relative_to(PACKAGE.parent)
  return '.'.join(relative.with_suffix('').parts).removesuffix('.__init__')


def _imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names.add(node.module)
      names.update(f'{node.module}.{alias.name}' for alias in node.names)
  return {n for n in names if n == 'videogen' or n.startswith('videogen.')}


def _known(module: str) -> bool:
  """Whether `module` is a module or package of the source tree (not an attribute)."""
  parts = module.split('.')[1:]
  if parts[:1] == ['configs']:
    base = CONFIGS.joinpath(*parts[1:])
  else:
    base = PACKAGE.joinpath(*parts)
  return base.with_suffix('.py').exists() or (base / '__init__.py').exists()


SOURCES = sorted([*PACKAGE.rglob('*.py'), *CONFIGS.rglob('*.py')])


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: _module_name(p))
def test_no_module_imports_a_layer_above_its_own(path):
  importer = _module_name(path)
  own = layer(importer)
  above = sorted(
    m for m in _imports(path) if _known(m) and layer(m) > own and not m.startswith(importer)
  )
  assert not above, f'{importer} ({NAMES[own]}) imports {above} from a layer above'


def test_importing_the_models_loads_no_training_engine():
  code = (
    'import sys, videogen.transformer, videogen.vq, videogen.text; '
    "print(sorted(m for m in sys.modules if m.startswith(('videogen.train', 'videogen.stages'))))"
  )
  result = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True, timeout=120
  )
  assert result.stdout.strip() == '[]', result.stdout
