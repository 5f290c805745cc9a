/* Kaplan-Meier step curves of the training cohort as an SVG (no plotting library). */
"use strict";

function kmSvg(km, highlight, horizon) {
  const W = 420, H = 260, L = 48, R = 12, T = 14, B = 40;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("id", "km-plot");
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  const groups = Object.entries(km.groups);
  const tmax = Math.max(...groups.map(([, g]) => g.time[g.time.length - 1]), 1);
  const x = (t) => L + (t / tmax) * (W - L - R);
  const y = (s) => T + (1 - s) * (H - T - B);
  el("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), stroke: "#888" });
  el("line", { x1: L, y1: y(0), x2: L, y2: y(1), stroke: "#888" });
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    el("text", { x: L - 6, y: y(s) + 4, "text-anchor": "end" }, s.toFixed(2));
  }
  const step = Math.pow(10, Math.floor(Math.log10(tmax))) / (tmax / Math.pow(10, Math.floor(Math.log10(tmax))) < 3 ? 2 : 1);
  for (let t = 0; t <= tmax; t += step) {
    el("text", { x: x(t), y: y(0) + 14, "text-anchor": "middle" }, String(Math.round(t)));
  }
  el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" },
    `time (${km.time_unit || "?"})`);
  el("text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`,
    "text-anchor": "middle" }, "event-free");
  const colour = { low: "#2471a3", high: "#c0392b" };
  let ly = T + 6;
  for (const [name, g] of groups) {
    let d = `M ${x(g.time[0])} ${y(g.survival[0])}`;
    for (let i = 1; i < g.time.length; i++) {
      d += ` H ${x(g.time[i])} V ${y(g.survival[i])}`;
    }
    const on = !highlight || highlight === name;
    el("path", { d, fill: "none", stroke: colour[name] || "#555",
      "stroke-width": on ? 3 : 1.5, opacity: on ? 1 : 0.35, "data-group": name });
    el("text", { x: W - R - 4, y: ly, "text-anchor": "end", fill: colour[name] },
      `${name} risk (n=${g.n}, ${g.events} events)${highlight === name ? "  \u2190 this profile" : ""}`);
    ly += 14;
  }
  if (horizon) {
    el("line", { x1: x(horizon), y1: y(0), x2: x(horizon), y2: y(1), stroke: "#999",
      "stroke-dasharray": "4 3" });
  }
  return svg;
}
