/* metastat risk portal UI: profile scoring, slide viewer with heatmap, cohort results. */
"use strict";

const $ = (sel) => document.querySelector(sel);
const portal = { viewer: null, overlay: null, job: null, models: [] };
window.portal = portal;

function authHeaders() {
  const t = sessionStorage.getItem("metastat-token");
  return t ? { Authorization: `Bearer ${t}` } : {};
}

async function api(path, opts = {}) {
  let r;
  try {
    r = await fetch(path, { ...opts, headers: { ...(opts.headers || {}), ...authHeaders() } });
  } catch (e) {
    const err = new Error("connection to the portal lost (is the service running?)");
    err.lost = true;
    throw err;
  }
  const ct = r.headers.get("content-type") || "";
  const body = ct.includes("json") ? await r.json() : await r.blob();
  if (!r.ok) {
    const err = new Error((body && body.error) || `${r.status} ${r.statusText}`);
    err.status = r.status;
    throw err;
  }
  return body;
}

async function blobUrl(path) {
  return URL.createObjectURL(await api(path));
}

function showError(id, err) {
  const box = $(id);
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = err.message || String(err);
}

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e[k] = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "n/a" : Number(v).toFixed(d));
const pct = (v) => `${(100 * v).toFixed(1)}%`;
const when = (t) => (t ? new Date(1000 * t).toLocaleString() : "");

function warningList(messages, id) {
  const box = h("div", { class: "warning", role: "alert" });
  if (id) box.id = id;
  box.append(h("strong", {}, messages.length > 1 ? "Warnings" : "Warning"));
  const ul = h("ul");
  for (const m of messages) ul.append(h("li", {}, m));
  box.append(ul);
  return box;
}

/* ---- tabs and models ---------------------------------------------------------------------- */
function showTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".panel")) s.hidden = s.id !== `tab-${name}`;
  if (name === "results") loadRuns();
  if (name === "slides") refreshJobs();
}

async function loadModels() {
  try {
    const data = await api("/api/models");
    portal.models = data.models;
    const fill = (sel, modality, none) => {
      const el = $(sel);
      el.innerHTML = "";
      const ms = data.models.filter((m) => m.modality === modality);
      if (!ms.length && none) el.append(h("option", { value: "" }, none));
      for (const m of ms) el.append(h("option", { value: m.name }, `${m.name} (${m.model}, v${m.version})`));
    };
    fill("#profile-model", "expression");
    fill("#slide-model", "slide", "(no MIL model: features only)");
    showError("#profile-error", null);
    showError("#slide-error", null);
    showError("#run-error", null);
  } catch (e) {
    showError("#profile-error", e);
  }
}

/* ---- expression profiles ------------------------------------------------------------------ */
async function scoreProfile(ev) {
  ev.preventDefault();
  showError("#profile-error", null);
  const name = $("#profile-model").value;
  const file = $("#profile-file").files[0];
  if (!file) return showError("#profile-error", "choose a profile file first");
  const form = new FormData();
  form.append("file", file);
  $("#profile-result").textContent = "scoring\u2026";
  try {
    const [res, km] = await Promise.all([
      api(`/api/models/${encodeURIComponent(name)}/score`, { method: "POST", body: form }),
      api(`/api/models/${encodeURIComponent(name)}/km`).catch(() => null),
    ]);
    renderProfile(res, km, 0);
  } catch (e) {
    $("#profile-result").textContent = "";
    showError("#profile-error", e);
  }
}

function probabilityLine(res, p) {
  const horizon = res.horizon_text ? ` within ${res.horizon_text}` : "";
  const iv = p.probability_interval;
  const interval = iv
    ? h("div", { id: "risk-interval" }, `95% interval ${pct(iv.low)} \u2013 ${pct(iv.high)} `,
      h("small", {}, `(${res.interval_method})`))
    : h("div", { id: "risk-interval", class: "note" }, "no interval available: this model does not provide a per-patient uncertainty interval");
  return [h("div", { class: "metric", id: "risk-probability" }, p.probability === null ? "n/a" : pct(p.probability),
    h("small", {}, ` probability of ${res.probability_of || "the event"}${horizon}`)), interval];
}

function renderProfile(res, km, index) {
  const p = res.predictions[index];
  const out = $("#profile-result");
  out.innerHTML = "";
  const outcome = res.outcome_name ? `${res.outcome_name}` : res.outcome;
  const summary = h("div", { class: "card", id: "risk-summary" },
    h("div", {}, "Sample ", h("strong", { id: "risk-sample" }, p.sample_id)));
  if (p.status === "refused") {
    summary.append(h("div", { class: "metric" }, h("span", { class: "badge refused", id: "risk-group" }, "not scored")),
      h("p", { class: "note" }, `Refused: ${p.refused}.`));
  } else {
    summary.append(h("div", { class: "metric" }, h("span", { class: `badge ${p.risk_group}`, id: "risk-group" },
      `${p.risk_group} risk`)), ...probabilityLine(res, p),
    h("div", {}, "Risk score ", h("strong", { id: "risk-score" }, fmt(p.risk)),
      ` \u00b7 higher than ${p.risk_percentile}% of the training cohort`));
  }
  if (p.warnings.length) summary.append(warningList(p.warnings, "risk-warnings"));
  const measured = res.genes_used - p.genes_imputed;
  summary.append(h("p", { class: "note" }, `Outcome: ${outcome}. Model ${res.model} v${res.version} (${res.task}), trained on `
      + `${res.training_cohort}; ${measured} of ${res.genes_used} model genes measured for this profile`
      + `${p.genes_imputed ? `, ${p.genes_imputed} imputed with the training median` : ""}.`));
  const kmCard = h("div", { class: "card", id: "km-card" }, h("h3", {}, "Training cohort Kaplan-Meier by risk group"));
  if (km && km.available) {
    kmCard.append(kmSvg(km, p.risk_group, km.horizon), h("p", { class: "note" }, km.note));
  } else {
    kmCard.append(h("p", { class: "note" }, `not available: ${km ? km.reason : "request failed"}`));
  }
  const cards = [summary, kmCard];
  if (p.top_genes.length) {
    const genes = h("table", { class: "table", id: "top-genes" },
      h("thead", {}, h("tr", {}, h("th", {}, "gene"), h("th", {}, "z"), h("th", {}, "contribution"))));
    const maxc = Math.max(...p.top_genes.map((g) => Math.abs(g.contribution)), 1e-9);
    const body = h("tbody");
    for (const g of p.top_genes) {
      const w = Math.round((80 * Math.abs(g.contribution)) / maxc);
      body.append(h("tr", {}, h("td", {}, g.gene), h("td", {}, fmt(g.expression_z, 2)),
        h("td", {}, h("span", { class: `bar ${g.contribution > 0 ? "pos" : "neg"}`, style: `width:${w}px` }),
          ` ${fmt(g.contribution, 3)}`)));
    }
    genes.append(body);
    cards.push(h("div", { class: "card" }, h("h3", {}, "Top contributing genes"), genes,
      h("p", { class: "note" }, "red raises the risk, blue lowers it (weight \u00d7 standardised expression)")));
  }
  out.append(h("div", { class: "result" }, ...cards));
  if (res.predictions.length > 1) {
    const t = h("table", { class: "table", id: "samples" }, h("thead", {}, h("tr", {},
      ...["sample", "risk group", "probability", "risk", "percentile", "warnings"].map((x) => h("th", {}, x)))));
    const tb = h("tbody");
    res.predictions.forEach((q, i) => {
      tb.append(h("tr", { class: i === index ? "sel" : "", onclick: () => renderProfile(res, km, i) },
        h("td", {}, h("button", { class: "link", type: "button" }, q.sample_id)),
        h("td", {}, q.risk_group || "not scored"), h("td", {}, q.probability === null ? "n/a" : pct(q.probability)),
        h("td", {}, fmt(q.risk)), h("td", {}, q.risk_percentile ?? ""),
        h("td", { class: q.warnings.length ? "warn-cell" : "" }, q.warnings.length ? `\u26a0 ${q.warnings.length}` : "")));
    });
    t.append(tb);
    out.append(h("div", { class: "card wide" }, h("h3", {}, `${res.predictions.length} profiles`), t));
  }
}

/* ---- slides ------------------------------------------------------------------------------- */
const integrity = new Map(); // job id -> "verified" | "unverified" (uploads checked against a digest)

async function submitSlide(ev) {
  ev.preventDefault();
  showError("#slide-error", null);
  const model = $("#slide-model").value || null;
  const file = $("#slide-file").files[0];
  const path = $("#slide-path").value.trim();
  try {
    let job;
    if (file) {
      const form = new FormData();
      form.append("file", file);
      if (model) form.append("model", model);
      const digest = $("#slide-digest").value.trim();
      if (digest) {
        const algo = { 32: "md5", 64: "sha256" }[digest.length];
        if (!algo) throw new Error("the checksum must be an MD5 (32 hex characters) or a SHA-256 (64)");
        form.append(algo, digest);
      }
      job = await api("/api/slides/upload", { method: "POST", body: form });
      integrity.set(job.job_id, job.slide.integrity);
    } else if (path) {
      job = await api("/api/slides", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ path, model }) });
    } else {
      throw new Error("give a server-side slide path or choose a file to upload");
    }
    pollJob(job.job_id);
  } catch (e) {
    showError("#slide-error", e);
  }
}

async function pollJob(id, delay = 1000) {
  let job;
  try {
    job = await api(`/api/jobs/${id}`);
  } catch (e) {
    if (e.lost) {
      $("#job-status").textContent = `job ${id.slice(0, 8)}: connection lost, retrying\u2026`;
      showError("#slide-error", new Error(`${e.message}; job ${id.slice(0, 8)} is kept on the server and polling resumes when it is back`));
      setTimeout(() => pollJob(id, Math.min(2 * delay, 10000)), delay);
    } else {
      $("#job-status").textContent = `job ${id.slice(0, 8)}: ${e.message}`;
      showError("#slide-error", e);
    }
    return;
  }
  showError("#slide-error", null);
  const checked = integrity.get(id) === "verified" ? " \u00b7 upload verified against its checksum" : "";
  $("#job-status").textContent = `job ${id.slice(0, 8)}: ${job.status}${checked}`;
  refreshJobs();
  if (job.status === "queued" || job.status === "running") {
    setTimeout(() => pollJob(id), 1000);
  } else if (job.status === "failed" || job.status === "interrupted") {
    showError("#slide-error", new Error(`job ${id.slice(0, 8)} ${job.status}: ${job.error}`));
  } else {
    openJob(job);
  }
}

async function resumeJob(id) {
  try {
    await api(`/api/jobs/${id}/resume`, { method: "POST" });
    pollJob(id);
  } catch (e) {
    showError("#slide-error", e);
  }
}

function jobResult(j) {
  const r = j.result || {};
  if (j.status === "done") {
    return r.probability !== undefined ? `${pct(r.probability)} ${r.probability_of ? `(${r.probability_of})` : ""}` : `${r.n_tiles} tiles`;
  }
  return j.error || "";
}

async function refreshJobs() {
  try {
    const jobs = await api("/api/jobs");
    const tb = $("#jobs tbody");
    tb.innerHTML = "";
    for (const j of jobs) {
      const action = j.status === "done"
        ? h("button", { class: "link", type: "button", onclick: () => openJob(j) }, "open")
        : (j.status === "interrupted" || j.status === "failed")
          ? h("button", { class: "link resume", type: "button", onclick: () => resumeJob(j.job_id) }, "resume")
          : "";
      tb.append(h("tr", { "data-job": j.job_id, "data-status": j.status }, h("td", {}, j.job_id.slice(0, 8)), h("td", {}, j.slide_id),
        h("td", {}, j.model || "-"), h("td", { class: `status-${j.status}` }, j.status),
        h("td", {}, when(j.created)), h("td", {}, when(j.finished)), h("td", { class: "job-result" }, jobResult(j)),
        h("td", {}, action)));
    }
  } catch (e) {
    if (e.lost) showError("#slide-error", e);
  }
}

async function openJob(job) {
  portal.job = job;
  const r = job.result;
  $("#job-status").textContent = `slide ${job.slide_id}: ${r.n_tiles} tissue tiles`;
  $("#slide-summary").innerHTML = "";
  $("#slide-summary").append(h("p", {}, `Slide ${job.slide_id}`),
    r.probability !== undefined
      ? h("div", {}, h("p", { class: "metric", id: "slide-probability" }, pct(r.probability),
        h("small", {}, ` probability of ${r.probability_of || "the model's positive class (the checkpoint does not name its outcome)"}`)),
        h("p", { class: "note" }, `slide model ${job.model} v${r.model_version}; no interval available for slide scores`))
      : h("p", { class: "note" }, r.note || ""),
    r.model_note ? h("p", { class: "note" }, r.model_note) : "");
  const dzi = await api(`/api/slides/${job.slide_id}/dzi`);
  if (portal.viewer) portal.viewer.destroy();
  portal.overlay = null;
  const toggle = $("#heatmap-toggle");
  toggle.checked = false;
  toggle.disabled = true;
  $("#heatmap-legend").hidden = true;
  portal.viewer = OpenSeadragon({
    id: "viewer", prefixUrl: "/static/vendor/images/", tileSources: dzi, drawer: "canvas",
    loadTilesWithAjax: true, ajaxHeaders: authHeaders(), showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT", maxZoomPixelRatio: 2, visibilityRatio: 0.5,
  });
  portal.viewer.addOnceHandler("open", () => addOverlay(job));
  renderTopTiles(r.top_tiles || []);
}

async function addOverlay(job) {
  const hm = job.result.heatmap;
  if (!hm) return;
  const url = await blobUrl(hm.overlay_url);
  portal.viewer.addTiledImage({
    tileSource: { type: "image", url }, x: 0, y: 0, width: 1, opacity: 0,
    success: (e) => {
      portal.overlay = e.item;
      const toggle = $("#heatmap-toggle");
      toggle.disabled = false;
      toggle.dataset.ready = "1";
    },
  });
}

function setHeatmap(on) {
  if (!portal.overlay) return;
  portal.overlay.setOpacity(on ? 1 : 0);
  $("#heatmap-legend").hidden = !on;
}

async function renderTopTiles(tiles) {
  const box = $("#top-tiles");
  box.innerHTML = "";
  for (const t of tiles) {
    const img = h("img", { alt: `tile rank ${t.rank}` });
    const fig = h("figure", { onclick: () => zoomTo(t) }, img,
      h("figcaption", {}, `#${t.rank} \u00b7 pct ${(100 * t.percentile).toFixed(0)}`));
    box.append(fig);
    blobUrl(t.url).then((u) => { img.src = u; }).catch(() => {});
  }
}

function zoomTo(t) {
  const v = portal.viewer;
  if (!v) return;
  const rect = v.viewport.imageToViewportRectangle(t.x_px0, t.y_px0, t.size_px0, t.size_px0);
  v.viewport.fitBounds(new OpenSeadragon.Rect(rect.x - rect.width, rect.y - rect.height,
    3 * rect.width, 3 * rect.height));
}

/* ---- cohort results ----------------------------------------------------------------------- */
async function loadRuns() {
  showError("#run-error", null);
  try {
    const runs = await api("/api/runs");
    const sel = $("#run-select");
    const current = sel.value;
    sel.innerHTML = "";
    for (const r of runs) sel.append(h("option", { value: r.name }, `${r.name} (${r.outcome}, ${r.model})`));
    if (current) sel.value = current;
    if (runs.length) showRun(sel.value); else $("#run-summary").textContent = "no evaluation runs in the models directory";
  } catch (e) {
    showError("#run-error", e);
  }
}

function ciText(c) {
  if (!c) return "";
  const ci = c.ci_low !== null && c.ci_low !== undefined ? ` (${fmt(c.ci_low)} \u2013 ${fmt(c.ci_high)})` : "";
  return `${fmt(c.estimate)}${ci}`;
}

async function showRun(name) {
  try {
    const run = await api(`/api/runs/${encodeURIComponent(name)}`);
    const t = h("table", { class: "table", id: "run-metrics" }, h("thead", {}, h("tr", {},
      h("th", {}, "metric"), h("th", {}, `model: ${run.model}`), h("th", {}, `comparator: ${run.comparator || "none"}`),
      h("th", {}, "paired difference (model \u2212 comparator)"))));
    const tb = h("tbody");
    const flags = [];
    for (const row of run.table) {
      const tr = h("tr", { "data-metric": row.metric }, h("td", {}, row.p_value ? `${row.metric} (p-value, no CI)` : row.metric),
        h("td", { class: row.flag ? "flagged" : "" }, ciText(row.model)), h("td", {}, ciText(row.comparator)),
        h("td", {}, ciText(row.difference)));
      if (row.flag) flags.push(row.flag);
      tb.append(tr);
    }
    t.append(tb);
    $("#run-summary").innerHTML = "";
    const card = h("div", { class: "card" }, h("h3", {}, `${name}: ${run.outcome_name || run.run.outcome} (${run.run.kind})`),
      h("p", { class: "note" }, `Values are estimates with 95% bootstrap CIs; the comparator is tuned on the same splits. `
        + `Calibration slopes outside ${run.calibration_slope_range[0]}\u2013${run.calibration_slope_range[1]} are flagged.`));
    if (flags.length) card.append(warningList(flags, "run-flags"));
    card.append(t);
    $("#run-summary").append(card);
    const figs = $("#run-figures");
    figs.innerHTML = "";
    for (const f of run.figures) {
      const img = h("img", { alt: f.title });
      figs.append(h("div", { class: "card" }, h("h3", {}, f.title), img));
      blobUrl(f.url).then((u) => { img.src = u; });
    }
  } catch (e) {
    showError("#run-error", e);
  }
}

async function openReport() {
  const name = $("#run-select").value;
  if (!name) return;
  try {
    window.open(await blobUrl(`/api/runs/${encodeURIComponent(name)}/report.html`), "_blank");
  } catch (e) {
    showError("#run-error", e);
  }
}

/* ---- start -------------------------------------------------------------------------------- */
function init() {
  for (const b of document.querySelectorAll(".tab")) b.onclick = () => showTab(b.dataset.tab);
  const token = $("#token");
  token.value = sessionStorage.getItem("metastat-token") || "";
  token.onchange = () => { sessionStorage.setItem("metastat-token", token.value.trim()); loadModels(); };
  $("#profile-form").onsubmit = scoreProfile;
  $("#slide-form").onsubmit = submitSlide;
  $("#heatmap-toggle").onchange = (e) => setHeatmap(e.target.checked);
  $("#run-select").onchange = (e) => showRun(e.target.value);
  $("#run-report").onclick = openReport;
  fetch("/api/health").then((r) => r.json()).then((x) => { $("#version").textContent = x.metastat; });
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
