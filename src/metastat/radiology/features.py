"""IBSI-compliant radiomics of one lesion by mirp (Zwanenburg et al., Radiology 2020; mirp 2.5).

The image and mask are first resampled to an isotropic grid (:mod:`metastat.radiology.resample`),
then handed to mirp as NIfTI (mirp reads spacing from the file). Families: morphology (shape),
statistics and intensity histogram (first-order), GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM
(texture, 3-D merged; 2-D per slice for single-slice images). Discretisation follows the IBSI
recommendation per modality: CT fixed bin size (25 HU from -1000 HU, re-segmented to
[-1000, 3000] HU); MRI and others fixed bin number (32), because their units are arbitrary.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastat.errors import InputError
from metastat.radiology.io import Volume, read_image, read_mask
from metastat.radiology.resample import isotropic

FAMILIES = (
    "morphology",
    "statistics",
    "intensity_histogram",
    "glcm",
    "glrlm",
    "glszm",
    "gldzm",
    "ngtdm",
    "ngldm",
)
#: mirp feature-name prefixes kept in the table (everything else is mirp metadata)
PREFIXES = ("morph_", "stat_", "ih_", "cm_", "rlm_", "szm_", "dzm_", "ngt_", "ngl_")


@dataclass(frozen=True)
class RadiomicsSettings:
    """Everything that determines the feature values (recorded with every table)."""

    spacing_mm: float = 1.0
    modality: str = "auto"  # "ct" | "mr" | "auto" (from the DICOM header; NIfTI: ct)
    bin_width_hu: float = 25.0
    n_bins: int = 32
    families: tuple[str, ...] = FAMILIES

    def resolved(self, volume: Volume) -> str:
        if self.modality != "auto":
            return self.modality.lower()
        return "mr" if volume.modality.upper() in ("MR", "MRI") else "ct"


def _mirp_kwargs(settings: RadiomicsSettings, modality: str, by_slice: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "base_feature_families": list(settings.families),
        "by_slice": by_slice,
        "ibsi_compliant": True,
        "ivh_discretisation_method": "none",
    }
    if modality == "ct":
        kw |= {
            "base_discretisation_method": "fixed_bin_size",
            "base_discretisation_bin_width": settings.bin_width_hu,
            "resegmentation_method": "range",
            "resegmentation_intensity_range": [-1000.0, 3000.0],
        }
    else:
        kw |= {
            "base_discretisation_method": "fixed_bin_number",
            "base_discretisation_n_bins": settings.n_bins,
        }
    return kw


def radiomics(
    volume: Volume, mask: np.ndarray, settings: RadiomicsSettings | None = None
) -> pd.Series:
    """IBSI radiomics of the lesion ``mask`` (bool, (z, y, x), on ``volume``'s grid)."""
    import SimpleITK as sitk
    from mirp import extract_features

    settings = settings or RadiomicsSettings()
    image, lesion = isotropic(volume.image, mask, settings.spacing_mm)
    modality = settings.resolved(volume)
    by_slice = image.GetSize()[2] == 1
    with tempfile.TemporaryDirectory(prefix="metastat-radiomics-") as tmp:
        img_path, mask_path = Path(tmp) / "image.nii.gz", Path(tmp) / "mask.nii.gz"
        sitk.WriteImage(image, str(img_path))
        m = sitk.GetImageFromArray(lesion.astype(np.uint8))
        m.CopyInformation(image)
        sitk.WriteImage(m, str(mask_path))
        level = logging.root.manager.disable
        logging.disable(logging.INFO)  # mirp logs every step at INFO on the root logger
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tables = extract_features(
                    image=str(img_path),
                    mask=str(mask_path),
                    **_mirp_kwargs(settings, modality, by_slice),
                )
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{volume.source}: radiomics failed in mirp ({exc}).") from exc
        finally:
            logging.disable(level)
    if not tables:
        raise InputError(f"{volume.source}: mirp returned no features for this mask.")
    row = tables[0].iloc[0]
    keep = [c for c in row.index if str(c).startswith(PREFIXES)]
    return pd.to_numeric(row[keep], errors="coerce").astype(float)


def lesion_features(
    image: str | Path,
    mask: str | Path,
    *,
    label: str | int | None = None,
    series: str | None = None,
    settings: RadiomicsSettings | None = None,
) -> pd.Series:
    """Read ``image`` (DICOM file / series folder / NIfTI) and its lesion ``mask`` (NIfTI,
    DICOM-SEG, RTSTRUCT) and compute the radiomics of :func:`radiomics`."""
    volume = read_image(image, series=series)
    return radiomics(volume, read_mask(mask, volume, label=label), settings)


def settings_json(settings: RadiomicsSettings) -> dict[str, Any]:
    """Settings and library versions, for the provenance record of a feature table."""
    from importlib.metadata import version

    libs = {p: version(p) for p in ("mirp", "SimpleITK", "pydicom", "nibabel")}
    return {**asdict(settings), "families": list(settings.families), "versions": libs}
