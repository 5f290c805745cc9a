"""Stain normalisation (Macenko, Reinhard via torchstain) and HED stain augmentation of tiles.

``create_stain_normaliser(name)`` builds a :class:`StainNormaliser`; ``fit(reference_rgb)`` fits
it to a reference image, ``normalise(tile)`` maps one RGB uint8 tile onto the reference's stain.
Fitted parameters serialise to JSON (``to_json`` / ``StainNormaliser.from_json``) and
``feature_attrs()`` gives the attributes a feature store records (name + parameter digest), so
features computed with different references never mix silently.

In ``slides process`` (``--stain``, ``--stain-reference``; ``ProcessConfig.stain``) each tile is
normalised before the encoder and ``feature_attrs()`` is stored in the feature file's attrs;
``fit_stain_reference`` fits a normaliser on an image file. ``"none"`` is the identity.

Vahadane is not offered: torchstain 1.4.1 (the maintained MIT implementation used here) has
only Macenko and Reinhard.

``HEDJitter`` is stain *augmentation* on pixels (Tellez et al., 2018): perturb the
haematoxylin / eosin / DAB optical densities of a tile by a random scale and shift, for
building training embeddings from augmented tiles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metastat.core.provenance import settings_digest
from metastat.errors import InputError, UnknownNameError, did_you_mean

STAIN_NORMALISERS = ("none", "macenko", "reinhard")
MIN_STAINED_FRACTION = 0.05  # Macenko needs stained pixels; below this a tile is left unchanged
_OD_BETA = 0.15  # optical-density threshold for "stained" (torchstain's default)


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise InputError(
            f"{what} must be an RGB uint8 array (H, W, 3), got dtype {a.dtype} shape {a.shape}"
        )
    return a


def stained_fraction(tile: np.ndarray) -> float:
    """Fraction of pixels with optical density above the Macenko threshold in every channel."""
    od = -np.log((tile.reshape(-1, 3).astype(np.float64) + 1) / 240)
    return float(np.mean(~np.any(od < _OD_BETA, axis=1)))


@dataclass
class StainNormaliser:
    """A stain normaliser (``name`` in STAIN_NORMALISERS) and its fitted parameters."""

    name: str
    params: dict[str, Any] | None = None  # None until fitted ("none" needs no fit)

    def __post_init__(self) -> None:
        if self.name not in STAIN_NORMALISERS:
            hint = did_you_mean(self.name, STAIN_NORMALISERS)
            raise UnknownNameError(
                f"unknown stain normaliser {self.name!r}.{hint} "
                f"Known: {', '.join(STAIN_NORMALISERS)}"
            )
        self._impl: Any = None
        if self.params is not None:
            self._impl = self._build(self.params)

    # -- fitting and serialisation -----------------------------------------------------------
    def fit(self, reference: np.ndarray) -> StainNormaliser:
        """Fit to a reference RGB uint8 image (a representative, well-stained tissue region)."""
        ref = _check_rgb(reference, "stain reference")
        if self.name == "none":
            self.params = {}
            return self
        if self.name == "macenko" and stained_fraction(ref) < MIN_STAINED_FRACTION:
            raise InputError(
                "stain reference has almost no stained pixels: choose a tissue region, "
                "not background"
            )
        impl = self._new()
        impl.fit(ref)
        if self.name == "macenko":
            self.params = {"stain_matrix": impl.HERef.tolist(), "max_conc": impl.maxCRef.tolist()}
        else:
            self.params = {
                "lab_means": np.asarray(impl.target_means).tolist(),
                "lab_stds": np.asarray(impl.target_stds).tolist(),
            }
        self._impl = self._build(self.params)
        return self

    def to_json(self) -> str:
        """The normaliser as JSON (name + fitted parameters); no pickle."""
        return json.dumps({"name": self.name, "params": self._fitted()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StainNormaliser:
        d = json.loads(text)
        return cls(str(d["name"]), d.get("params"))

    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the JSON form: identifies name + reference fit."""
        return settings_digest({"name": self.name, "params": self._fitted()})

    def feature_attrs(self) -> dict[str, str]:
        """Attributes for a feature store: which normaliser, fitted how."""
        return {
            "stain_normaliser": self.name,
            "stain_params_sha256": self.digest(),
            "stain_params": self.to_json(),
        }

    # -- applying ------------------------------------------------------------------------------
    def normalise(self, tile: np.ndarray) -> np.ndarray:
        """The tile (RGB uint8) with the reference's stain; tiles with almost no stained pixels
        (background) are returned unchanged, as Macenko cannot estimate their stain vectors."""
        t = _check_rgb(tile, "tile")
        if self.name == "none":
            return t
        self._fitted()
        if stained_fraction(t) < MIN_STAINED_FRACTION:
            return t
        if self.name == "macenko":
            with np.errstate(divide="ignore", invalid="ignore"):
                out = self._impl.normalize(t, stains=False)[0]
        else:
            out = self._impl.normalize(t)
        return np.ascontiguousarray(out, dtype=np.uint8)

    def normalise_batch(self, tiles: np.ndarray) -> np.ndarray:
        """``normalise`` on each tile of an (N, H, W, 3) batch."""
        return np.stack([self.normalise(t) for t in tiles]) if len(tiles) else tiles

    # -- internals -------------------------------------------------------------------------------
    def _fitted(self) -> dict[str, Any]:
        if self.params is None:
            raise InputError(
                f"stain normaliser {self.name!r} is not fitted: call .fit(reference_image) first"
            )
        return self.params

    def _new(self) -> Any:
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        return NumpyMacenkoNormalizer() if self.name == "macenko" else NumpyReinhardNormalizer()

    def _build(self, params: dict[str, Any]) -> Any:
        if self.name == "none":
            return None
        impl = self._new()
        if self.name == "macenko":
            impl.HERef = np.asarray(params["stain_matrix"], dtype=np.float64).reshape(3, 2)
            impl.maxCRef = np.asarray(params["max_conc"], dtype=np.float64).reshape(2)
        else:
            impl.target_means = np.asarray(params["lab_means"], dtype=np.float32).reshape(3)
            impl.target_stds = np.asarray(params["lab_stds"], dtype=np.float32).reshape(3)
        return impl


def create_stain_normaliser(name: str, reference: np.ndarray | None = None) -> StainNormaliser:
    """A stain normaliser by name (``none``, ``macenko``, ``reinhard``), fitted to
    ``reference`` when given."""
    norm = StainNormaliser(name.lower())
    return norm.fit(reference) if reference is not None else norm


def fit_stain_reference(name: str, path: str | os.PathLike[str]) -> StainNormaliser:
    """``name``'s normaliser fitted on the RGB image file at ``path`` (PNG, JPEG, TIFF ...)."""
    from PIL import Image

    norm = StainNormaliser(name.lower())
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"stain reference '{p}' not found: give an image file (PNG, JPEG, TIFF) of a "
            "well-stained tissue region"
        )
    try:
        with Image.open(p) as im:
            ref = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(
            f"stain reference '{p}' is not a readable image ({type(exc).__name__}): give a "
            "PNG, JPEG or TIFF tile of well-stained tissue"
        ) from exc
    try:
        return norm.fit(ref)
    except InputError as exc:
        raise InputError(f"stain reference '{p}': {exc}") from exc


@dataclass(frozen=True)
class HEDJitter:
    """Stain augmentation: scale each HED optical-density channel by ``1 + U(-sigma, sigma)``
    and shift it by ``U(-bias, bias)`` (Tellez et al., 2018), via scikit-image's HED
    colour deconvolution. Deterministic for a given ``rng``."""

    sigma: float = 0.05
    bias: float = 0.01  # optical-density units of scikit-image's HED space

    def __call__(self, tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from skimage.color import hed2rgb, rgb2hed

        t = _check_rgb(tile, "tile")
        hed = rgb2hed(t)
        alpha = rng.uniform(1 - self.sigma, 1 + self.sigma, 3)
        beta = rng.uniform(-self.bias, self.bias, 3)
        rgb = hed2rgb(hed * alpha + beta)
        return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)

    def batch(self, tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([self(t, rng) for t in tiles]) if len(tiles) else tiles
