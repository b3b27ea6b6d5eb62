"""Test set-up: 8 virtual CPU devices, TensorFlow kept off any accelerator."""

import os

# Before JAX is imported anywhere: tests run on 8 virtual CPU devices.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
