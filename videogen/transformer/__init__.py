"""The autoregressive text-to-video transformer over video-tokenizer tokens.

config.py       `model_config(variant)`, `sampling_config()`, `tokenizer_config()`
attention.py    `dot_product_attention` (xla / cudnn / pallas backends)
layers.py       `TransformerSpec`, 3D positions, attention/MLP blocks
model.py        `Transformer` (training forward, prefill, cached decode step)
sampling.py     `sample_tokens` (KV cache, CFG, top-k/p, prefixes, long videos)
inference.py    `TextToVideo` (load a workdir or export, generate, export), `SamplingSettings`
losses.py       cross-entropy / z-loss metrics and analytic FLOPs
token_cache.py  pre-tokenized training clips
task.py         `TransformerTask`, the training stage (imports the training engine; nothing
                here imports it)
"""

from videogen.transformer.inference import SamplingSettings, TextToVideo

__all__ = ['SamplingSettings', 'TextToVideo']
