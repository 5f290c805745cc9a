"""Reading CT / MRI images and lesion masks onto one voxel grid (SimpleITK images, mm, LPS).

Images: a DICOM file, a folder holding one DICOM series (pydicom reads the headers, SimpleITK the
pixels in slice order, rescaled to HU / stored units), or NIfTI (nibabel; RAS converted to the
LPS frame DICOM and SimpleITK use). Masks: NIfTI (any grid equal to the image's), DICOM-SEG
(highdicom; frames matched to the image's slices by SOP instance UID) or RTSTRUCT (contours in mm
rasterised on the image grid, even-odd rule for holes). Every check fails with one line naming
the file and the fix: missing spacing, several series in one folder, a mask that does not match
the image, an empty mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metastat.errors import InputError

NIFTI = (".nii", ".nii.gz")
_NOT_IMAGES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG"}


@dataclass
class Volume:
    """An image (or mask) as a SimpleITK image, with where it came from."""

    image: Any  # SimpleITK.Image
    source: str
    modality: str = ""  # DICOM Modality (CT, MR) when known
    sop_uids: list[str] = field(default_factory=list)  # DICOM slice order (for DICOM-SEG)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(self.image.GetSpacing())

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(self.image.GetSize())

    def array(self) -> np.ndarray:
        """Voxel values as (z, y, x)."""
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(self.image)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI)


def _check_spacing(spacing: Any, where: str) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) < 3 or not all(np.isfinite(values)) or min(values[:3]) <= 0:
        raise InputError(
            f"{where}: no valid voxel spacing in the header (got {values}); "
            "fix the header (PixelSpacing / SliceThickness, NIfTI pixdim) or re-export the image."
        )
    return values[:3]  # type: ignore[return-value]


# -- NIfTI -------------------------------------------------------------------------
def read_nifti(path: str | Path, *, integer: bool = False) -> Volume:
    """A 3-D NIfTI file (nibabel) as a SimpleITK image in LPS (like SimpleITK's own reader)."""
    import nibabel as nib
    import SimpleITK as sitk

    path = Path(path)
    try:
        img: Any = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI file ({exc}).") from exc
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D image, got shape {data.shape}.")
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:  # nibabel silently "fixes" a zero pixdim to 1 mm
        raw: Any = type(img.header).from_fileobj(fh, check=False)
    _check_spacing(raw["pixdim"][1:4], str(path))
    lps = np.diag([-1.0, -1.0, 1.0]) @ img.affine[:3, :4]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    _check_spacing(spacing, str(path))
    values = data.astype(np.uint8 if integer else np.float32)
    out = sitk.GetImageFromArray(np.ascontiguousarray(values.transpose(2, 1, 0)))
    out.SetSpacing(spacing.tolist())
    out.SetOrigin(lps[:, 3].tolist())
    out.SetDirection((lps[:, :3] / spacing).flatten().tolist())
    return Volume(out, str(path))


# -- DICOM -------------------------------------------------------------------------
def _dicom_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"{path}: the folder holds no files; give a DICOM series folder.")
    return files


def _headers(files: list[Path]) -> list[tuple[Path, Any]]:
    import pydicom

    out = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # not DICOM (README, DICOMDIR index ...): skip
            continue
        if "SOPInstanceUID" in ds and ds.get("Modality", "") not in _NOT_IMAGES:
            out.append((f, ds))
    return out


def read_dicom(path: str | Path, *, series: str | None = None) -> Volume:
    """One DICOM image series: a file, or a folder holding exactly one series (or pick one with
    ``series``, a SeriesInstanceUID)."""
    import SimpleITK as sitk

    path = Path(path)
    heads = _headers(_dicom_files(path))
    if not heads:
        raise InputError(f"{path}: no DICOM image found (files are not DICOM, or only SEG/RT).")
    by_series: dict[str, list[tuple[Path, Any]]] = {}
    for f, ds in heads:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    if series is not None:
        if series not in by_series:
            raise InputError(f"{path}: no series {series!r}; series here: {sorted(by_series)}.")
        by_series = {series: by_series[series]}
    if len(by_series) > 1:
        shown = [
            f"{uid} ({v[0][1].get('Modality', '?')}, {len(v)} files, "
            f"{v[0][1].get('SeriesDescription', '')!s})"
            for uid, v in by_series.items()
        ]
        raise InputError(
            f"{path}: mixed series, {len(by_series)} DICOM series in one folder: {shown}. "
            "Put each series in its own folder, or pick one with --series UID."
        )
    ((uid, members),) = by_series.items()
    first = members[0][1]
    if "PixelSpacing" not in first:
        raise InputError(
            f"{members[0][0]}: no PixelSpacing in the DICOM header, so sizes in mm are unknown; "
            "fix the header or export the image as NIfTI with its voxel size."
        )
    if len(members) == 1:
        if "SliceThickness" not in first and "SpacingBetweenSlices" not in first:
            raise InputError(
                f"{members[0][0]}: a single slice without SliceThickness: its voxel depth is "
                "unknown; fix the header."
            )
        image = sitk.ReadImage(str(members[0][0]), sitk.sitkFloat32)
        if "SliceThickness" in first and image.GetSize()[2] == 1:
            sp = list(image.GetSpacing())
            sp[2] = float(first.get("SpacingBetweenSlices", first.SliceThickness))
            image.SetSpacing(sp)
        files = [members[0][0]]
    else:
        reader = sitk.ImageSeriesReader()
        folder = str(members[0][0].parent)
        names = reader.GetGDCMSeriesFileNames(folder, uid)
        if len(names) != len(members):
            names = [str(f) for f, _ in members]  # GDCM could not sort: let SimpleITK try
        reader.SetFileNames(names)
        image = sitk.Cast(reader.Execute(), sitk.sitkFloat32)
        files = [Path(n) for n in names]
    _check_spacing(image.GetSpacing(), str(path))
    lookup = {f: ds for f, ds in members}
    uids = [str(lookup[f].SOPInstanceUID) for f in files if f in lookup]
    return Volume(image, str(path), str(first.get("Modality", "")), uids)


def read_image(path: str | Path, *, series: str | None = None) -> Volume:
    """A CT / MRI image: NIfTI file, DICOM file or DICOM series folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such image file or folder.")
    return read_nifti(path) if is_nifti(path) else read_dicom(path, series=series)


# -- masks -------------------------------------------------------------------------
def _same_grid(mask: Any, image: Any, tol: float = 1e-3) -> str | None:
    """None if the two images share a voxel grid, else what differs."""
    if tuple(mask.GetSize()) != tuple(image.GetSize()):
        return f"size {mask.GetSize()} vs image {image.GetSize()}"
    for what in ("Spacing", "Origin", "Direction"):
        a = np.asarray(getattr(mask, f"Get{what}")())
        b = np.asarray(getattr(image, f"Get{what}")())
        scale = max(1.0, float(np.abs(b).max()))
        if np.abs(a - b).max() > tol * scale:
            return f"{what.lower()} {tuple(a.round(4))} vs image {tuple(b.round(4))}"
    return None


def _seg(path: Path, image: Volume, label: int | None) -> np.ndarray:
    import highdicom as hd

    if not image.sop_uids:
        raise InputError(f"{path}: a DICOM-SEG mask needs a DICOM image (it references slices).")
    seg = hd.seg.segread(str(path))
    numbers = [int(n) for n in seg.segment_numbers] if label is None else [label]
    referenced = {str(u[2]) for u in seg.get_source_image_uids()}
    if not referenced & set(image.sop_uids):
        raise InputError(
            f"{path}: the DICOM-SEG references none of the image's slices; pair it with the "
            "series it was drawn on."
        )
    uids = [u for u in image.sop_uids if u in referenced]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=numbers,
        combine_segments=True,
        skip_overlap_checks=True,
    )
    out = np.zeros(image.array().shape, dtype=np.uint8)
    for k, uid in enumerate(image.sop_uids):
        if uid in uids:
            out[k] = pixels[uids.index(uid)] > 0
    return out


def _rtstruct(path: Path, image: Volume, label: str | int | None) -> np.ndarray:
    import pydicom
    from skimage.draw import polygon

    ds = pydicom.dcmread(path, force=True)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    contours = list(ds.get("ROIContourSequence", []))
    if not contours:
        raise InputError(f"{path}: the RTSTRUCT holds no contours.")
    if label is None:
        chosen = contours[0]
    else:
        match = [
            c for c in contours
            if str(label) in (str(c.ReferencedROINumber), names.get(int(c.ReferencedROINumber)))
        ]  # fmt: skip
        if not match:
            raise InputError(f"{path}: no ROI {label!r}; ROIs: {sorted(names.values())}.")
        chosen = match[0]
    img = image.image
    z, y, x = image.array().shape
    out = np.zeros((z, y, x), dtype=np.uint8)
    for contour in chosen.get("ContourSequence", []):
        pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
        idx = np.array([img.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in pts])
        k = round(float(np.median(idx[:, 2])))
        if not 0 <= k < z:
            continue
        rr, cc = polygon(idx[:, 1], idx[:, 0], shape=(y, x))
        out[k, rr, cc] ^= 1  # even-odd: an inner contour is a hole
    return out


def read_mask(path: str | Path, image: Volume, *, label: str | int | None = None) -> np.ndarray:
    """The lesion mask on ``image``'s grid as a bool (z, y, x) array.

    NIfTI / DICOM label images: voxels equal to ``label`` (default: any non-zero); DICOM-SEG:
    segment number ``label`` (default: all); RTSTRUCT: ROI name or number ``label`` (default:
    the first)."""
    import pydicom
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such mask file.")
    if is_nifti(path):
        mask = read_nifti(path, integer=False).image
        values = None
    else:
        try:
            kind = str(
                pydicom.dcmread(path, stop_before_pixels=True, force=True).get("Modality", "")
            )
        except Exception as exc:
            raise InputError(f"{path}: mask is neither NIfTI nor DICOM ({exc}).") from exc
        if kind == "SEG":
            values = _seg(path, image, None if label is None else int(label))
        elif kind == "RTSTRUCT":
            values = _rtstruct(path, image, label)
        else:
            mask = read_dicom(path).image
            values = None
    if values is None:
        diff = _same_grid(mask, image.image)
        if diff is not None:
            raise InputError(
                f"mask {path} does not match image {image.source}: {diff}. Pair the mask with "
                "the image it was drawn on, or resample the mask onto the image grid first."
            )
        arr = sitk.GetArrayFromImage(mask)
        values = arr == float(label) if label is not None else arr != 0
    out = np.asarray(values, dtype=bool)
    if not out.any():
        which = f"label {label!r}" if label is not None else "any lesion voxel"
        raise InputError(
            f"mask {path} is empty: it has no voxel of {which} on image {image.source}; "
            "check the label (--label) and that the mask belongs to this image."
        )
    return out
