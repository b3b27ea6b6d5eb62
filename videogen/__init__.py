"""videogen: text-to-video generation in JAX."""

__version__ = '0.1.0'
