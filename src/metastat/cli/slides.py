"""``metastat slides``: whole-slide images -> tissue masks, tile grids, tile-feature files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypedDict, cast

import typer

from metastat.errors import InputError

if TYPE_CHECKING:
    from metastat.slides.checksums import ChecksumMode
    from metastat.slides.coords import TileConfig
    from metastat.slides.pipeline import ProcessConfig
    from metastat.slides.tiling import TilingConfig
    from metastat.slides.tissue import TissueConfig

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

Source = Annotated[Path, typer.Argument(help="Folder of slides, manifest CSV/TSV, or a slide.")]
Out = Annotated[Path, typer.Option("--out", help="Output folder.")]
Mpp = Annotated[
    float | None,
    typer.Option(help="µm/px for slides whose metadata has none (manifest 'mpp' wins)."),
]
TileSizePx = Annotated[int, typer.Option(help="Tile side in pixels.")]
TargetMpp = Annotated[float, typer.Option(help="Tile resolution in µm/px.")]
OverlapUm = Annotated[float, typer.Option(help="Overlap of neighbouring tiles in µm.")]
MinTissue = Annotated[float, typer.Option(help="Keep tiles with this much tissue.")]
MaskMpp = Annotated[float, typer.Option(help="Tissue-mask resolution in µm/px (at most).")]
KeepLumens = Annotated[
    bool, typer.Option(help="Keep holes (lumens, vessels) in the tissue mask unfilled.")
]
Workers = Annotated[int, typer.Option(help="Worker processes (0: in this process).")]
Scheduler = Annotated[
    str | None, typer.Option(help="Dask scheduler address, e.g. tcp://HOST:8786.")
]
Pseudonymise = Annotated[
    bool, typer.Option(help="Name outputs by keyed hashes of slide ids (key in env).")
]
MaxUnreadable = Annotated[
    float, typer.Option(help="Fail a slide if more of its tiles are unreadable or garbage.")
]
Qc = Annotated[bool, typer.Option(help="Write QC PNGs (mask outline + tile grid).")]
SlideTimeout = Annotated[
    float | None,
    typer.Option(
        "--slide-timeout", min=1, help="Stop a slide after SECONDS and record it as failed."
    ),
]
Checksums = Annotated[
    str,
    typer.Option(
        help="Check each slide file against its md5/sha256 before decoding: auto (where known), "
        "off, or require (fail slides without one)."
    ),
]
ChecksumManifest = Annotated[
    Path | None,
    typer.Option(help="GDC download manifest, CSV/TSV or md5sum output with each slide's digest."),
]
Strict = Annotated[bool, typer.Option(help="Exit with 1 if any slide failed or was degraded.")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]


class _Geometry(TypedDict):
    tiling: TilingConfig
    tissue: TissueConfig


def _geometry(
    tile_size_px: int,
    target_mpp: float,
    overlap_um: float,
    min_tissue_fraction: float,
    mask_mpp: float,
    keep_lumens: bool,
) -> _Geometry:
    """The tiling and tissue settings shared by ``tile`` and ``process``."""
    from metastat.slides.tiling import TilingConfig
    from metastat.slides.tissue import TissueConfig

    tiling = TilingConfig(
        tile_size_px=tile_size_px,
        target_mpp=target_mpp,
        overlap_um=overlap_um,
        min_tissue_fraction=min_tissue_fraction,
    )
    return {"tiling": tiling, "tissue": TissueConfig(mask_mpp=mask_mpp, keep_lumens=keep_lumens)}


@app.command()
def process(
    source: Source,
    out: Out,
    mpp: Mpp = None,
    tile_size_px: TileSizePx = 224,
    target_mpp: TargetMpp = 0.5,
    overlap_um: OverlapUm = 0.0,
    min_tissue_fraction: MinTissue = 0.5,
    mask_mpp: MaskMpp = 8.0,
    keep_lumens: KeepLumens = False,
    encoder: Annotated[str, typer.Option(help="Tile encoder (see 'metastat slides encoders').")] = (
        "efficientnet_lite0"
    ),
    encoder_weights: Annotated[
        Path | None, typer.Option(help="Local weights file for the encoder (offline use).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: best).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 32,
    read_threads: Annotated[int, typer.Option(help="Tile-reading threads per slide.")] = 2,
    workers: Workers = 1,
    torch_threads: Annotated[
        int | None, typer.Option(help="Encoder threads per worker (fix it for bitwise reruns).")
    ] = None,
    scheduler: Scheduler = None,
    pseudonymise: Pseudonymise = False,
    max_unreadable_fraction: MaxUnreadable = 0.05,
    qc: Qc = True,
    stain: Annotated[
        str, typer.Option(help="Stain normalisation of every tile: none, macenko or reinhard.")
    ] = "none",
    stain_reference: Annotated[
        Path | None,
        typer.Option(help="Image (PNG, JPEG, TIFF) of well-stained tissue to normalise to."),
    ] = None,
    slide_timeout: SlideTimeout = None,
    checksums: Checksums = "auto",
    checksum_manifest: ChecksumManifest = None,
    strict: Strict = False,
    progress: Progress = True,
) -> None:
    """Tissue detection, tiling and tile embeddings for every slide; one .h5 per slide."""
    from metastat.slides.pipeline import ProcessConfig

    key = _pseudonym_key(pseudonymise)
    stain_json = _stain(stain, stain_reference)
    try:
        config = ProcessConfig(
            **_geometry(
                tile_size_px, target_mpp, overlap_um, min_tissue_fraction, mask_mpp, keep_lumens
            ),
            encoder=encoder,
            encoder_weights=str(encoder_weights) if encoder_weights else None,
            device=device,
            batch_size=batch_size,
            read_threads=read_threads,
            torch_threads=torch_threads,
            max_unreadable_fraction=max_unreadable_fraction,
            qc=qc,
            stain=stain_json,
            checksums=_checksum_mode(checksums),
        )
    except ValueError as exc:
        raise InputError(f"invalid option: {exc}") from exc
    from metastat.slides.encoder_registry import get_encoder_spec

    get_encoder_spec(encoder)  # fail fast on a misspelled encoder name
    _run(source, out, config, mpp, key, workers, scheduler, slide_timeout, strict, progress,
         checksum_manifest)  # fmt: skip
    typer.echo(
        f"features: {out / 'features'}  QC: {out / 'qc'}  summary: {out / 'run_summary.json'}"
    )


def _stain(stain: str, reference: Path | None) -> str | None:
    """The ``--stain`` normaliser fitted once on ``--stain-reference``, as JSON (None: off)."""
    from metastat.slides.stain import StainNormaliser, fit_stain_reference

    name = StainNormaliser(stain.lower()).name  # an unknown name fails with a suggestion
    if name == "none":
        if reference is not None:
            raise InputError(
                f"--stain-reference '{reference}' needs --stain macenko or --stain reinhard "
                "(the default is none): add --stain, or drop --stain-reference"
            )
        return None
    if reference is None:
        raise InputError(
            f"--stain {name} needs --stain-reference IMAGE: a PNG, JPEG or TIFF tile of "
            "well-stained tissue that every tile is normalised to"
        )
    return fit_stain_reference(name, reference).to_json()


def _checksum_mode(value: str) -> ChecksumMode:
    """``--checksums`` checked: auto, off or require."""
    mode = value.lower()
    if mode not in ("auto", "off", "require"):
        raise InputError(f"--checksums {value!r} is not one of: auto, off, require")
    return cast("ChecksumMode", mode)


def _pseudonym_key(pseudonymise: bool) -> str | None:
    from metastat.slides.runner import PSEUDONYM_ENV

    if not pseudonymise:
        return None
    key = os.environ.get(PSEUDONYM_ENV)
    if not key:
        raise InputError(
            f"--pseudonymise needs a secret key in the environment variable {PSEUDONYM_ENV}: "
            f"export {PSEUDONYM_ENV}=... (keep it to re-identify slides later), or drop "
            "--pseudonymise"
        )
    return key


def _run(
    source: Path,
    out: Path,
    config: ProcessConfig | TileConfig,
    mpp: float | None,
    key: str | None,
    workers: int,
    scheduler: str | None,
    slide_timeout: float | None,
    strict: bool,
    progress: bool,
    checksum_manifest: Path | None = None,
) -> None:
    """Discover slides, run the cohort, print the one-line summary and each bad slide."""
    from metastat.slides.runner import discover_slides, run_cohort

    jobs = discover_slides(
        source, mpp_fallback=mpp, pseudonym_key=key, checksum_manifest=checksum_manifest
    )
    s = run_cohort(
        jobs, out, config, workers=workers, scheduler=scheduler, progress=progress,
        slide_timeout=slide_timeout,
    )  # fmt: skip
    typer.echo(
        f"slides: {s.n_slides} | done {s.done} | degraded {s.degraded} | failed {s.failed} | "
        f"resumed (already finished) {s.resumed} | tiles {s.tiles} | {s.seconds:.1f} s "
        f"({s.tiles_per_s:.1f} tiles/s)"
    )
    for r in s.slides:
        if r["status"] != "done":
            typer.echo(f"  {r['status']} {r['slide_id']}: {r['message']}", err=True)
    if strict and (s.failed or s.degraded):
        raise typer.Exit(1)


@app.command()
def tile(
    source: Source,
    out: Out,
    mpp: Mpp = None,
    tile_size_px: TileSizePx = 224,
    target_mpp: TargetMpp = 0.5,
    overlap_um: OverlapUm = 0.0,
    min_tissue_fraction: MinTissue = 0.5,
    mask_mpp: MaskMpp = 8.0,
    keep_lumens: KeepLumens = False,
    verify: Annotated[
        bool, typer.Option(help="Read every kept tile and check it (off: coordinates only).")
    ] = True,
    workers: Workers = 1,
    scheduler: Scheduler = None,
    pseudonymise: Pseudonymise = False,
    max_unreadable_fraction: MaxUnreadable = 0.05,
    qc: Qc = True,
    slide_timeout: SlideTimeout = None,
    checksums: Checksums = "auto",
    checksum_manifest: ChecksumManifest = None,
    strict: Strict = False,
    progress: Progress = True,
) -> None:
    """Tile coordinates only (no encoder): CSV + tissue GeoJSON + QC PNG per slide."""
    from metastat.slides.coords import TileConfig

    key = _pseudonym_key(pseudonymise)
    try:
        config = TileConfig(
            **_geometry(
                tile_size_px, target_mpp, overlap_um, min_tissue_fraction, mask_mpp, keep_lumens
            ),
            verify=verify,
            max_unreadable_fraction=max_unreadable_fraction,
            qc=qc,
            checksums=_checksum_mode(checksums),
        )
    except ValueError as exc:
        raise InputError(f"invalid option: {exc}") from exc
    _run(source, out, config, mpp, key, workers, scheduler, slide_timeout, strict, progress,
         checksum_manifest)  # fmt: skip
    typer.echo(
        f"coordinates: {out / 'coords'}  tissue: {out / 'tissue'}  QC: {out / 'qc'}  "
        f"summary: {out / 'run_summary.json'}"
    )


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="A slide file.")],
    mpp: Annotated[float | None, typer.Option(help="µm/px override.")] = None,
) -> None:
    """Geometry, pyramid levels and µm/px of a slide (no vendor properties, no label)."""
    from metastat.slides.reader import open_slide

    with open_slide(slide, mpp_override=mpp) as s:
        meta = s.safe_metadata()
        typer.echo(f"slide: {slide.name}")
        for k, v in meta.items():
            typer.echo(f"  {k}: {v}")
        for i, (dims, ds) in enumerate(zip(s.level_dimensions, s.level_downsamples, strict=True)):
            typer.echo(f"  level {i}: {dims[0]}x{dims[1]} px, downsample {ds:.3f}")


@app.command()
def encoders() -> None:
    """List the registered tile encoders."""
    from metastat.slides.encoder_registry import get_encoder_spec, list_encoders

    for name in list_encoders():
        s = get_encoder_spec(name)
        access = " [gated: needs hub access]" if s.needs_access else ""
        typer.echo(f"{name:20s} dim {s.embedding_dim:5d}  {s.licence}  ({s.source}){access}")
    typer.echo("timm:<model>         any timm model, e.g. timm:resnet50.tv_in1k")


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output .tiff path.")],
    width_px: Annotated[int, typer.Option(help="Level-0 width.")] = 8192,
    height_px: Annotated[int, typer.Option(help="Level-0 height.")] = 6144,
    mpp: Annotated[float, typer.Option(help="µm/px written in the file.")] = 0.5,
    levels: Annotated[int, typer.Option(help="Pyramid levels.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a synthetic pyramidal tiled TIFF with tissue-like regions (tests, benchmarks)."""
    import time

    from metastat.progress import status
    from metastat.slides.synthetic import write_synthetic_slide

    t0 = time.perf_counter()
    status(f"writing a {width_px}x{height_px} px synthetic slide at {mpp} µm/px ({levels} levels)")
    p = write_synthetic_slide(
        out, size_px0=(width_px, height_px), mpp=mpp, levels=levels, seed=seed, show_progress=True
    )
    size_mb = p.stat().st_size / 2**20
    typer.echo(f"wrote {p} ({size_mb:.0f} MiB in {time.perf_counter() - t0:.1f} s)")
