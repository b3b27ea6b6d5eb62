"""Evaluation: FVD (I3D features), the shapes text-alignment evaluator, `videogen eval`.

PSNR/SSIM live with the tokenizer (`videogen.vq.metrics`), whose training
stage uses them. Submodules are imported directly (`from videogen.eval import
fvd`) so that using one does not pull in the others' dependencies.
"""
