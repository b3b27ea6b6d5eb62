"""The shared training loop and the per-stage tasks it runs."""
