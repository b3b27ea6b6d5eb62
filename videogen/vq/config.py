"""Config sections of the video tokenizer: `config.model` and `config.loss`.

`model_config(variant, quantizer)` sizes the causal 3D-CNN autoencoder from a
variant name (`tiny`, `small`, `base`) and picks the quantizer; every
quantizer's settings are present so that `--config.model.quantizer=lfq`
switches without editing the file. `loss_config()` holds the reconstruction,
perceptual and GAN terms.
"""

from __future__ import annotations

import ml_collections

ConfigDict = ml_collections.ConfigDict

# channels: of the first (full-resolution) level; channel_multipliers: one
# level per downsampling slot plus the bottom one; num_res_blocks: per level;
# norm_groups: per-frame GroupNorm groups (0 = none); spatial_downsample.
# `base` is MAGVIT-v2's video tokenizer width. `tiny` is the CPU quickstart:
# 9x32x32 clips -> 3x8x8 tokens, 17x64x64 -> 5x16x16 (spatial_downsample=8
# needs a fourth level). On 9x32x32 shapes, no normalisation, an L2 loss and
# three levels raised PSNR in the fewest steps; GroupNorm or a fourth level
# slowed it, and wider unnormalised levels collapsed the FSQ codes.
VARIANTS = {
  'tiny': dict(
    channels=8,
    channel_multipliers=(1, 2, 4),
    num_res_blocks=1,
    norm_groups=0,
    spatial_downsample=4,
  ),
  'small': dict(
    channels=64,
    channel_multipliers=(1, 2, 2, 4),
    num_res_blocks=2,
    norm_groups=32,
    spatial_downsample=8,
  ),
  'base': dict(
    channels=128,
    channel_multipliers=(1, 2, 2, 4),
    num_res_blocks=4,
    norm_groups=32,
    spatial_downsample=8,
  ),
}

QUANTIZERS = ('fsq', 'lfq', 'vq')


def model_config(variant: str = 'small', quantizer: str = 'fsq') -> ConfigDict:
  """The tokenizer model section (`config.model`).

  Args:
    variant: 'tiny', 'small' or 'base' (see `VARIANTS`).
    quantizer: 'fsq', 'lfq' or 'vq'.

  Returns:
    An unlocked ConfigDict (the experiment file locks the whole config).
  """
  if variant not in VARIANTS:
    raise ValueError(f'Unknown tokenizer variant {variant!r}; valid: {sorted(VARIANTS)}')
  if quantizer not in QUANTIZERS:
    raise ValueError(f'Unknown quantizer {quantizer!r}; valid: {list(QUANTIZERS)}')
  sizes = VARIANTS[variant]
  model = ConfigDict()
  # One line per field, its comment included.
  # fmt: off
  model.variant = variant  # Size name; channels .. spatial_downsample default from it.
  model.channels = sizes['channels']  # Channels of the first (full-resolution) level.
  model.channel_multipliers = sizes['channel_multipliers']  # Level i has channels * mult[i]; one downsampling slot between levels.
  model.num_res_blocks = sizes['num_res_blocks']  # Residual blocks per level (and at the bottom).
  model.norm_groups = sizes['norm_groups']  # Per-frame GroupNorm groups (reduced to divide the channels); 0 = no norm.
  model.temporal_downsample = 4  # Time compression (power of 2): 1 + 4k frames -> 1 + k latent frames.
  model.spatial_downsample = sizes['spatial_downsample']  # Space compression (power of 2): H x W -> H/s x W/s tokens.
  model.quantizer = quantizer  # 'fsq' (default), 'lfq' or 'vq'.

  model.fsq = ConfigDict()
  model.fsq.levels = (8, 5, 5, 5)  # Values per latent channel; codebook = product (1000).
  model.fsq.commitment_weight = 0.1  # Pulls latents to bin centres: black background gets 1 code, not 5; 0 = paper FSQ.

  model.lfq = ConfigDict()
  model.lfq.bits = 10  # Latent channels = bits; codebook = 2**bits.
  model.lfq.entropy_groups = 1  # Batch entropy summed over this many sub-codebooks (must divide bits); 2 for 18 bits.
  model.lfq.entropy_weight = 0.1  # Weight of (per-token entropy - diversity * batch entropy).
  model.lfq.diversity_weight = 1.0  # Weight of the batch (codebook) entropy inside that loss.
  model.lfq.entropy_anneal_steps = 2000  # The entropy weight decays linearly over these steps ...
  model.lfq.entropy_anneal_factor = 3.0  # ... from factor * entropy_weight to entropy_weight.
  model.lfq.entropy_temperature = 0.01  # Softmax temperature of a token's code distribution.
  model.lfq.commitment_weight = 0.25  # Weight of ||z - sg(q)||^2.

  model.vq = ConfigDict()
  model.vq.codebook_size = 1024  # Number of codes.
  model.vq.dim = 8  # Code dimension (= encoder output channels); codes are l2-normalised.
  model.vq.ema_decay = 0.99  # Decay of the EMA codebook statistics.
  model.vq.dead_code_threshold = 0.1  # Restart codes used less than this fraction of uniform use (EMA).
  model.vq.commitment_weight = 0.25  # Weight of ||z - sg(q)||^2.
  # fmt: on
  return model


def loss_config() -> ConfigDict:
  """The tokenizer loss section (`config.loss`)."""
  loss = ConfigDict()
  # One line per field, its comment included.
  # fmt: off
  loss.recon = 'l2'  # Reconstruction loss: 'l1', 'l2' or 'l1+l2' (l2 raised PSNR fastest on shapes).
  loss.l1_weight = 1.0  # Weight of mean |x - x_hat| (when recon has l1).
  loss.l2_weight = 1.0  # Weight of mean (x - x_hat)^2 (when recon has l2).
  loss.quantizer_weight = 1.0  # Multiplies the quantizer's own loss (commitment, entropy).

  loss.perceptual_weight = 0.1  # Weight of the LPIPS-style perceptual loss when weights are given.
  loss.perceptual_weights = ''  # LPIPS-VGG16 weights (.safetensors/.npz, see vq/perceptual.py); '' = off.

  loss.gan = ConfigDict()
  loss.gan.enabled = False  # Adversarial loss with a 3D conv discriminator (MAGVIT-v2 uses it).
  loss.gan.loss = 'hinge'  # 'hinge' or 'non_saturating'.
  loss.gan.weight = 0.1  # Generator adversarial weight (times the adaptive weight).
  loss.gan.start_step = 2000  # Steps before the adversarial terms and discriminator start.
  loss.gan.adaptive_weight = True  # Scale by ||grad recon|| / ||grad gan|| at the last decoder layer.
  loss.gan.max_adaptive_weight = 1e4  # Upper clip of the adaptive weight.
  loss.gan.lecam_weight = 0.001  # LeCam regularisation weight; 0 disables.
  loss.gan.lecam_ema_decay = 0.999  # EMA decay of the mean real/fake logits for LeCam.
  loss.gan.disc_channels = 32  # Discriminator channels of its first level.
  loss.gan.disc_channel_multipliers = (1, 2, 4, 4)  # One stride-2 (time, height, width) level each.
  loss.gan.disc_learning_rate = 1e-4  # Discriminator Adam learning rate (constant).
  loss.gan.disc_b1 = 0.0  # Discriminator Adam beta1.
  loss.gan.disc_b2 = 0.99  # Discriminator Adam beta2.
  # fmt: on
  return loss
