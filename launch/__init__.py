"""Launchers for Cloud TPU VMs, GKE and SLURM (no training logic)."""
