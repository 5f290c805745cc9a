"""Contract cases of the neural families: attention MIL on tile-feature bags, late and neural
fusion on a multimodal set.

MIL bags hold real H&E tile embeddings (the shipped ``mil/data/histo_tiles.npz``) with planted
slide labels (format / contract test, not evidence). Fusion uses the real breast_nki cohort
(clinical + 200 genes, distant-metastasis-free survival, 5-year horizon).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from metastat.data.target import Target
from tests.contract_cases import ContractData, case, items

MIL = {"params": {"hidden_dim": 16, "attention_dim": 8}, "epochs": 6, "min_epochs": 2,
       "patience": 3, "threads": 1, "seed": 0}  # fmt: skip


@cache
def _bags() -> tuple[list[np.ndarray], np.ndarray]:
    from metastat.mil.planted import BagDesign, bag_features, load_tiles, make_bags, split_tiles

    tiles = load_tiles()
    design = BagDesign(
        n_patients=48, slides_per_patient=1, n_tiles=(16, 32), witness_rate=(0.1, 0.2), seed=4
    )
    bags = make_bags(tiles, split_tiles(tiles, "spatial")[0], design, "contract")
    return bag_features(tiles, bags), bags.labels


def _mil_data(target: Target) -> ContractData:
    x, _ = _bags()
    n = 36
    return ContractData(x[:n], target.subset(np.arange(n)), x[n:], [str(i) for i in
                        range(len(x) - n)], items)  # fmt: skip


def _binary() -> ContractData:
    _, labels = _bags()
    return _mil_data(Target(label=labels.astype(int), classes=("0", "1")))


def _survival() -> ContractData:
    _, labels = _bags()
    time = np.random.default_rng(0).exponential(np.where(labels == 1, 12.0, 60.0))
    event = (np.arange(len(labels)) % 4 != 0).astype(int)  # 25 % censored
    return _mil_data(Target(time=time, event=event, horizon=24.0))


@case("mil:abmil")
def mil_abmil() -> tuple[Any, Any]:
    from metastat.mil.estimator import MILRiskModel

    return lambda: MILRiskModel("abmil", **MIL), _binary


@case("mil:abmil-survival")
def mil_abmil_survival() -> tuple[Any, Any]:
    from metastat.mil.estimator import MILRiskModel

    return lambda: MILRiskModel("abmil", survival_loss="cox", **MIL), _survival


@case("mil:abmil-nll", monotone=False)
def mil_abmil_nll() -> tuple[Any, Any]:
    """The default MIL survival head: discrete-time hazards over time bins (negative log
    likelihood); its probability is 1 - S(horizon) of its own curve."""
    from metastat.mil.estimator import MILRiskModel

    return lambda: MILRiskModel("abmil", survival_loss="nll", **MIL), _survival


@cache
def _nki() -> Any:
    from metastat.data.registry import load_dataset
    from metastat.fusion.modalities import from_cohort

    adata = load_dataset("breast_nki")
    return from_cohort(adata[:, :200].copy(), "dmfs", horizon="5y")


def _subset(x: Any, idx: np.ndarray) -> Any:
    return x.subset(idx)


def _fusion() -> ContractData:
    data = _nki()
    fit, new = data.subset(np.arange(110)), data.subset(np.arange(110, len(data)))
    target = Target.from_structured(fit.target, fit.horizon)
    return ContractData(fit, target, new, list(new.patient_ids), _subset)


@case("fusion:late")
def fusion_late() -> tuple[Any, Any]:
    from metastat.fusion.late import LateFusion

    return lambda: LateFusion(seed=0), _fusion


@case("fusion:concat")
def fusion_concat() -> tuple[Any, Any]:
    from metastat.fusion.intermediate import NeuralFusion

    return lambda: NeuralFusion("concat", epochs=60, patience=10, hidden=16, n_genes=100), _fusion


@case("fusion:gated")
def fusion_gated() -> tuple[Any, Any]:
    from metastat.fusion.intermediate import NeuralFusion

    return lambda: NeuralFusion("gated", epochs=30, patience=10, hidden=16, n_genes=100), _fusion


@case("fusion:kronecker")
def fusion_kronecker() -> tuple[Any, Any]:
    from metastat.fusion.intermediate import NeuralFusion

    return lambda: NeuralFusion("kronecker", epochs=30, patience=10, hidden=8, n_genes=100), _fusion


def _paired() -> ContractData:
    """Clinical + expression + tile-feature bags (synthetic: a format test for the bag path)."""
    from metastat.fusion.paired import make_paired_benchmark

    data = make_paired_benchmark(90, n_genes=24, n_programs=3, tile_dim=8, tiles=(4, 9)).data
    fit, new = data.subset(np.arange(70)), data.subset(np.arange(70, len(data)))
    target = Target.from_structured(fit.target, fit.horizon)
    return ContractData(fit, target, new, list(new.patient_ids), _subset)


@case("fusion:coattention")
def fusion_coattention() -> tuple[Any, Any]:
    from metastat.fusion.intermediate import NeuralFusion

    # max_tiles below the largest bags (4-9 tiles): the tile subsample is exercised, and a
    # patient's draw must not depend on the others scored (single sample == batch)
    return lambda: NeuralFusion(
        "coattention", epochs=20, patience=5, hidden=8, n_genes=24, max_tiles=6
    ), _paired
