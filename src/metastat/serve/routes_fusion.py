"""API: fused predictions for patients with any subset of modalities.

Fusion models are the sub-folders of the models directory saved by ``metastat fusion fit``
(``manifest.json`` with a ``metastat.fusion.*`` format, recorded by
:mod:`metastat.serve.registry`); they are loaded on first use. A patient
sends what they have: clinical variables, an expression profile, radiomics (any registered table
modality, as ``{column: value}``) and / or ``slide_job``, a finished slide job of this portal
whose tile features become the histology bag. Each prediction names the modalities it used,
which of them were generated (expression from the slide when the model has a generator) and
what was sent but not used. Research use only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from metastat.errors import InputError, MetastatError, UnknownNameError, did_you_mean
from metastat.serve.audit import hashed_ids
from metastat.serve.state import Caller, Portal, PortalDep, caller

router = APIRouter(prefix="/api/fusion", tags=["fusion"], dependencies=[Depends(caller)])
NOTE = "Research use only: not for clinical decisions."


class Patient(BaseModel):
    """One patient: an id, optionally a slide job, and one object per table modality it has
    (``clinical``, ``expression``, ``radiology`` ...: ``{column: value}``)."""

    model_config = ConfigDict(extra="allow")

    patient_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    slide_job: str | None = None


class FusionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patients: list[Patient] = Field(min_length=1)


def _scan(p: Portal) -> dict[str, Any]:
    from metastat.fusion.persist import load_fusion

    found: dict[str, Any] = {"models": {}, "problems": {}}
    for name, folder in sorted(p.registry.fusion.items()):
        try:
            found["models"][name] = (*load_fusion(folder), folder)
        except (MetastatError, OSError, ValueError, KeyError) as exc:
            found["problems"][name] = str(exc)
        except ModuleNotFoundError as exc:  # a neural fusion model without torch installed
            found["problems"][name] = f"needs the package {exc.name!r}"
    return found


def _models(p: Portal) -> dict[str, Any]:
    return p.cached("fusion-models", lambda: _scan(p))


def _get(p: Portal, name: str) -> tuple[Any, dict[str, Any], Path]:
    models = _models(p)["models"]
    if name not in models:
        raise UnknownNameError(
            f"unknown fusion model {name!r}; available: {sorted(models)}."
            f"{did_you_mean(name, list(models))}"
        )
    return models[name]


def _describe(name: str, model: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    from metastat.fusion.predict import model_modalities

    keys = ("outcome", "kind", "horizon", "training_cohort", "n_train", "seed")
    return {
        "name": name,
        "format": manifest.get("format"),
        "modalities": model_modalities(model),
        "generator": bool(manifest.get("generator")),
        **{k: manifest.get(k) for k in keys},
    }


@router.get("/models", summary="Fusion models")
def fusion_models(p: PortalDep) -> dict[str, Any]:
    """Every fusion model (its modalities, outcome, generator) and folders that failed to load."""
    found = _models(p)
    return {
        "models": [_describe(n, m, mf) for n, (m, mf, _) in found["models"].items()],
        "problems": found["problems"],
    }


def _bags(
    p: Portal, name: str, model: Any, manifest: dict[str, Any], patients: list[Patient]
) -> dict[str, Any]:
    """Histology bags of the patients' finished slide jobs, from the portal's feature store."""
    from metastat.fusion.predict import bag_width
    from metastat.slides.featurestore import HDF5Store

    store, width = HDF5Store(p.slides.out / "features"), bag_width(model, "histology")
    bags = {}
    for pt in (pt for pt in patients if pt.slide_job is not None):
        job = p.slides.job(str(pt.slide_job))
        at = f"patient {pt.patient_id}: slide job {job.job_id!r}"
        if job.status == "failed":
            raise InputError(
                f"{at} failed ({job.error}); resume it (POST /api/jobs/{job.job_id}/resume) or "
                "submit another slide."
            )
        if job.status != "done":
            then = "resume it" if job.status == "interrupted" else "wait until it is done"
            raise InputError(f"{at} is {job.status}; {then} (GET /api/jobs/{job.job_id}).")
        if not store.is_complete(job.slide_id):
            raise InputError(
                f"{at}: its features are missing from the portal's feature store; submit the "
                "slide again (POST /api/slides)."
            )
        bag = store.read(job.slide_id)
        trained = manifest.get("histology_encoder")
        if trained and bag.encoder and bag.encoder != trained:
            raise InputError(
                f"{at} was embedded with encoder {bag.encoder!r} but fusion model {name!r} was "
                f"trained on {trained!r} histology features; use a fusion model trained on this "
                "portal's slide encoder."
            )
        if width is not None and bag.features.shape[1] != width:
            raise InputError(
                f"{at} has {bag.features.shape[1]}-d features ({bag.encoder}) but fusion model "
                f"{name!r} was trained on {width}-d histology features; use a fusion model "
                "trained on this portal's slide encoder."
            )
        bags[pt.patient_id] = bag.features
    return {"histology": bags} if bags else {}


def _predict(p: Portal, name: str, req: FusionRequest) -> dict[str, Any]:
    from metastat.fusion.predict import model_modalities, predict_new, records_to_set

    model, manifest, folder = _get(p, name)
    if len(req.patients) > p.settings.max_samples:
        raise InputError(f"at most {p.settings.max_samples} patients per request.")
    records = [{"patient_id": pt.patient_id, **(pt.model_extra or {})} for pt in req.patients]
    bags = _bags(p, name, model, manifest, req.patients)
    data = records_to_set(records, model=model, manifest=manifest, bags=bags)
    frame = predict_new(model, manifest, folder, data)
    uses = set(model_modalities(model))
    given = {m: data.has(m) for m in data.present}
    out = []
    for i, (pid, r) in enumerate(frame.iterrows()):
        sent = [m for m, has in given.items() if has[i] and not data.synthetic[m].iat[i]]  # type: ignore[index]
        out.append(
            {
                "patient_id": str(pid),
                "risk": float(r["risk"]),
                "probability": float(r["prob"]) if r["prob"] == r["prob"] else None,
                "risk_group": r["risk_group"],
                "modalities_used": [m for m in str(r["modalities"]).split("+") if m],
                "generated": [m for m in str(r["generated"]).split("+") if m],
                "not_used": sorted(set(sent) - uses),
            }
        )
    return {
        "model": _describe(name, model, manifest),
        "predictions": out,
        "note": NOTE,
    }


@router.post("/{name}/predict", summary="Fused risk from any subset of modalities")
async def fusion_predict(
    name: str, body: FusionRequest, request: Request, who: Caller, p: PortalDep
) -> dict[str, Any]:
    """Risk, probability at the horizon and risk group per patient, naming the modalities used
    and whether any was generated."""
    result = await run_in_threadpool(_predict, p, name, body)
    preds = result["predictions"]
    p.audit.write(
        "fusion_predict", model=name, token_id=who,
        client=request.client.host if request.client else None, n=len(preds),
        samples=hashed_ids([r["patient_id"] for r in preds], p.salt),
        modalities=[r["modalities_used"] for r in preds], generated=[r["generated"] for r in preds],
    )  # fmt: skip
    return result
