"""Radiology: reading real DICOM CT, masks in three formats, radiomics against known values,
clear errors for bad input, the CLI (single image and manifest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("mirp")

from pydicom.data import get_testdata_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from metastat.cli.main import app  # noqa: E402
from metastat.errors import InputError  # noqa: E402
from metastat.radiology.features import RadiomicsSettings, radiomics  # noqa: E402
from metastat.radiology.io import Volume, read_image, read_mask, read_nifti  # noqa: E402
from metastat.radiology.phantom import sphere_phantom  # noqa: E402
from metastat.radiology.resample import isotropic  # noqa: E402

CT = Path(get_testdata_file("CT_small.dcm"))  # real CT slice shipped by the pydicom wheel
SERIES = CT.parent / "dicomdirtests" / "98892001"  # CT2N (2 files) + CT5N (5-slice series)
FAST = RadiomicsSettings(spacing_mm=1.0, families=("morphology", "statistics", "glcm"))
runner = CliRunner()


def _disc_mask(volume: Volume, radius_px: int = 12) -> np.ndarray:
    _, y, x = np.indices(volume.array().shape)
    return ((x - 64) ** 2 + (y - 64) ** 2) <= radius_px**2


def _write_mask(mask: np.ndarray, like, path: Path) -> Path:
    m = sitk.GetImageFromArray(mask.astype(np.uint8))
    m.CopyInformation(like)
    sitk.WriteImage(m, str(path))
    return path


# -- known answers ---------------------------------------------------------------------------------
def test_sphere_phantom_volume_mean_sphericity() -> None:
    """A sphere of radius 6 mm, mean 60 HU, on a 1 mm grid: IBSI mesh volume within 1 % of
    4/3 pi r^3, mean within 1 HU, sphericity of the voxelised sphere in [0.9, 1]."""
    ph = sphere_phantom(6.0, intensity=60.0, noise_sd=5.0, spacing_mm=(1.0, 1.0, 1.0))
    f = radiomics(Volume(ph.image, "phantom"), ph.mask, RadiomicsSettings(spacing_mm=1.0))
    assert f["morph_volume"] == pytest.approx(ph.volume_mm3, rel=0.01)
    assert f["stat_mean"] == pytest.approx(60.0, abs=1.0)
    assert 0.9 <= f["morph_sphericity"] <= 1.0
    from metastat.radiology.features import PREFIXES

    assert all(any(c.startswith(p) for c in f.index) for p in PREFIXES)  # every IBSI family
    assert "cm_joint_max_d1_3d_v_mrg_fbs_w25.0" in f.index  # GLCM, 3-D merged, 25 HU bins
    assert f.notna().mean() > 0.95


def test_anisotropic_phantom_is_resampled_to_isotropic_mm() -> None:
    """0.8 x 0.8 x 2.0 mm voxels -> 1 mm isotropic: the lesion keeps its volume in mm^3."""
    ph = sphere_phantom(8.0, spacing_mm=(0.8, 0.8, 2.0))
    image, mask = isotropic(ph.image, ph.mask, 1.0)
    assert image.GetSpacing() == (1.0, 1.0, 1.0)
    assert mask.sum() == pytest.approx(ph.volume_mm3, rel=0.03)  # 1 voxel = 1 mm^3
    centre_old = np.asarray(ph.image.TransformContinuousIndexToPhysicalPoint(
        [(s - 1) / 2 for s in ph.image.GetSize()]))  # fmt: skip
    centre_new = np.asarray(image.TransformContinuousIndexToPhysicalPoint(
        [(s - 1) / 2 for s in image.GetSize()]))  # fmt: skip
    np.testing.assert_allclose(centre_old, centre_new, atol=1e-6)  # grid centres aligned


def test_real_ct_features_against_independent_values(tmp_path) -> None:
    """CT_small.dcm (pydicom's real CT slice): HU read by SimpleITK equal pydicom's rescaled
    pixels; the lesion's mean HU and voxel-count volume match an independent numpy computation."""
    vol = read_image(CT)
    ds = pydicom.dcmread(CT)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.array()[0], hu)
    assert vol.spacing == pytest.approx((0.661468, 0.661468, 5.0))
    assert vol.modality == "CT" and vol.sop_uids == [str(ds.SOPInstanceUID)]
    disc = _disc_mask(vol)
    mask = read_mask(_write_mask(disc, vol.image, tmp_path / "m.nii.gz"), vol)
    f = radiomics(vol, mask, FAST)
    expected_volume = disc.sum() * 0.661468**2 * 5.0  # mm^3 on the native grid
    assert f["morph_vol_approx"] == pytest.approx(expected_volume, rel=0.03)
    assert f["stat_mean"] == pytest.approx(hu[disc[0]].mean(), rel=0.02)
    assert f["stat_min"] >= hu.min() - 1 and f["stat_max"] <= hu.max() + 1


def test_dicom_seg_and_rtstruct_masks_on_real_ct(tmp_path) -> None:
    """The same disc as DICOM-SEG (highdicom) and as RTSTRUCT contour gives the NIfTI mask."""
    hd = pytest.importorskip("highdicom")
    vol = read_image(CT)
    ds = pydicom.dcmread(CT)
    disc = _disc_mask(vol)
    seg = hd.seg.Segmentation(
        source_images=[ds],
        pixel_array=disc[0].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label="lesion",
                segmented_property_category=hd.sr.CodedConcept(
                    "49755003", "SCT", "Morphologically Abnormal Structure"
                ),
                segmented_property_type=hd.sr.CodedConcept("4147007", "SCT", "Mass"),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
        ],
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="metastat tests",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_mask(tmp_path / "seg.dcm", vol), disc)

    # RTSTRUCT: a square contour in patient mm, rasterised on the image grid
    rt = pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True)  # no file meta
    corners = [(39.5, 39.5), (80.5, 39.5), (80.5, 80.5), (39.5, 80.5)]  # around pixels 40..80
    pts = []
    for i, j in corners:
        pts += list(vol.image.TransformContinuousIndexToPhysicalPoint([float(i), float(j), 0.0]))
    roi = rt.ROIContourSequence[0]
    roi.ContourSequence = roi.ContourSequence[:1]
    roi.ContourSequence[0].ContourData = [f"{v:.4f}" for v in pts]
    roi.ContourSequence[0].NumberOfContourPoints = 4
    rt.save_as(tmp_path / "rt.dcm")
    mask = read_mask(tmp_path / "rt.dcm", vol)
    assert mask[0, 40:81, 40:81].all() and mask.sum() == 41 * 41


def test_nifti_reader_matches_simpleitk(tmp_path) -> None:
    ph = sphere_phantom(5.0, spacing_mm=(0.7, 0.9, 2.5))
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated: exercises RAS -> LPS
    ph.image.SetDirection(direction)
    sitk.WriteImage(ph.image, str(tmp_path / "x.nii.gz"))
    ours, theirs = (
        read_nifti(tmp_path / "x.nii.gz").image,
        sitk.ReadImage(str(tmp_path / "x.nii.gz")),
    )
    np.testing.assert_allclose(ours.GetSpacing(), theirs.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(ours.GetOrigin(), theirs.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(ours.GetDirection(), theirs.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))


def test_real_dicom_series_and_mixed_series(tmp_path) -> None:
    one = tmp_path / "ct5n"
    shutil.copytree(SERIES / "CT5N", one)
    vol = read_image(one)
    assert vol.size == (16, 16, 5) and vol.spacing == pytest.approx((0.488281, 0.488281, 2.5))
    z = [vol.image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(5)]
    assert np.all(np.diff(z) > 0)  # slices sorted by position, not by file name
    mixed = tmp_path / "mixed"
    shutil.copytree(SERIES / "CT5N", mixed)
    for f in (SERIES / "CT2N").iterdir():
        shutil.copy(f, mixed / f"other_{f.name}")
    with pytest.raises(InputError, match=r"mixed series, 2 DICOM series.*--series UID"):
        read_image(mixed)
    uid = str(pydicom.dcmread(next(one.iterdir())).SeriesInstanceUID)
    assert read_image(mixed, series=uid).size == (16, 16, 5)


# -- clear errors ----------------------------------------------------------------------------------
def test_missing_spacing_is_an_error(tmp_path) -> None:
    ds = pydicom.dcmread(CT)
    del ds.PixelSpacing
    ds.save_as(tmp_path / "nospacing.dcm")
    with pytest.raises(InputError, match=r"no PixelSpacing.*mm"):
        read_image(tmp_path / "nospacing.dcm")
    import struct

    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    nib.save(img, str(tmp_path / "zero.nii"))
    raw = bytearray((tmp_path / "zero.nii").read_bytes())
    raw[80:92] = struct.pack("<3f", 0.0, 0.0, 0.0)  # pixdim[1:4] = 0: voxel size unknown
    (tmp_path / "zero.nii").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="no valid voxel spacing"):
        read_image(tmp_path / "zero.nii")


def test_mask_not_matching_and_empty_mask(tmp_path) -> None:
    vol = read_image(CT)
    small = np.ones((1, 64, 64), bool)
    m = sitk.GetImageFromArray(small.astype(np.uint8))
    sitk.WriteImage(m, str(tmp_path / "small.nii.gz"))
    with pytest.raises(InputError, match=r"does not match image .*size \(64, 64, 1\)"):
        read_mask(tmp_path / "small.nii.gz", vol)
    shifted = sitk.GetImageFromArray(_disc_mask(vol).astype(np.uint8))
    shifted.CopyInformation(vol.image)
    shifted.SetSpacing((1.0, 1.0, 5.0))
    sitk.WriteImage(shifted, str(tmp_path / "spacing.nii.gz"))
    with pytest.raises(InputError, match=r"does not match image .*spacing"):
        read_mask(tmp_path / "spacing.nii.gz", vol)
    empty = _write_mask(np.zeros((1, 128, 128), bool), vol.image, tmp_path / "empty.nii.gz")
    with pytest.raises(InputError, match="is empty"):
        read_mask(empty, vol)
    labelled = _write_mask(_disc_mask(vol), vol.image, tmp_path / "l.nii.gz")
    with pytest.raises(InputError, match="no voxel of label '2'"):
        read_mask(labelled, vol, label="2")


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_single_image_and_resumable_manifest(tmp_path) -> None:
    vol = read_image(CT)
    mask = _write_mask(_disc_mask(vol), vol.image, tmp_path / "ct_mask.nii.gz")
    res = runner.invoke(
        app,
        ["radiology", "features", str(CT), "--mask", str(mask), "--out", str(tmp_path / "one.csv"),
         "--spacing", "2", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_patients"] == 1
    from metastat.radiology.cohort import read_feature_table

    one = read_feature_table(tmp_path / "one.csv")
    assert list(one.index) == ["CT_small"] and one.shape[1] > 100

    img, msk = sphere_phantom(5.0).write(tmp_path, "p1")
    (tmp_path / "manifest.csv").write_text(
        "patient_id,image,mask\n"
        f"P1,{img.name},{msk.name}\n"
        f"P2,{CT},{tmp_path / 'empty.nii.gz'}\n"  # missing mask file: reported, skipped
    )
    args = ["radiology", "features", "--manifest", str(tmp_path / "manifest.csv"),
            "--out", str(tmp_path / "cohort.csv"), "--spacing", "2", "--json"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["n_patients"] == 1 and "no such mask file" in summary["failures"]["P2"]
    record = json.loads((tmp_path / "cohort.csv.json").read_text())
    assert record["settings"]["versions"]["mirp"] == "2.5.0"
    parts = list((tmp_path / "cohort.csv.parts").iterdir())
    assert len(parts) == 1
    stamp = parts[0].stat().st_mtime_ns
    assert runner.invoke(app, args).exit_code == 0
    assert parts[0].stat().st_mtime_ns == stamp  # finished patient not recomputed

    res = runner.invoke(app, ["radiology", "features", "--out", str(tmp_path / "x.csv")])
    assert res.exit_code != 0


def test_real_mr_uses_fixed_bin_number(tmp_path) -> None:
    """MR_small.dcm (real MR, arbitrary units): discretised into 32 bins, not HU-wide bins."""
    vol = read_image(get_testdata_file("MR_small.dcm"))
    assert vol.modality == "MR"
    _, y, x = np.indices(vol.array().shape)
    disc = ((x - 32) ** 2 + (y - 32) ** 2) <= 10**2
    f = radiomics(vol, disc, RadiomicsSettings(spacing_mm=1.0, families=("statistics", "glcm")))
    assert any(c.endswith("_fbn_n32") for c in f.index)
    assert not any("_fbs_" in c for c in f.index)
    assert f["stat_mean"] == pytest.approx(vol.array()[disc].mean(), rel=0.05)
