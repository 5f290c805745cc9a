"""API: health, model registry, expression scoring, training-cohort KM, evaluation runs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from metastat import __version__
from metastat.errors import InputError, UnknownNameError
from metastat.serve.audit import hashed_ids
from metastat.serve.cohort_km import training_km
from metastat.serve.errors import UnsupportedMediaError
from metastat.serve.meaning import CALIBRATION_SLOPE_OK, horizon_text, metric_rows, outcome_name
from metastat.serve.scoring import (
    PROFILE_CONTENT_TYPES,
    PROFILE_SUFFIXES,
    model_genes,
    parse_profile,
    score_profiles,
)
from metastat.serve.state import Caller, Portal, PortalDep, caller

public = APIRouter(prefix="/api", tags=["service"])
router = APIRouter(prefix="/api", dependencies=[Depends(caller)])
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
NO_STORE = {"Cache-Control": "no-store"}

SCORE_BODY = {
    "requestBody": {
        "required": True,
        "description": "A multipart upload (field `file`: .csv / .tsv / .txt / .json), a JSON "
        'body {"profiles": [{"sample_id": "S1", "expression": {"GENE": value}}]}, or a text/csv '
        "body. Rows = samples (first column = sample id), columns = gene symbols.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/json": {"schema": {"type": "object"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@public.get("/health", summary="Liveness (no token needed)")
def health(p: PortalDep) -> dict[str, Any]:
    """Service status; no token required and no model details."""
    return {
        "status": "ok",
        "metastat": __version__,
        "models": len(p.registry.models),
        "auth": p.settings.token is not None,
    }


@router.get("/models", tags=["models"], summary="Model registry")
def models(p: PortalDep) -> dict[str, Any]:
    """Every loaded model (name, version, modality, manifest summary) and folders skipped."""
    return {
        "models": [e.describe() for e in p.registry.models.values()],
        "runs": sorted(p.registry.runs),
        "problems": p.registry.problems,
    }


@router.get("/models/{name}", tags=["models"], summary="One model and its manifest")
def model(name: str, p: PortalDep) -> dict[str, Any]:
    """A model's description and full manifest (gene list included)."""
    entry = p.registry.get(name)
    return entry.describe() | {"manifest": entry.manifest}


@router.get("/models/{name}/km", tags=["models"], summary="Training-cohort Kaplan-Meier")
def km(name: str, p: PortalDep) -> dict[str, Any]:
    """KM curves of the model's training cohort by its low / high risk groups."""
    entry = p.registry.get(name, "expression")
    return p.cached(f"km:{name}", lambda: training_km(entry.model, entry.manifest, p.registry.runs))


async def _profile_bytes(request: Request) -> tuple[bytes, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InputError('the multipart upload needs one file in the field "file"')
        suffix = Path(upload.filename or "").suffix.lower()
        if suffix not in PROFILE_SUFFIXES:
            raise UnsupportedMediaError(
                f"file type {suffix or '(none)'!r} not accepted; upload "
                f"{', '.join(PROFILE_SUFFIXES)}"
            )
        part = (upload.content_type or "").split(";")[0].strip().lower()
        if part and part not in PROFILE_CONTENT_TYPES:
            raise UnsupportedMediaError(f"content type {part!r} not accepted for a profile")
        return await upload.read(), suffix
    if ctype == "application/json":
        return await request.body(), ".json"
    if ctype in ("text/csv", "text/tab-separated-values"):
        return await request.body(), ".csv" if ctype == "text/csv" else ".tsv"
    raise UnsupportedMediaError(
        f"content type {ctype or '(none)'!r} not accepted; send multipart/form-data, "
        "application/json or text/csv"
    )


@router.post(
    "/models/{name}/score", tags=["models"], summary="Score expression profiles",
    openapi_extra=SCORE_BODY,
)  # fmt: skip
async def score(name: str, request: Request, who: Caller, p: PortalDep) -> JSONResponse:
    """Risk score, probability (with interval when the model has one), risk group, percentile,
    top genes and per-profile warnings."""
    entry = p.registry.get(name, "expression")
    data, suffix = await _profile_bytes(request)
    genes = p.cached(f"genes:{name}", lambda: model_genes(entry.model))
    result = await run_in_threadpool(_score, entry, data, suffix, genes, p)
    preds = result["predictions"]
    p.audit.write(
        "score", model=name, version=entry.version, token_id=who,
        client=request.client.host if request.client else None, n=len(preds),
        samples=hashed_ids([r["sample_id"] for r in preds], p.salt),
        risk_groups=[r["risk_group"] for r in preds], genes_imputed=result["genes_imputed"],
    )  # fmt: skip
    m = entry.manifest
    body = {
        "model": name,
        "version": entry.version,
        "outcome": m.get("outcome"),
        "task": m.get("task"),
        "horizon": m.get("horizon"),
        "time_unit": m.get("time_unit"),
        "training_cohort": m.get("training_cohort"),
        **result,
    }
    return JSONResponse(body, headers=NO_STORE)


def _score(entry: Any, data: bytes, suffix: str, genes: list[str], p: Portal) -> dict[str, Any]:
    profiles = parse_profile(data, suffix, genes, p.settings.limits)
    return score_profiles(entry.model, entry.manifest, profiles, top=p.settings.top_genes)


# -- evaluation runs (results page) -------------------------------------------------------------
def _figures(p: Portal, name: str) -> list[tuple[str, bytes]]:
    from metastat.report.html import figures_of

    def render() -> list[tuple[str, bytes]]:
        out = []
        for title, fig in figures_of(p.registry.run(name)):
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            out.append((title, buf.getvalue()))
        return out

    return p.cached(f"figs:{name}", render)


@router.get("/runs", tags=["results"], summary="Evaluation runs")
def runs(p: PortalDep) -> list[dict[str, Any]]:
    """Every evaluation run folder in the models directory."""
    out = []
    for name, folder in sorted(p.registry.runs.items()):
        meta = json.loads((folder / "run.json").read_text())
        out.append({"name": name, **{k: meta.get(k) for k in ("kind", "outcome", "model")}})
    return out


@router.get("/runs/{name}", tags=["results"], summary="One run: metrics and figures")
def run(name: str, p: PortalDep) -> dict[str, Any]:
    """Metrics, run metadata and figure URLs."""
    folder = p.registry.run(name)
    figs = _figures(p, name)
    meta = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    return {
        "name": name,
        "run": meta,
        "metrics": metrics,
        "model": meta.get("model"),
        "comparator": meta.get("baseline"),
        "outcome_name": outcome_name(meta.get("outcome")),
        "horizon_text": horizon_text(meta.get("horizon"), meta.get("time_unit")),
        "calibration_slope_range": list(CALIBRATION_SLOPE_OK),
        "table": metric_rows(metrics),
        "figures": [
            {"title": t, "url": f"/api/runs/{name}/figures/{i}.png"}
            for i, (t, _) in enumerate(figs)
        ],
        "report_url": f"/api/runs/{name}/report.html",
    }


@router.get("/runs/{name}/figures/{index}.png", tags=["results"], response_class=Response)
def run_figure(name: str, index: int, p: PortalDep) -> Response:
    """One report figure as PNG."""
    figs = _figures(p, name)
    if not 0 <= index < len(figs):
        raise UnknownNameError(f"run {name!r} has {len(figs)} figures; no figure {index}")
    return Response(figs[index][1], media_type="image/png")


@router.get("/runs/{name}/report.html", tags=["results"], response_class=HTMLResponse)
def run_report(name: str, p: PortalDep) -> HTMLResponse:
    """The run's full HTML report (rendered once, then cached)."""
    from metastat.report.html import write_report

    folder = p.registry.run(name)
    out = p.settings.data_dir / "reports" / f"{name}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    p.cached(f"report:{name}", lambda: write_report(folder, out))
    return HTMLResponse(out.read_text(encoding="utf-8"))
