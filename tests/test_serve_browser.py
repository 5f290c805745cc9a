"""End-to-end tests in a real headless browser (Debian chromium driven by Python playwright).

Upload a profile and see the risk; open a slide and toggle the attention heatmap; open the
cohort results. Screenshots are kept in ``test-artifacts/serve/`` (ignored by git) and, when
``METASTAT_ARTIFACTS`` is set, copied there too.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")

CHROMIUM = Path(os.environ.get("METASTAT_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from metastat.serve import ServeSettings, create_app  # noqa: E402
from metastat.serve.demo import build_demo, running_server, shared_demo_dir  # noqa: E402
from metastat.slides.pipeline import ProcessConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT / "tests" / "data" / "slides" / "CMU-1-Small-Region.svs"
ARTIFACTS = ROOT / "test-artifacts" / "serve"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token"


def _keep(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    extra = os.environ.get("METASTAT_ARTIFACTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / name)
    return path


def _viewer_pixels(page: object) -> np.ndarray:
    from PIL import Image

    png = page.locator("#viewer").screenshot()  # type: ignore[attr-defined]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("portal")
    models = build_demo(shared_demo_dir(tmp_path_factory.getbasetemp()))
    settings = ServeSettings(
        models_dir=models,
        data_dir=base / "data",
        token=TOKEN,
        slide_roots=(SLIDE.parent,),
        slide_process=ProcessConfig(qc=False, encoder_input_px=64, torch_threads=1),
    )
    with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: object, server: str) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server + "/")
    pg.fill("#token", TOKEN)
    pg.dispatch_event("#token", "change")
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_profile_upload_shows_risk(page: object, tmp_path: Path) -> None:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    x = expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol")).iloc[[5, 7]]
    csv = tmp_path / "profile.csv"
    x.to_csv(csv)
    pg = page
    pg.locator("#ruo-banner").wait_for()
    assert "Research use only" in pg.inner_text("#ruo-banner")
    pg.wait_for_selector("#profile-model option", state="attached")
    pg.set_input_files("#profile-file", str(csv))
    pg.click("#profile-submit")
    pg.wait_for_selector("#risk-group", timeout=30_000)
    assert pg.inner_text("#risk-group").strip() in ("high risk", "low risk")
    assert "%" in pg.inner_text("#risk-probability")
    pg.wait_for_selector("#km-plot path[data-group='high']", timeout=30_000)
    assert pg.locator("#top-genes tbody tr").count() == 10
    assert pg.locator("#samples tbody tr").count() == 2
    _keep(pg, "profile_result.png")


def test_slide_viewer_heatmap_toggle(page: object) -> None:
    pg = page
    pg.click("#nav-slides")
    pg.wait_for_selector("#slide-model option", state="attached")
    pg.fill("#slide-path", SLIDE.name)
    pg.click("#slide-submit")
    pg.wait_for_selector("#heatmap-toggle[data-ready='1']", timeout=120_000)
    assert pg.locator("#top-tiles img").count() == 8
    pg.wait_for_function("() => portal.viewer.world.getItemAt(0).getFullyLoaded()", timeout=30_000)
    assert pg.evaluate("portal.viewer.world.getItemCount()") == 2
    assert pg.evaluate("portal.overlay.getOpacity()") == 0
    _keep(pg, "slide_viewer_heatmap_off.png")
    off = _viewer_pixels(pg)
    pg.check("#heatmap-toggle")
    assert pg.evaluate("portal.overlay.getOpacity()") == 1
    pg.wait_for_function("() => portal.overlay.getFullyLoaded()", timeout=30_000)
    pg.wait_for_timeout(500)
    assert pg.is_visible("#heatmap-legend")
    _keep(pg, "slide_viewer_heatmap_on.png")
    on = _viewer_pixels(pg)
    # the overlay visibly recolours the tissue: blue/red tiles over pink H&E
    assert np.abs(on - off).mean() > 5, np.abs(on - off).mean()
    pg.uncheck("#heatmap-toggle")
    assert pg.evaluate("portal.overlay.getOpacity()") == 0


def test_results_page_shows_report_plots(page: object) -> None:
    pg = page
    pg.click("#nav-results")
    pg.wait_for_selector("#run-metrics", timeout=60_000)
    pg.wait_for_function(
        "() => [...document.querySelectorAll('#run-figures img')].length >= 3 && "
        "[...document.querySelectorAll('#run-figures img')]"
        ".every(i => i.complete && i.naturalWidth)",
        timeout=60_000,
    )
    _keep(pg, "results_page.png")


def test_bad_token_shows_clear_error(browser: object, server: str) -> None:
    ctx = browser.new_context()  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.goto(server + "/")
    pg.fill("#token", "wrong")
    pg.dispatch_event("#token", "change")
    pg.wait_for_function(
        "() => document.querySelector('#profile-error').textContent.includes('invalid bearer')"
    )
    assert pg.is_visible("#profile-error")
    ctx.close()
