"""The `config.text` section: which T5 encoder conditions the transformer.

`path=''` selects the offline default: a tiny random-init T5 with a
sentencepiece model trained on the dataset's captions, built once by
`videogen.text.default.ensure_default_t5` into `<transformer workdir>/text_encoder/`
(inside the workdir so that `videogen sample --workdir` finds the very same
encoder without the dataset). Any other value is a Hugging Face-layout T5
directory (`config.json` + `*.safetensors`, plus `spiece.model`).
"""

from __future__ import annotations

import ml_collections

DEFAULT_DIR_NAME = 'text_encoder'  # Subdirectory of the workdir holding the offline default.


def default_model_config() -> ml_collections.ConfigDict:
  """Sizes of the offline default T5 (a frozen random-init conditioner)."""
  model = ml_collections.ConfigDict()
  model.d_model = 64  # Width of the residual stream (the embedding size the transformer sees).
  model.num_layers = 2  # Encoder blocks.
  model.num_heads = 4  # Attention heads per block.
  model.d_kv = 16  # Width of each attention head.
  model.d_ff = 128  # Hidden width of the feed-forward block.
  model.feed_forward_proj = 'gated-gelu'  # 'gated-gelu' (T5 v1.1/FLAN) or 'relu' (original T5).
  model.max_vocab_size = 256  # Upper bound for the sentencepiece vocab; the trained size is used.
  model.seed = 0  # Seeds the random init of the default T5 weights.
  return model


def text_config() -> ml_collections.ConfigDict:
  """The text-encoder section of a transformer config."""
  config = ml_collections.ConfigDict()
  config.path = ''  # HF-layout T5 dir (config.json + *.safetensors); '' = offline default in <workdir>/text_encoder.
  config.tokenizer_path = (
    ''  # sentencepiece file; '' = <path>/spiece.model or ../tokenizer/spiece.model.
  )
  config.max_length = 32  # Prompt tokens incl. EOS; longer prompts are truncated (warned once).
  config.dtype = 'float32'  # Weights and matmuls: 'float32' or 'bfloat16' (outputs float32).
  config.cache_embeddings = False  # Precompute caption embeddings once (worth it for large T5s).
  config.cache_dir = ''  # Embedding cache location; '' = <workdir>/text_cache.
  config.default_model = default_model_config()
  return config
