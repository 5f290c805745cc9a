"""Isotropic resampling in mm (IBSI 1, section 2.4): image by trilinear interpolation, mask by
trilinear interpolation of the 0/1 labels thresholded at 0.5 (partial volume), grid centres
aligned. Single-slice images are resampled in-plane only (their features are computed in 2-D)."""

from __future__ import annotations

from typing import Any

import numpy as np

from metastat.errors import InputError


def isotropic(image: Any, mask: np.ndarray, spacing_mm: float = 1.0) -> tuple[Any, np.ndarray]:
    """``image`` (SimpleITK) and its bool (z, y, x) ``mask`` on an isotropic ``spacing_mm`` grid."""
    import SimpleITK as sitk

    if not spacing_mm > 0:
        raise InputError(f"resampling spacing must be > 0 mm, got {spacing_mm}.")
    old_sp = np.asarray(image.GetSpacing(), float)
    old_size = np.asarray(image.GetSize(), int)
    new_sp = np.full(3, float(spacing_mm))
    if old_size[2] == 1:  # one slice: keep its depth, resample in-plane
        new_sp[2] = old_sp[2]
    new_size = np.maximum(1, np.round(old_size * old_sp / new_sp)).astype(int)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    shift = ((old_size - 1) * old_sp - (new_size - 1) * new_sp) / 2.0  # align grid centres
    origin = np.asarray(image.GetOrigin(), float) + direction @ shift
    ref = sitk.Image([int(s) for s in new_size], sitk.sitkFloat32)
    ref.SetSpacing(new_sp.tolist())
    ref.SetOrigin(origin.tolist())
    ref.SetDirection(direction.flatten().tolist())
    out = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    m = sitk.GetImageFromArray(mask.astype(np.float32))
    m.CopyInformation(image)
    m_out = sitk.Resample(m, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    resampled = sitk.GetArrayFromImage(m_out) >= 0.5
    if not resampled.any():
        raise InputError(
            f"the lesion vanished when resampled to {spacing_mm} mm (it is smaller than one "
            "voxel); use a finer --spacing."
        )
    return out, resampled
