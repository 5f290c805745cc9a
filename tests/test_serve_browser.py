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
from metastat.serve.demo import (  # noqa: E402
    build_demo,
    free_port,
    running_server,
    shared_demo_dir,
    start_server_process,
    stop_server_process,
)
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
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(shared_demo_dir(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: Path) -> Iterator[str]:
    base = tmp_path_factory.mktemp("portal")
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


def test_profile_warnings_are_shown_next_to_the_result(page: object, tmp_path: Path) -> None:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    x = expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol")).iloc[[3, 9]]
    x.iloc[0, :12] = np.nan  # a few empty cells: imputed, with a warning on this profile
    x.iloc[1] = (2.0 ** x.iloc[1]).round() * 50  # raw counts: another platform, refused
    csv = tmp_path / "warn.csv"
    x.to_csv(csv)
    pg = page
    pg.wait_for_selector("#profile-model option", state="attached")
    pg.set_input_files("#profile-file", str(csv))
    pg.click("#profile-submit")
    pg.wait_for_selector("#risk-warnings", timeout=30_000)
    assert "12 of the model's" in pg.inner_text("#risk-warnings")
    assert "95% interval" in pg.inner_text("#risk-interval")  # calibration-bootstrap interval
    assert pg.locator("#samples .warn-cell").count() == 2
    pg.click(f"#samples button:text('{x.index[1]}')")
    pg.wait_for_function("() => document.querySelector('#risk-group').textContent === 'not scored'")
    text = pg.inner_text("#risk-summary")
    assert "another platform" in text and "%" not in pg.inner_text("#risk-group")
    _keep(pg, "profile_warning.png")


def _overlay_alpha(server: str, url: str) -> np.ndarray:
    import httpx
    from PIL import Image

    png = httpx.get(server + url, headers={"Authorization": f"Bearer {TOKEN}"}).content
    return np.asarray(Image.open(io.BytesIO(png)))[..., 3]


def _pixel_masks(page: object, alpha: np.ndarray, shape: tuple[int, int]) -> tuple:
    """Screenshot pixels where the overlay is transparent (incl. outside the slide) and where it
    colours a tile, each shrunk by 4 px so edges and resampling do not count; the navigator
    (which shows the overlay too) is excluded."""
    from scipy.ndimage import binary_erosion

    box = page.evaluate(  # type: ignore[attr-defined]
        """() => { const it = portal.viewer.world.getItemAt(0), s = it.getContentSize();
        const a = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
        const b = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(s.x, s.y));
        const v = document.querySelector('#viewer').getBoundingClientRect();
        const n = portal.viewer.navigator.element.getBoundingClientRect();
        return [a.x, a.y, b.x, b.y, n.left - v.left, n.top - v.top, n.right - v.left,
                n.bottom - v.top]; }"""
    )
    ax, ay, bx, by, nx0, ny0, nx1, ny1 = box
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    inside = (xx >= ax) & (xx < bx) & (yy >= ay) & (yy < by)
    oy = ((yy - ay) / (by - ay) * alpha.shape[0]).astype(int).clip(0, alpha.shape[0] - 1)
    ox = ((xx - ax) / (bx - ax) * alpha.shape[1]).astype(int).clip(0, alpha.shape[1] - 1)
    a = np.where(inside, alpha[oy, ox], 0)
    nav = (xx >= nx0 - 2) & (xx < nx1 + 2) & (yy >= ny0 - 2) & (yy < ny1 + 2)
    clear = binary_erosion(a == 0, iterations=4) & ~nav
    tiles = binary_erosion(a > 0, iterations=4) & ~nav
    return clear, tiles, inside


def test_slide_viewer_heatmap_toggle(page: object, server: str) -> None:
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
    job = pg.evaluate("portal.job")
    alpha = _overlay_alpha(server, job["result"]["heatmap"]["overlay_url"])
    clear, tiles, inside = _pixel_masks(pg, alpha, on.shape[:2])
    assert clear.sum() > 2000 and tiles.sum() > 2000 and (~inside).sum() > 2000
    diff = np.abs(on - off).max(axis=2)
    # background and tissue without tiles keep their colours (no blue cast anywhere) ...
    assert diff[clear].mean() < 1.0, diff[clear].mean()
    assert np.abs(on[clear][:, 2] - off[clear][:, 2]).mean() < 1.0
    assert diff[~inside & clear].mean() < 1.0  # outside the slide (controls may fade: mean)
    # ... and scored tiles are visibly coloured
    assert diff[tiles].mean() > 10, diff[tiles].mean()
    assert "probability of" in pg.inner_text("#slide-summary")
    pg.uncheck("#heatmap-toggle")
    assert pg.evaluate("portal.overlay.getOpacity()") == 0


def test_slide_upload_checked_against_its_md5(page: object) -> None:
    """An upload with the md5 its sender has is verified; a wrong one is refused, named."""
    import hashlib

    pg = page
    pg.click("#nav-slides")
    pg.wait_for_selector("#slide-model option", state="attached")
    pg.set_input_files("#slide-file", str(SLIDE))
    pg.fill("#slide-digest", "0" * 32)
    pg.click("#slide-submit")
    pg.wait_for_selector("#slide-error:not([hidden])")
    assert "does not match the md5" in pg.inner_text("#slide-error")
    pg.fill("#slide-digest", "abc")
    pg.click("#slide-submit")
    shown = "() => document.querySelector('#slide-error').innerText.includes('32 hex')"
    pg.wait_for_function(shown)
    pg.fill("#slide-digest", hashlib.md5(SLIDE.read_bytes()).hexdigest())
    pg.click("#slide-submit")
    pg.wait_for_function(
        "() => document.querySelector('#job-status').innerText.includes('upload verified')"
    )
    assert pg.is_hidden("#slide-error")
    _keep(pg, "slide_upload_verified.png")


def test_results_page_shows_report_plots(page: object) -> None:
    pg = page
    pg.click("#nav-results")
    pg.wait_for_selector("#run-metrics", timeout=60_000)
    head = pg.inner_text("#run-metrics thead")
    assert "model: coxnet" in head and "comparator: logistic" in head
    assert "paired difference" in head
    auc = pg.inner_text("#run-metrics tr[data-metric='auc']")
    assert auc.count("\u2013") == 3  # model, comparator, difference: each with its CI
    logrank = pg.inner_text("#run-metrics tr[data-metric='logrank_p']")
    assert "no CI" in logrank and "\u2013" not in logrank.split("no CI")[1]
    assert "calibration slope" in pg.inner_text("#run-flags")
    pg.wait_for_function(
        "() => [...document.querySelectorAll('#run-figures img')].length >= 3 && "
        "[...document.querySelectorAll('#run-figures img')]"
        ".every(i => i.complete && i.naturalWidth)",
        timeout=60_000,
    )
    _keep(pg, "results_page.png")


def test_bad_token_shows_clear_error_until_fixed(browser: object, server: str) -> None:
    ctx = browser.new_context()  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.goto(server + "/")
    pg.fill("#token", "wrong")
    pg.dispatch_event("#token", "change")
    pg.wait_for_function(
        "() => document.querySelector('#profile-error').textContent.includes('invalid bearer')"
    )
    assert pg.is_visible("#profile-error")
    pg.fill("#token", TOKEN)
    pg.dispatch_event("#token", "change")
    pg.wait_for_selector("#profile-model option", state="attached")
    pg.wait_for_selector("#profile-error", state="hidden")
    ctx.close()


def test_narrow_screen_does_not_overflow(browser: object, server: str, tmp_path: Path) -> None:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    x = expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol")).iloc[[1, 2]]
    x.to_csv(tmp_path / "p.csv")
    ctx = browser.new_context(viewport={"width": 390, "height": 800})  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.goto(server + "/")
    pg.fill("#token", TOKEN)
    pg.dispatch_event("#token", "change")
    pg.wait_for_selector("#profile-model option", state="attached")
    pg.set_input_files("#profile-file", str(tmp_path / "p.csv"))
    pg.click("#profile-submit")
    pg.wait_for_selector("#km-plot", timeout=30_000)
    for tab in ("profile", "slides", "results"):
        pg.click(f"#nav-{tab}")
        pg.wait_for_timeout(300)
        width = pg.evaluate("document.documentElement.scrollWidth")
        widest = pg.evaluate(
            "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect()"
            ".right > 391).slice(0, 3).map(e => e.tagName + '#' + e.id + '.' + e.className)"
        )
        assert width <= 390, (tab, width, widest)
    ctx.close()


@pytest.mark.parametrize(
    ("path", "ready"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")]
)
def test_api_docs_render_offline(browser: object, server: str, path: str, ready: str) -> None:
    ctx = browser.new_context()  # type: ignore[attr-defined]
    pg = ctx.new_page()
    urls: list[str] = []
    pg.on("request", lambda r: urls.append(r.url))
    pg.goto(server + path)
    pg.wait_for_selector(ready, timeout=60_000)
    assert pg.locator(ready).count() > 5
    foreign = [u for u in urls if not u.startswith((server, "data:", "blob:"))]
    assert not foreign, foreign
    ctx.close()


def test_restarted_job_is_shown_and_resumes(browser: object, models: Path, tmp_path: Path):
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ("--slide-root", str(SLIDE.parent), "--encoder-input-px", "64", "--log-level", "warning")
    proc = start_server_process(models, tmp_path / "data", port, *args)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    try:
        pg = ctx.new_page()
        pg.goto(url + "/")
        pg.click("#nav-slides")
        pg.wait_for_selector("#slide-model option", state="attached")
        pg.fill("#slide-path", SLIDE.name)
        pg.click("#slide-submit")
        pg.wait_for_function("() => document.querySelector('#job-status').textContent"
                             ".includes('running')", timeout=60_000)  # fmt: skip
        stop_server_process(proc, kill=True)  # the service dies mid-job
        lost = "() => document.querySelector('#job-status').textContent.includes('retrying')"
        pg.wait_for_function(lost, timeout=30_000)
        assert "connection to the portal lost" in pg.inner_text("#slide-error")
        _keep(pg, "job_connection_lost.png")
        proc = start_server_process(models, tmp_path / "data", port, *args)
        pg.wait_for_selector("#jobs tr[data-status='interrupted'] button.resume", timeout=60_000)
        assert "interrupted" in pg.inner_text("#slide-error")
        assert "resume" in pg.inner_text("#jobs tr[data-status='interrupted']")
        _keep(pg, "job_restarted_interrupted.png")
        pg.click("#jobs tr[data-status='interrupted'] button.resume")
        pg.wait_for_selector("#heatmap-toggle[data-ready='1']", timeout=180_000)
        pg.wait_for_selector("#jobs tr[data-status='done']")
        assert "%" in pg.inner_text("#jobs tr[data-status='done'] .job-result")
        (job,) = httpx.get(url + "/api/jobs").json()
        assert job["status"] == "done" and job["finished"] > job["created"]
        _keep(pg, "job_resumed_done.png")
    finally:
        ctx.close()
        stop_server_process(proc, kill=True)
