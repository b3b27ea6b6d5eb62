"""Evaluation: PSNR/SSIM, FVD (I3D features) and the shapes text-alignment evaluator.

Submodules are imported directly (`from videogen.eval import metrics`) so
that using one does not pull in the others' dependencies.
"""
