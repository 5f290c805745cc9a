"""``metastat serve``: the risk portal (web service and browser UI)."""

from __future__ import annotations

from pathlib import Path

import typer

from metastat.errors import InputError

MiB = 2**20


def app(
    models: Path = typer.Option(..., "--models", help="Folder of saved models and runs."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    token: str | None = typer.Option(
        None, "--token", help="Bearer token (or env METASTAT_TOKEN); required beyond localhost."
    ),
    data_dir: Path = typer.Option(
        Path("metastat-serve"), "--data-dir", help="Jobs, uploads, reports and the audit log."
    ),
    slide_root: list[Path] | None = typer.Option(
        None, "--slide-root", help="Folder server-side slide paths must lie in; repeatable."
    ),
    max_upload_mb: float = typer.Option(
        24, "--max-upload-mb", help="Profile upload limit (fits 2,000 profiles of ~1,000 genes)."
    ),
    max_slide_mb: float = typer.Option(4096, "--max-slide-mb", help="Slide upload limit."),
    encoder_input_px: int | None = typer.Option(
        None, "--encoder-input-px", help="Resize tiles for the encoder (faster on CPU)."
    ),
    allowed_host: list[str] | None = typer.Option(
        None, "--allowed-host", help="Extra Host name to answer to (e.g. the proxy's); repeatable."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler for slide jobs (tcp://HOST:8786)."
    ),
    slide_workers: int = typer.Option(
        1, "--slide-workers", help="Slide jobs at once (in-process: 1; on Dask: more)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve the risk portal: API (OpenAPI docs at /docs) and browser UI at /."""
    import uvicorn
    from pydantic import ValidationError

    from metastat.serve import create_app
    from metastat.serve.server import uvicorn_config
    from metastat.serve.settings import ServeSettings, token_from_env
    from metastat.slides.pipeline import ProcessConfig

    try:
        settings = ServeSettings(
            models_dir=models,
            data_dir=data_dir,
            host=host,
            port=port,
            token=token_from_env(token),
            slide_roots=tuple(slide_root or ()),
            allowed_hosts=tuple(allowed_host or ()),
            scheduler=scheduler,
            slide_workers=slide_workers if scheduler else 1,
            max_profile_bytes=int(max_upload_mb * MiB),
            max_slide_bytes=int(max_slide_mb * MiB),
            slide_process=ProcessConfig(qc=False, encoder_input_px=encoder_input_px),
        )
    except ValidationError as exc:
        msgs = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise InputError(msgs) from exc
    settings.check_exposure()
    application = create_app(settings)
    auth = "bearer token required" if settings.token else "no token (loopback only)"
    typer.echo(f"metastat portal on http://{host}:{port}/ ({auth}); research use only", err=True)
    uvicorn.Server(uvicorn_config(application, host, port, log_level)).run()
