"""The PoseAnimate method: PACM inversion/optimisation, DCAM/MGDM sampling, DDIM, and their plumbing.

:mod:`.pipeline` (``PoseAnimator``) runs PATA -> PACM -> DCAM/MGDM sampling; :mod:`.pacm`,
:mod:`.attention`, :mod:`.masks`, :mod:`.ddim` and :mod:`.denoiser` are the paper's parts;
:mod:`.batching`, :mod:`.cache`, :mod:`.cost`, :mod:`.config` and :mod:`.progress` plan, reuse,
count, configure and report a run.
"""
