"""API: submit slides (server path or upload) as background jobs, job status and outputs,
deep-zoom tiles for the viewer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from metastat.serve.state import Caller, Portal, PortalDep, caller

router = APIRouter(prefix="/api", tags=["slides"], dependencies=[Depends(caller)])
SlideId = Annotated[str, Path(pattern=r"^sl-[0-9a-f]{12}$")]
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


class SlidePathRequest(BaseModel):
    """A slide already on the server, under one of the configured slide roots."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(..., min_length=1, max_length=4096, description="relative to a slide root")
    model: str | None = Field(None, description="MIL checkpoint name (default: the first one)")


def _accepted(p: Portal, record: Any, model: str | None, who: str) -> dict[str, Any]:
    entry = p.slides.mil_model(model)
    job = p.slides.submit(record, entry, who)
    return job.public() | {"slide": record.public(), "status_url": f"/api/jobs/{job.job_id}"}


@router.post("/slides", status_code=202, summary="Score a slide on the server (background job)")
def submit_path(body: SlidePathRequest, who: Caller, p: PortalDep) -> dict[str, Any]:
    """Register a server-side slide (confined to the slide roots) and queue its job."""
    p.slides.mil_model(body.model)  # unknown model: 404 before touching the slide
    record = p.slides.register_path(body.path)
    return _accepted(p, record, body.model, who)


@router.post("/slides/upload", status_code=202, summary="Upload a slide and score it")
async def submit_upload(
    file: Annotated[UploadFile, File(description="a slide: .svs, .tif, .tiff, .ndpi, .scn, .bif")],
    who: Caller,
    p: PortalDep,
    model: Annotated[str | None, Form()] = None,
    md5: Annotated[str | None, Form(description="hex MD5 of the file (e.g. from GDC)")] = None,
    sha256: Annotated[str | None, Form(description="hex SHA-256 of the file")] = None,
) -> dict[str, Any]:
    """Store the upload under a pseudonym (its file name is not kept) and queue its job. With
    ``md5`` / ``sha256`` the stored bytes are checked against them (``integrity: verified``);
    a mismatch is refused (422) and nothing is kept."""
    p.slides.mil_model(model)
    expected = {a: v for a, v in {"md5": md5, "sha256": sha256}.items() if v}
    record = await run_in_threadpool(
        p.slides.register_upload, file.file, file.filename or "", expected
    )
    return _accepted(p, record, model, who)


@router.get("/slides", summary="Registered slides")
def slides(p: PortalDep) -> list[dict[str, Any]]:
    """Pseudonymised ids, sizes and µm/px of the slides this service knows."""
    return p.slides.slides()


@router.get("/slides/{slide_id}/dzi", summary="Deep-zoom descriptor (OpenSeadragon)")
def dzi(slide_id: SlideId, p: PortalDep) -> dict[str, Any]:
    """Inline DZI for OpenSeadragon (pyramid only; no label / macro image)."""
    return p.slides.dzi(slide_id)


@router.get(
    "/slides/{slide_id}/dz/{level}/{col}_{row}.jpeg",
    response_class=Response,
    summary="Deep-zoom tile",
)
def dz_tile(level: int, col: int, row: int, slide_id: SlideId, p: PortalDep) -> Response:
    """One JPEG tile of the slide pyramid."""
    data = p.slides.dz_tile(slide_id, level, col, row)
    cache = {"Cache-Control": "private, max-age=3600"}
    return Response(data, media_type="image/jpeg", headers=cache)


@router.get("/jobs", summary="All slide jobs")
def jobs(p: PortalDep) -> list[dict[str, Any]]:
    """Newest first."""
    return p.slides.jobs()


@router.get("/jobs/{job_id}", summary="Job status and result")
def job(job_id: JobId, p: PortalDep) -> dict[str, Any]:
    """queued / running / done / failed / interrupted, with times, the result or a clear error."""
    return p.slides.job(job_id).public()


@router.post("/jobs/{job_id}/resume", status_code=202, summary="Resume an interrupted job")
def resume(job_id: JobId, who: Caller, p: PortalDep) -> dict[str, Any]:
    """Queue an interrupted (or failed) job again; finished slide features are reused."""
    return p.slides.resume(job_id).public() | {"status_url": f"/api/jobs/{job_id}"}


@router.get("/jobs/{job_id}/overlay.png", response_class=FileResponse, summary="Heatmap overlay")
def overlay(job_id: JobId, p: PortalDep) -> FileResponse:
    """Transparent RGBA PNG spanning the whole slide (level 0)."""
    return FileResponse(p.slides.job_file(job_id, "overlay"), media_type="image/png")


@router.get("/jobs/{job_id}/tiles.geojson", response_class=FileResponse, summary="Tile scores")
def tiles_geojson(job_id: JobId, p: PortalDep) -> FileResponse:
    """Scored tiles as a QuPath-readable GeoJSON FeatureCollection (level-0 px)."""
    return FileResponse(p.slides.job_file(job_id, "geojson"), media_type="application/geo+json")


@router.get("/jobs/{job_id}/tiles/{index}.png", response_class=FileResponse, summary="Top tile")
def top_tile(index: int, job_id: JobId, p: PortalDep) -> FileResponse:
    """The ``index``-th highest-attention tile crop."""
    return FileResponse(p.slides.job_file(job_id, f"tile{index}"), media_type="image/png")
