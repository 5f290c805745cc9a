"""Synthetic lesion phantoms with known answers (format tests and planted benchmarks only).

A sphere (or ellipsoid) of known radius in mm and mean intensity on a noisy background, sampled
on an anisotropic grid like a clinical CT, so resampling and spacing handling are exercised.
Known values: volume ``4/3 pi a b c`` mm^3, mean intensity, sphericity 1 (a voxelised sphere
meshes to about 0.92-0.95: the marching-cubes staircase).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Phantom:
    image: Any  # SimpleITK image
    mask: np.ndarray  # bool (z, y, x)
    volume_mm3: float  # of the ideal ellipsoid
    mean: float  # lesion mean intensity (before noise)

    def write(self, folder: str | Path, stem: str = "phantom") -> tuple[Path, Path]:
        """NIfTI image and mask files."""
        import SimpleITK as sitk

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        img, msk = folder / f"{stem}_image.nii.gz", folder / f"{stem}_mask.nii.gz"
        sitk.WriteImage(self.image, str(img))
        m = sitk.GetImageFromArray(self.mask.astype(np.uint8))
        m.CopyInformation(self.image)
        sitk.WriteImage(m, str(msk))
        return img, msk


def sphere_phantom(
    radius_mm: float | tuple[float, float, float] = 10.0,
    *,
    intensity: float = 60.0,
    background: float = -100.0,
    noise_sd: float = 10.0,
    texture_sd: float = 0.0,
    spacing_mm: tuple[float, float, float] = (0.8, 0.8, 2.0),
    margin_mm: float = 6.0,
    seed: int = 0,
) -> Phantom:
    """An ellipsoid lesion (semi-axes ``radius_mm`` in x, y, z) of mean ``intensity`` HU;
    ``texture_sd`` adds smooth lesion-internal heterogeneity (a texture signal)."""
    import SimpleITK as sitk
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    radii = np.broadcast_to(np.asarray(radius_mm, float), (3,))
    sp = np.asarray(spacing_mm, float)
    size = np.ceil(2 * (radii + margin_mm) / sp).astype(int)  # x, y, z
    centre = (size - 1) / 2.0
    z, y, x = np.indices(size[::-1], dtype=float)
    r2 = (
        ((x - centre[0]) * sp[0] / radii[0]) ** 2
        + ((y - centre[1]) * sp[1] / radii[1]) ** 2
        + ((z - centre[2]) * sp[2] / radii[2]) ** 2
    )
    mask = r2 <= 1.0
    values = np.where(mask, intensity, background) + noise_sd * rng.normal(size=mask.shape)
    if texture_sd > 0:
        blob = gaussian_filter(rng.normal(size=mask.shape), sigma=1.5)
        values += np.where(mask, texture_sd * blob / (blob[mask].std() + 1e-12), 0.0)
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(sp.tolist())
    image.SetOrigin((-100.0, -80.0, 20.0))
    return Phantom(image, mask, float(4.0 / 3.0 * np.pi * radii.prod()), float(intensity))
