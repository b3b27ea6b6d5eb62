"""The video tokenizer: a causal 3D-CNN autoencoder with FSQ, LFQ or VQ codes.

`Tokenizer` turns clips into int32 tokens and back; `encode_fn`/`decode_fn`
are its pure forms for use inside another jitted step. The training stage
is `videogen.vq.task.TokenizerTask`.
"""

from videogen.vq.tokenizer import Tokenizer, decode_fn, encode_fn

__all__ = ['Tokenizer', 'decode_fn', 'encode_fn']
