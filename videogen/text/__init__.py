"""Text conditioning: sentencepiece tokenizer, Flax T5 encoder, HF checkpoint loading.

from videogen import text
enc = text.T5Encoder.from_pretrained('/ckpt/t5-v1_1-xxl', dtype='bfloat16')
emb, mask = enc.encode_text(['a red circle moving left'], max_length=32)
emb = text.encode_fn(enc.graphdef, enc.state, ids, mask)   # inside a jitted step
"""

from videogen.text.cache import EmbeddingCache
from videogen.text.checkpoint import CheckpointError
from videogen.text.encoder import T5Encoder
from videogen.text.load import encoder_dir, load_text_encoder, open_embedding_cache
from videogen.text.t5 import T5EncoderConfig, T5Stack, encode_fn
from videogen.text.tokenizer import SentencePieceTokenizer

__all__ = [
  'CheckpointError',
  'EmbeddingCache',
  'SentencePieceTokenizer',
  'T5Encoder',
  'T5EncoderConfig',
  'T5Stack',
  'encode_fn',
  'encoder_dir',
  'load_text_encoder',
  'open_embedding_cache',
]
