"""Compiling programs that run once, such as parameter initialisation."""

from __future__ import annotations

from typing import Any, Callable

import jax

# XLA:CPU spends seconds optimising the per-parameter random initialisers of a
# model (7.3 s for the tiny tokenizer's train state against 1.0 s unoptimised);
# a program that runs once never wins that back. The random bits are the same;
# float transforms may round differently (a few ulp in truncated normals).
_RUN_ONCE_CPU_OPTIONS = {'xla_backend_optimization_level': 0}


def run_once(fn: Callable[..., Any], *args: Any, **jit_kwargs: Any) -> Any:
  """`jax.jit(fn, **jit_kwargs)(*args)`, compiled without backend optimisation on CPU.

  Other backends compile as usual, and so does a call under a trace (inside
  `jax.eval_shape` or `jit`, where there is nothing to run once).
  """
  jitted = jax.jit(fn, **jit_kwargs)
  traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args))
  if jax.default_backend() != 'cpu' or traced:
    return jitted(*args)
  return jitted.lower(*args).compile(compiler_options=_RUN_ONCE_CPU_OPTIONS)(*args)
