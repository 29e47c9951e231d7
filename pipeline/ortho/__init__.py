"""Orthomosaic kernels: pure numpy/OpenCV functions that the ortho stage maps over images and tiles.

- :mod:`geometry`: rigorous ground -> pixel projection (Brown distortion, float32, tile-local frame),
  footprints, GSD.
- :mod:`visibility`: z-buffer occlusion test of ground points against the DSM, per image.
- :mod:`select`: per-cell view cost (off-nadir angle, ground resolution, sharpness).
- :mod:`exposure`: flight-level per-image, per-channel gains from overlaps (least squares).
- :mod:`seams`: flight-level seam labelling by alpha-expansion graph cuts on a coarse seam grid.
- :mod:`blend`: two-band blending (sharp seams for detail, wide low-frequency transition).
- :mod:`prep`: per-image task (image cache, seam-grid samples); :mod:`tile`: per-tile task.
"""
