"""Config validation, bad input (empty / NaN / wrong-dim bags, patients without slides, encoder
mismatch), checkpoint round trip, and the two real TCGA bags through predict and heatmap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metastat.errors import InputError, ModelError
from metastat.mil.bags import ArrayBags, check_features, read_manifest
from metastat.mil.checkpoint import load_checkpoint, save_checkpoint
from metastat.mil.config import load_config
from metastat.mil.heatmap import slide_heatmap
from metastat.mil.infer import Head, outputs, predict_logits
from metastat.mil.models import ModelSpec, build_model, resolve_params
from metastat.slides.store import load_bag

DATA = Path(__file__).parent / "data"
REAL_BAGS = [
    DATA / "mil" / "TCGA-AD-6964-01Z-00-DX1" / "features.h5",
    DATA / "features" / "TCGA-3X-AAVA-01Z-00-DX1" / "features.h5",
]


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    p = tmp_path / "cfg.toml"
    p.write_text('model = "abmil"\nlearning_rate = 0.1\n[data]\nlabel = "ln"\n')
    with pytest.raises(InputError, match="learning_rate"):
        load_config(p)
    p.write_text('model = "clam_sb"\nseeds = [1, 2]\n[data]\nlabel = "ln"\n')
    cfg = load_config(p, epochs=3)
    assert cfg.model == "clam_sb" and cfg.seeds == [1, 2] and cfg.epochs == 3
    assert cfg.data.label == "ln"
    with pytest.raises(InputError, match="model"):
        load_config(None, model="clam")


def test_bad_bags_name_the_slide() -> None:
    with pytest.raises(InputError, match=r"'s1'.*empty"):
        check_features(np.zeros((0, 8)), "s1")
    x = np.ones((5, 8))
    x[3, 2] = np.nan
    with pytest.raises(InputError, match=r"'s2'.*1 of 5 tiles have NaN"):
        ArrayBags(["s2"], [x]).features(0)
    with pytest.raises(ModelError, match=r"'s3'.*8-d.*expects 16-d"):
        check_features(np.ones((4, 8)), "s3", dim=16)


def _manifest(tmp_path: Path, rows: list[dict]) -> Path:
    p = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_patient_without_slides_and_missing_files(tmp_path: Path) -> None:
    from metastat.mil.cohort import load_cohort

    m = _manifest(
        tmp_path,
        [
            {"slide_id": "A1", "patient_id": "A", "path": str(REAL_BAGS[0])},
            {"slide_id": "B1", "patient_id": "B", "path": str(REAL_BAGS[1])},
        ],
    )
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"patient_id": ["A", "B", "C"], "label": [1, 0, 1]}).to_csv(outcomes)
    cfg = load_config(None, manifest=m)
    with pytest.raises(InputError, match=r"\['C'\].*no slides"):
        load_cohort(cfg, outcomes)
    bad = _manifest(tmp_path, [{"slide_id": "Z9", "patient_id": "Z", "path": "nope.h5"}])
    with pytest.raises(InputError, match="Z9"):
        read_manifest(bad)


def test_manifest_paths_resolve_relative_to_the_manifest_or_features(tmp_path: Path) -> None:
    """As documented: relative paths from the manifest's folder (also with --features pointing
    at the bag folder); a missing bag's error lists every path tried."""
    import shutil

    cohort = tmp_path / "cohort"
    (cohort / "features").mkdir(parents=True)
    shutil.copy(REAL_BAGS[0], cohort / "features" / "A1.h5")
    m = _manifest(cohort, [{"slide_id": "A1", "patient_id": "A", "path": "features/A1.h5"}])
    for feats in (None, cohort / "features", cohort):
        got = read_manifest(m, feats)
        assert Path(got.loc[0, "path"]).resolve() == (cohort / "features" / "A1.h5").resolve()
    no_path = _manifest(cohort, [{"slide_id": "A1", "patient_id": "A"}])
    assert Path(read_manifest(no_path, cohort / "features").loc[0, "path"]).is_file()
    gone = _manifest(cohort, [{"slide_id": "B1", "patient_id": "B", "path": "features/B1.h5"}])
    with pytest.raises(InputError) as err:
        read_manifest(gone, cohort / "features")
    msg = str(err.value)
    assert "B1" in msg and str(cohort / "features" / "B1.h5") in msg
    assert str(cohort / "features" / "features" / "B1.h5") in msg


def _checkpoint(tmp_path: Path, dim: int, encoder: str | None, name: str = "abmil") -> Path:
    import torch

    torch.manual_seed(0)
    params = resolve_params(name, {"hidden_dim": 32, "attention_dim": 16})
    spec = ModelSpec(in_dim=dim, n_out=2, params=params)
    head = Head(
        "binary", ["0", "1"], calibration={"method": "platt", "intercept": 0.1, "slope": 2.0}
    )
    return save_checkpoint(
        tmp_path / "ck",
        name=name,
        model=build_model(name, spec).eval(),
        spec=spec,
        head=head,
        encoder=encoder,
    )


def _legacy(ck: Path) -> Path:
    """Rewrite a checkpoint folder in the earlier layout (mil.json + model.safetensors)."""
    from safetensors.torch import save_file

    loaded = load_checkpoint(ck)
    meta = {k: v for k, v in loaded.meta.items() if k != "sha256"} | {"format": "metastat-mil/1"}
    meta["head"] = loaded.head.to_dict()
    for f in ck.iterdir():
        f.unlink()
    save_file(
        {k: v.contiguous() for k, v in loaded.model.state_dict().items()},
        str(ck / "model.safetensors"),
    )
    (ck / "mil.json").write_text(json.dumps(meta))
    return ck


def test_checkpoint_round_trip_is_safetensors(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, 512, "conch", name="transmil")
    files = ["arrays.safetensors", "manifest.json", "weights.safetensors"]
    assert sorted(p.name for p in path.iterdir()) == files
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["encoder"] == "conch" and manifest["format"] == "metastat.mil.model/1"
    ck = load_checkpoint(path)
    bag = load_bag(REAL_BAGS[0]).features
    p1 = outputs(predict_logits(ck.model, [bag]), ck.head)
    p2 = outputs(predict_logits(load_checkpoint(path).model, [bag]), ck.head)
    assert p1.equals(p2) and 0 <= p1["prob"].iloc[0] <= 1
    with pytest.raises(ModelError, match=r"'slideX'.*'efficientnet_lite0'.*'conch'"):
        ck.check_bag("slideX", 512, "efficientnet_lite0", "x.h5")
    with pytest.raises(ModelError, match="not a metastat MIL checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("bag_path", REAL_BAGS, ids=lambda p: p.parent.name)
def test_real_tcga_bags_predict_and_heatmap(tmp_path: Path, bag_path: Path) -> None:
    ck = load_checkpoint(_checkpoint(tmp_path, 512, None))
    bag = load_bag(bag_path)
    res = slide_heatmap(
        ck,
        slide_id=bag.slide_id,
        features=bag.features,
        coords=bag.coords_px0,
        tile_size_px0=bag.tile_size_px0,
        out_dir=tmp_path / "hm",
        method="attention_x_grad",
        k=4,
    )
    assert res.png.stat().st_size > 1000 and 0 <= res.prob <= 1
    gj = json.loads(res.geojson.read_text())
    assert len(gj["features"]) == bag.n_tiles
    tiles = pd.read_csv(res.tiles_csv)
    assert (tiles["selected"] == "top").sum() == 4 and tiles["rank"].iloc[0] == 1
    with pytest.raises(ModelError, match="expects 1280-d"):
        slide_heatmap(
            load_checkpoint(_checkpoint(tmp_path / "b", 1280, None)),
            slide_id=bag.slide_id,
            features=bag.features,
            coords=bag.coords_px0,
            tile_size_px0=None,
            out_dir=tmp_path / "hm2",
            where=str(bag_path),
        )


def test_platt_calibration_stays_finite_on_separable_validation() -> None:
    from metastat.mil.infer import fit_calibration

    lv = np.c_[np.zeros(10), np.r_[np.linspace(-8, -2, 5), np.linspace(2, 8, 5)]]
    cal = fit_calibration(Head("binary"), lv, np.r_[np.zeros(5), np.ones(5)], lv, None, None)
    assert cal["platt"] is not None and 0 < cal["platt"][1] < 5
    p = outputs(lv, Head("binary", calibration=cal))["prob"]
    assert p.between(0.01, 0.99).all() and p.is_monotonic_increasing


def test_checkpoint_from_before_the_registry_loads(tmp_path: Path) -> None:
    """Old checkpoints stored flat hyper-parameters (clam_k, ...): they still load."""
    ck = _legacy(_checkpoint(tmp_path, 8, None, name="clam_sb"))
    meta = json.loads((ck / "mil.json").read_text())
    meta["spec"] = {"in_dim": 8, "n_out": 2, "hidden_dim": 32, "attention_dim": 16,
                    "dropout": 0.25, "n_heads": 4, "n_layers": 2, "clam_k": 8,
                    "clam_subtyping": False}  # fmt: skip
    (ck / "mil.json").write_text(json.dumps(meta))
    loaded = load_checkpoint(ck)
    assert loaded.spec.params["k"] == 8 and loaded.spec.params["hidden_dim"] == 32


def test_train_checkpoint_and_estimator_bundle_load_alike(tmp_path: Path) -> None:
    """A `mil train` folder of an earlier version (mil.json) loads as a MILRiskModel, with the
    same probabilities as the bundle; an estimator bundle loads through load_checkpoint (so
    `mil predict` / `mil heatmap` take either)."""
    from metastat.data.target import Target
    from metastat.mil.estimator import MILRiskModel

    bag = load_bag(REAL_BAGS[0]).features
    new = load_checkpoint(_checkpoint(tmp_path, 512, "efficientnet_lite0"))
    ref = outputs(predict_logits(new.model, [bag]), new.head)
    old = load_checkpoint(_legacy(new.path))  # type: ignore[arg-type]
    est = MILRiskModel.load(old.path)  # type: ignore[arg-type]
    assert est.kind == "binary" and est.predict_probability([bag])[0] == ref["prob"].iloc[0]
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(int(rng.integers(5, 12)), 8)).astype(np.float32) for _ in range(24)]
    label = np.arange(24) % 2
    for b, y in zip(bags, label, strict=True):
        b[:2] += 2.0 * y  # a planted signal in two tiles
    fitted = MILRiskModel("abmil", params={"hidden_dim": 8, "attention_dim": 4}, epochs=3,
                          threads=1).fit(bags, Target(label=label, classes=("0", "1")))  # fmt: skip
    ck = load_checkpoint(fitted.save(tmp_path / "bundle", info={"note": "x"}))
    assert ck.meta["note"] == "x" and ck.meta["format"] == "metastat.mil.model/1"
    np.testing.assert_array_equal(
        outputs(predict_logits(ck.model, bags), ck.head)["risk"], fitted.predict_risk(bags)
    )
    with pytest.raises(ModelError, match="expects 8-d"):
        fitted.predict_risk([bag])
