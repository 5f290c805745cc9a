"""Radiology, the fourth modality: CT / MRI lesions -> IBSI radiomics -> per-patient table.

* :mod:`~metastat.radiology.io`: DICOM series (pydicom + SimpleITK) and NIfTI (nibabel) images;
  lesion masks as NIfTI, DICOM-SEG (highdicom) or RTSTRUCT (contours rasterised on the image grid);
  checks of spacing, series, mask geometry and emptiness.
* :mod:`~metastat.radiology.resample`: isotropic resampling in mm (image linear, mask by partial
  volume >= 0.5, IBSI chapter 2).
* :mod:`~metastat.radiology.features`: IBSI-compliant radiomics (shape, first-order, texture) by
  mirp; :mod:`~metastat.radiology.cohort`: a manifest of patients -> feature table (resumable).
* :mod:`~metastat.radiology.modality`: the fusion registry entry (table modality, default model).
* :mod:`~metastat.radiology.phantom`: synthetic spheres with known volume / intensity (tests,
  planted benchmarks; never evidence that a model works).
"""
