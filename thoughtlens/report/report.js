// thoughtlens report page.
// Hand-written SVG + canvas, no library: the page needs one sequential node layout, a few heatmaps and
// bar charts. A charting library (d3 alone is ~280 kB) would outweigh the page and need vendoring and
// updates; canvas draws a 300 x 300 matrix in one putImageData, so the page stays fast offline.
// Security: every string from the data goes in through textContent / setAttribute, never innerHTML.
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("tl-data").textContent);
  const S = DATA.sentences;
  const M = DATA.matrices || {};
  const NOTES = DATA.notes || {};

  // Category colours: the paper's categories get fixed colours, others take the fallback list.
  const PALETTE = {
    problem_setup: "#7b4ea3", plan_generation: "#e6550d", fact_retrieval: "#2ca02c",
    active_computation: "#1f77b4", uncertainty_management: "#d62728", result_consolidation: "#b5a300",
    self_checking: "#e377c2", final_answer_emission: "#555555",
  };
  const FALLBACK = ["#17becf", "#8c564b", "#9467bd", "#bcbd22", "#ff7f0e", "#7f7f7f"];
  const catColors = {};
  DATA.categories.forEach(function (c, i) { catColors[c] = PALETTE[c] || FALLBACK[i % FALLBACK.length]; });
  function colorOf(s) { return s.tags && s.tags.length ? (catColors[s.tags[0]] || "#999") : "#bbb"; }

  const state = { selected: null, metric: DATA.metrics.length ? DATA.metrics[0].key : null, edges: "none", topN: 2 };

  // ---- small helpers --------------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 10000)) return v.toExponential(2);
    return a >= 100 ? v.toFixed(0) : v.toFixed(3);
  }
  function pretty(tag) { return tag.replace(/_/g, " "); }
  function abbrev(tag) { return tag.split("_").map(function (w) { return w.charAt(0).toUpperCase(); }).join(""); }
  function note(container, key) { container.appendChild(el("p", { "class": "note" }, NOTES[key] || "not computed")); }
  function metricValue(i, key) { const v = S[i].metrics[key || state.metric]; return v === undefined ? null : v; }
  function metricLabel(key) {
    const m = DATA.metrics.find(function (x) { return x.key === key; });
    return m ? m.label : String(key);
  }
  function maxAbs(key) {
    let m = 0;
    S.forEach(function (s) { const v = s.metrics[key]; if (v !== null && v !== undefined) m = Math.max(m, Math.abs(v)); });
    return m || 1;
  }
  // Signed heat colour: orange for positive, blue for negative, opacity by |v| / max |v|.
  function heat(v, scale) {
    if (v === null || v === undefined) return "rgba(0,0,0,0.04)";
    const t = Math.min(1, Math.abs(v) / scale);
    return v >= 0 ? "rgba(230,85,13," + (0.06 + 0.74 * t).toFixed(3) + ")"
                  : "rgba(49,130,189," + (0.06 + 0.74 * t).toFixed(3) + ")";
  }

  // ---- tooltip --------------------------------------------------------------------------------------
  const tip = $("tl-tooltip");
  function showTip(evt, lines) {
    tip.textContent = "";
    lines.forEach(function (line, k) { tip.appendChild(el(k === 0 ? "b" : "div", null, line)); });
    tip.style.display = "block";
    const x = Math.min(evt.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    const y = Math.min(evt.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  function hideTip() { tip.style.display = "none"; }
  function sentenceTip(i) {
    const s = S[i];
    const head = "#" + i + (s.tags.length ? " · " + s.tags.map(pretty).join(", ") : "");
    return [head, s.text.length > 280 ? s.text.slice(0, 280) + "…" : s.text,
            metricLabel(state.metric) + ": " + fmt(metricValue(i))];
  }

  // ---- header ---------------------------------------------------------------------------------------
  function renderSummary() {
    const box = $("tl-summary");
    const t = DATA.trace;
    box.appendChild(el("span", { "class": "pill" }, S.length + " sentences"));
    box.appendChild(el("span", { "class": "pill" }, "answer: " + (t.answer === null ? "none" : t.answer)));
    if (t.is_correct !== null && t.is_correct !== undefined) {
      box.appendChild(el("span", { "class": "pill " + (t.is_correct ? "ok" : "bad") }, t.is_correct ? "correct" : "incorrect"));
    }
    if (DATA.problem.gt_answer !== null && DATA.problem.gt_answer !== undefined) {
      box.appendChild(el("span", { "class": "pill" }, "ground truth: " + DATA.problem.gt_answer));
    }
    box.appendChild(el("span", { "class": "source" }, "source: " + DATA.source));
    // What the pipeline skipped or found degenerate, said once at the top (the views repeat it in place).
    const said = Object.keys(NOTES).filter(function (k) {
      return k === "accuracy" || k === "conventions" || k === "trace" || /^skipped:/.test(NOTES[k]);
    }).map(function (k) { return NOTES[k]; }).filter(function (v, i, a) { return a.indexOf(v) === i; });
    if (said.length) {
      const list = el("ul", { "id": "tl-notes", "class": "note" });
      said.forEach(function (text) { list.appendChild(el("li", null, text)); });
      box.parentNode.appendChild(list);
    }
  }

  // ---- controls -------------------------------------------------------------------------------------
  function edgeSources() {
    const out = [];
    if (M.suppression) out.push(["suppression", "attention suppression"]);
    if (M.counterfactual) out.push(["counterfactual", "counterfactual (resampling)"]);
    if (S.some(function (s) { return s.depends_on && s.depends_on.length; })) out.push(["depends_on", "labelled dependencies"]);
    out.push(["none", "none"]);
    return out;
  }
  function renderControls() {
    const metricSel = $("tl-metric");
    DATA.metrics.forEach(function (m) { metricSel.appendChild(el("option", { value: m.key, title: m.description }, m.label)); });
    if (!DATA.metrics.length) metricSel.appendChild(el("option", { value: "" }, "no metrics"));
    metricSel.addEventListener("change", function () { state.metric = metricSel.value; onMetricChange(); });
    const edgeSel = $("tl-edges");
    edgeSources().forEach(function (e) { edgeSel.appendChild(el("option", { value: e[0] }, e[1])); });
    state.edges = edgeSel.value;
    edgeSel.addEventListener("change", function () { state.edges = edgeSel.value; renderEdges(); });
    const topSel = $("tl-topn");
    state.topN = Number(topSel.value);
    topSel.addEventListener("change", function () { state.topN = Number(topSel.value); renderEdges(); });
    const legend = $("tl-legend");
    DATA.categories.forEach(function (c) {
      const item = el("span", { "class": "legend-item" });
      const dot = el("span", { "class": "dot" }); dot.style.background = catColors[c];
      item.appendChild(dot); item.appendChild(document.createTextNode(pretty(c)));
      legend.appendChild(item);
    });
  }

  // ---- graph ----------------------------------------------------------------------------------------
  const CELL = 34, ROW = 40, PAD = 18, R_MIN = 2.5, R_MAX = 15;
  const graph = { pos: [], nodes: [], edgeLayer: null, width: 0 };

  function layoutGraph() {
    const width = Math.max(360, $("tl-graph-wrap").clientWidth);
    const cols = Math.max(6, Math.floor((width - 2 * PAD) / CELL));
    graph.width = width;
    graph.pos = S.map(function (_, i) {
      return { x: PAD + (i % cols) * CELL + CELL / 2, y: PAD + Math.floor(i / cols) * ROW + ROW / 2 };
    });
    return { width: width, height: 2 * PAD + Math.ceil(S.length / cols) * ROW };
  }
  function radius(i) {
    const v = metricValue(i);
    if (v === null) return R_MIN;
    return R_MIN + (R_MAX - R_MIN) * Math.sqrt(Math.abs(v) / maxAbs(state.metric));
  }
  function renderGraph() {
    const g = $("tl-graph");
    g.textContent = "";
    const size = layoutGraph();
    g.setAttribute("width", size.width); g.setAttribute("height", size.height);
    g.setAttribute("viewBox", "0 0 " + size.width + " " + size.height);
    graph.edgeLayer = svg("g", { "class": "edges" });
    g.appendChild(graph.edgeLayer);
    const nodeLayer = svg("g", { "class": "nodes" });
    graph.nodes = S.map(function (s, i) {
      const c = svg("circle", { cx: graph.pos[i].x, cy: graph.pos[i].y, "class": "node", "data-index": i });
      c.style.fill = colorOf(s);
      c.addEventListener("mouseenter", function (evt) { showTip(evt, sentenceTip(i)); });
      c.addEventListener("mousemove", function (evt) { showTip(evt, sentenceTip(i)); });
      c.addEventListener("mouseleave", hideTip);
      c.addEventListener("click", function () { select(i); });
      nodeLayer.appendChild(c);
      return c;
    });
    g.appendChild(nodeLayer);
    const labels = svg("g", { "class": "labels" });
    // Index labels every 10 sentences help find a sentence mentioned elsewhere on the page.
    S.forEach(function (_, i) {
      if (i % 10 !== 0) return;
      const t = svg("text", { x: graph.pos[i].x, y: graph.pos[i].y - R_MAX - 2, "class": "idx" });
      t.textContent = String(i);
      labels.appendChild(t);
    });
    g.appendChild(labels);
    updateNodeSizes();
    renderEdges();
    markSelected();
  }
  function updateNodeSizes() {
    graph.nodes.forEach(function (c, i) {
      c.setAttribute("r", radius(i).toFixed(2));
      const v = metricValue(i);
      c.classList.toggle("negative", v !== null && v < 0);
      c.classList.toggle("missing", v === null);
    });
  }
  // Top-N strongest links per cause sentence: [cause, affected, value].
  function edgeList() {
    if (state.edges === "depends_on") {
      const out = [];
      S.forEach(function (s, i) { (s.depends_on || []).forEach(function (d) { if (d >= 0 && d < S.length && d !== i) out.push([d, i, 1]); }); });
      return out;
    }
    const m = M[state.edges];
    if (!m) return [];
    const out = [];
    m.forEach(function (row, j) {
      const cand = [];
      row.forEach(function (v, k) { if (k !== j && v !== null) cand.push([j, k, v]); });
      cand.sort(function (a, b) { return Math.abs(b[2]) - Math.abs(a[2]); });
      cand.slice(0, state.topN).forEach(function (e) { out.push(e); });
    });
    return out;
  }
  function edgePath(a, b) {
    const p = graph.pos[a], q = graph.pos[b];
    const mx = (p.x + q.x) / 2, my = (p.y + q.y) / 2;
    const dx = q.x - p.x, dy = q.y - p.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
    const bend = Math.min(60, 0.25 * len);   // bend sideways so edges along a row stay visible
    const cx = mx + (dy / len) * bend, cy = my - (dx / len) * bend;
    return "M" + p.x + "," + p.y + " Q" + cx.toFixed(1) + "," + cy.toFixed(1) + " " + q.x + "," + q.y;
  }
  function renderEdges() {
    const layer = graph.edgeLayer;
    layer.textContent = "";
    const noteBox = $("tl-graph-note");
    noteBox.textContent = "";
    if (state.edges === "none" && !M.suppression && !M.counterfactual) {
      noteBox.textContent = "No causal edges: " + (NOTES.suppression || "") + ".";
    }
    const edges = edgeList();
    let top = 0;
    edges.forEach(function (e) { top = Math.max(top, Math.abs(e[2])); });
    edges.forEach(function (e) {
      const w = 0.6 + 2.4 * (top ? Math.abs(e[2]) / top : 0);
      const path = svg("path", { d: edgePath(e[0], e[1]), "class": "edge", "data-from": e[0], "data-to": e[1], "stroke-width": w.toFixed(2) });
      layer.appendChild(path);
    });
    markSelected();
  }
  function markSelected() {
    const sel = state.selected;
    graph.nodes.forEach(function (c, i) { c.classList.toggle("selected", i === sel); });
    if (!graph.edgeLayer) return;
    Array.prototype.forEach.call(graph.edgeLayer.children, function (p) {
      const a = Number(p.getAttribute("data-from")), b = Number(p.getAttribute("data-to"));
      p.classList.toggle("out", sel !== null && a === sel);
      p.classList.toggle("in", sel !== null && b === sel);
      p.classList.toggle("faded", sel !== null && a !== sel && b !== sel);
    });
    // Draw highlighted edges last so they sit above the faded ones.
    Array.prototype.slice.call(graph.edgeLayer.querySelectorAll(".in, .out")).forEach(function (p) { graph.edgeLayer.appendChild(p); });
  }

  // ---- sentence panel -------------------------------------------------------------------------------
  function linkTo(i) {
    const b = el("button", { "class": "link", type: "button" }, "#" + i);
    b.addEventListener("click", function () { select(i); });
    return b;
  }
  function renderPanel() {
    const body = $("tl-panel-body");
    body.textContent = "";
    const i = state.selected;
    if (i === null) { body.appendChild(el("p", { "class": "note" }, "Click a sentence in the graph, the heat strip or the trace.")); return; }
    const s = S[i];
    const head = el("div", { "class": "panel-head" });
    head.appendChild(el("span", { "class": "panel-index" }, "#" + i + " of " + S.length));
    s.tags.forEach(function (t) {
      const chip = el("span", { "class": "chip" }, pretty(t)); chip.style.background = catColors[t] || "#999";
      head.appendChild(chip);
    });
    body.appendChild(head);
    if (s.summary) body.appendChild(el("p", { "class": "summary" }, s.summary));
    const ctx = el("div", { "class": "context" });
    if (i > 0) ctx.appendChild(el("p", { "class": "neighbour" }, S[i - 1].text));
    ctx.appendChild(el("p", { "class": "current", id: "tl-panel-text" }, s.text));
    if (i + 1 < S.length) ctx.appendChild(el("p", { "class": "neighbour" }, S[i + 1].text));
    body.appendChild(ctx);
    body.appendChild(metricsTable(s));
    links(body, i);
    if (SAE) saeSentenceView(body, i);
    answersView(body, s);
    alternativesView(body, s);
  }
  function metricsTable(s) {
    const table = el("table", { "class": "metrics" });
    const hr = el("tr");
    ["metric", "value", "95 % CI"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    table.appendChild(hr);
    DATA.metrics.forEach(function (m) {
      const tr = el("tr", m.key === state.metric ? { "class": "active", title: m.description } : { title: m.description });
      tr.appendChild(el("td", null, m.label));
      tr.appendChild(el("td", { "class": "num" }, fmt(s.metrics[m.key])));
      const ci = s.ci && s.ci[m.key];
      tr.appendChild(el("td", { "class": "num" }, ci ? "[" + fmt(ci[0]) + ", " + fmt(ci[1]) + "]" : "–"));
      table.appendChild(tr);
    });
    return table;
  }
  function links(body, i) {
    const deps = S[i].depends_on || [];
    const outgoing = edgeList().filter(function (e) { return e[0] === i && state.edges !== "depends_on"; });
    if (!deps.length && !outgoing.length) return;
    const box = el("div", { "class": "links" });
    if (deps.length) {
      box.appendChild(el("span", null, "Depends on: "));
      deps.forEach(function (d) { box.appendChild(linkTo(d)); });
    }
    if (outgoing.length) {
      box.appendChild(el("span", null, (deps.length ? "  ·  " : "") + "Strongest effect on: "));
      outgoing.forEach(function (e) { box.appendChild(linkTo(e[1])); });
    }
    body.appendChild(box);
  }
  function answersView(body, s) {
    body.appendChild(el("h3", null, "Answer distribution: sentence kept vs resampled"));
    if (!s.answers) { body.appendChild(el("p", { "class": "note" }, NOTES.answers || "not available for this sentence")); return; }
    const kept = s.answers.kept || {}, res = s.answers.resampled || {};
    const keys = Array.from(new Set(Object.keys(kept).concat(Object.keys(res))));
    keys.sort(function (a, b) { return Math.max(kept[b] || 0, res[b] || 0) - Math.max(kept[a] || 0, res[a] || 0); });
    const box = el("div", { "class": "answers" });
    keys.slice(0, 8).forEach(function (k) {
      const row = el("div", { "class": "answer-row" });
      row.appendChild(el("span", { "class": "answer-label", title: k }, k));
      const bars = el("span", { "class": "answer-bars" });
      [["kept", kept[k] || 0], ["resampled", res[k] || 0]].forEach(function (p) {
        const line = el("span", { "class": "bar-line" });
        const bar = el("span", { "class": "bar " + p[0] }); bar.style.width = (100 * p[1]).toFixed(1) + "%";
        line.appendChild(bar); line.appendChild(el("span", { "class": "bar-value" }, (100 * p[1]).toFixed(0) + "%"));
        bars.appendChild(line);
      });
      row.appendChild(bars);
      box.appendChild(row);
    });
    body.appendChild(box);
    const key = el("p", { "class": "hint" });
    key.appendChild(el("span", { "class": "swatch kept" })); key.appendChild(document.createTextNode(" kept" + (s.answers.n_kept ? " (n=" + s.answers.n_kept + ")" : "") + "  "));
    key.appendChild(el("span", { "class": "swatch resampled" })); key.appendChild(document.createTextNode(" resampled" + (s.answers.n_resampled ? " (n=" + s.answers.n_resampled + ")" : "")));
    body.appendChild(key);
    if (s.answers.note) body.appendChild(el("p", { "class": "hint" }, s.answers.note));
  }
  function alternativesView(body, s) {
    body.appendChild(el("h3", null, "Resampled alternatives"));
    if (!s.alternatives) { body.appendChild(el("p", { "class": "note" }, NOTES.alternatives || "not available for this sentence")); return; }
    if (DATA.similarity_threshold !== null && DATA.similarity_threshold !== undefined) {
      body.appendChild(el("p", { "class": "hint" }, "similar = embedding cosine ≥ " + DATA.similarity_threshold + " with the original; most frequent first"));
    }
    const list = el("ul", { "class": "alternatives" });
    s.alternatives.forEach(function (a) {
      const li = el("li");
      if (a.similar !== null && a.similar !== undefined) {
        li.appendChild(el("span", { "class": "badge " + (a.similar ? "similar" : "different") }, a.similar ? "similar" : "different"));
      }
      li.appendChild(el("span", { "class": "count" }, "×" + a.count + (a.similarity !== null && a.similarity !== undefined ? " · cos " + a.similarity.toFixed(2) : "")));
      li.appendChild(el("span", { "class": "alt-text" }, a.text));
      list.appendChild(li);
    });
    body.appendChild(list);
  }

  // ---- problem, heat strip, trace -------------------------------------------------------------------
  const traceSpans = [];
  const stripCells = [];
  function renderProblem() {
    const box = $("tl-problem");
    box.appendChild(el("h3", null, "Problem " + DATA.problem.id));
    box.appendChild(el("p", { "class": "problem-text" }, DATA.problem.text));
  }
  function renderTrace() {
    const strip = $("tl-strip");
    S.forEach(function (s, i) {
      const cell = el("span", { "class": "cell", "data-index": i });
      cell.addEventListener("click", function () { select(i); });
      cell.addEventListener("mousemove", function (evt) { showTip(evt, sentenceTip(i)); });
      cell.addEventListener("mouseleave", hideTip);
      strip.appendChild(cell);
      stripCells.push(cell);
    });
    const box = $("tl-trace");
    const text = DATA.trace.text;
    let pos = 0;
    S.forEach(function (s, i) {
      if (s.end <= s.start || s.start < pos) { traceSpans.push(null); return; }  // not located in the text
      if (s.start > pos) box.appendChild(document.createTextNode(text.slice(pos, s.start)));
      const span = el("span", { "class": "sent", "data-index": i }, text.slice(s.start, s.end));
      span.addEventListener("click", function () { select(i); });
      box.appendChild(span);
      traceSpans.push(span);
      pos = s.end;
    });
    if (pos < text.length) box.appendChild(document.createTextNode(text.slice(pos)));
    const fin = $("tl-final");
    const t = DATA.trace;
    fin.appendChild(el("span", null, "Final answer: "));
    fin.appendChild(el("b", null, t.answer === null ? "none extracted" : t.answer));
    if (t.is_correct !== null && t.is_correct !== undefined) {
      fin.appendChild(el("span", { "class": "pill " + (t.is_correct ? "ok" : "bad") }, t.is_correct ? "✓ correct" : "✗ incorrect"));
    }
    if (DATA.problem.gt_answer !== null && DATA.problem.gt_answer !== undefined) fin.appendChild(el("span", { "class": "hint" }, "  ground truth: " + DATA.problem.gt_answer));
    colorTrace();
  }
  function colorTrace() {
    const scale = maxAbs(state.metric);
    S.forEach(function (_, i) {
      const c = heat(metricValue(i), scale);
      stripCells[i].style.background = c;
      if (traceSpans[i]) traceSpans[i].style.background = c;
    });
    $("tl-strip-metric").textContent = state.metric ? metricLabel(state.metric) : "no metric";
    $("tl-strip-scale").textContent = "orange = positive, blue = negative; full colour = |value| " + fmt(scale);
  }

  // ---- heatmaps (canvas) ----------------------------------------------------------------------------
  // Viridis sampled at 6 stops; interpolated linearly.
  const VIRIDIS = [[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]];
  function viridis(t) {
    const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1), k = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - k;
    return VIRIDIS[k].map(function (c, j) { return Math.round(c + f * (VIRIDIS[k + 1][j] - c)); });
  }
  function diverging(t) {  // t in [-1, 1]: blue - white - red
    const a = Math.min(1, Math.abs(t));
    return t >= 0 ? [255, Math.round(255 - 180 * a), Math.round(255 - 200 * a)]
                  : [Math.round(255 - 200 * a), Math.round(255 - 130 * a), 255];
  }
  function heatmap(container, matrix, opts) {
    container.textContent = "";
    const rows = matrix.length, cols = rows ? matrix[0].length : 0;
    // Colour limits at the 1st / 99th percentile: a few extreme cells (attention sinks, the diagonal)
    // would otherwise wash out everything else. Cells beyond the limits saturate.
    const vals = [];
    matrix.forEach(function (r) { r.forEach(function (v) { if (v !== null) vals.push(v); }); });
    vals.sort(function (a, b) { return a - b; });
    const q = function (p) { return vals.length ? vals[Math.min(vals.length - 1, Math.floor(p * vals.length))] : 0; };
    let lo = q(0.01), hi = q(0.99);
    const clipped = vals.length && (lo > vals[0] || hi < vals[vals.length - 1]);
    if (hi <= lo) { lo = vals.length ? vals[0] : 0; hi = vals.length ? vals[vals.length - 1] : 1; }
    const signed = !opts.sequential && (opts.diverging || (lo < 0 && hi > 0));
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    const canvas = el("canvas", { width: cols, height: rows, "class": "heatmap" });
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(cols, rows);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = matrix[r][c], o = 4 * (r * cols + c);
        const rgb = v === null ? [235, 235, 235] : signed ? diverging(v / m) : viridis(hi > lo ? (v - lo) / (hi - lo) : 0.5);
        img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    const width = opts.width || 300;
    canvas.style.width = width + "px";
    // Cells need not be square: a [layers, heads] map with many layers would otherwise get very tall.
    canvas.style.height = Math.min(320, Math.max(60, Math.round(width * rows / cols))) + "px";
    function cellAt(evt) {
      const b = canvas.getBoundingClientRect();
      const c = Math.floor((evt.clientX - b.left) / b.width * cols), r = Math.floor((evt.clientY - b.top) / b.height * rows);
      return (r >= 0 && r < rows && c >= 0 && c < cols) ? [r, c] : null;
    }
    canvas.addEventListener("mousemove", function (evt) {
      const rc = cellAt(evt); if (!rc) return hideTip();
      showTip(evt, opts.tip(rc[0], rc[1], matrix[rc[0]][rc[1]]));
    });
    canvas.addEventListener("mouseleave", hideTip);
    if (opts.onClick) canvas.addEventListener("click", function (evt) { const rc = cellAt(evt); if (rc) opts.onClick(rc[0], rc[1]); });
    container.appendChild(el("div", { "class": "axis" }, opts.yLabel + " ↓   " + opts.xLabel + " →"));
    const wrap = el("div", { "class": "hm-wrap" });
    wrap.appendChild(canvas);
    container.appendChild(wrap);
    const bar = el("div", { "class": "colorbar" });
    bar.appendChild(el("span", null, (clipped ? "≤ " : "") + fmt(signed ? -m : lo)));
    const grad = el("span", { "class": "gradient " + (signed ? "div" : "seq") });
    bar.appendChild(grad);
    bar.appendChild(el("span", null, (clipped ? "≥ " : "") + fmt(signed ? m : hi)));
    container.appendChild(bar);
    const hints = [];
    if (clipped) hints.push("colours clipped at the 1st/99th percentile; hover for exact values");
    if (vals.length < rows * cols) hints.push("grey = no value (not computed, e.g. beyond the analysed tokens)");
    if (hints.length) container.appendChild(el("div", { "class": "hint" }, hints.join("; ")));
    // Bands marking the selected sentence's row and column (sentence x sentence maps only).
    const rowBand = el("div", { "class": "hm-band row" }), colBand = el("div", { "class": "hm-band col" });
    wrap.appendChild(rowBand); wrap.appendChild(colBand);
    return {
      mark: function (i) {
        const show = i !== null && i < rows && i < cols;
        rowBand.style.display = colBand.style.display = show ? "block" : "none";
        if (!show) return;
        rowBand.style.top = (100 * i / rows) + "%"; rowBand.style.height = Math.max(0.4, 100 / rows) + "%";
        colBand.style.left = (100 * i / cols) + "%"; colBand.style.width = Math.max(0.4, 100 / cols) + "%";
      },
    };
  }
  const sentenceMaps = {};  // name -> heatmap with rows and columns = sentences
  function sentenceCellTip(label) {
    return function (r, c, v) {
      return ["#" + r + " → #" + c + "  " + label + " " + fmt(v), "row: " + S[r].text.slice(0, 120), "col: " + S[c].text.slice(0, 120)];
    };
  }
  function renderAttention() {
    const kBox = $("tl-kurtosis");
    const heads = M.head_attention || [];
    const headSel = $("tl-head");
    if (M.receiver_head_kurtosis) {
      heatmap(kBox, M.receiver_head_kurtosis, {
        width: 300, sequential: true, yLabel: "layer", xLabel: "head",
        tip: function (r, c, v) {
          const has = heads.some(function (h) { return h.layer === r && h.head === c; });
          return ["L" + r + " H" + c, "kurtosis " + fmt(v) + (has ? "  (click to view)" : "")];
        },
        onClick: function (r, c) {
          const k = heads.findIndex(function (h) { return h.layer === r && h.head === c; });
          if (k >= 0) { headSel.value = String(k); renderHead(); }
        },
      });
    } else note(kBox, "receiver_head_kurtosis");
    heads.forEach(function (h, k) { headSel.appendChild(el("option", { value: k }, "L" + h.layer + " H" + h.head)); });
    if (!heads.length) headSel.style.display = "none";
    headSel.addEventListener("change", renderHead);
    renderHead();
    const sBox = $("tl-suppression");
    if (M.suppression) {
      sentenceMaps.suppression = heatmap(sBox, M.suppression, { width: 300, diverging: true, yLabel: "suppressed sentence", xLabel: "affected sentence",
                                     tip: sentenceCellTip("effect"), onClick: function (r) { select(r); } });
    } else note(sBox, "suppression");
    if (M.counterfactual) {  // optional fourth view, only when the black-box run computed it
      const view = el("div", { "class": "view" });
      view.appendChild(el("h3", null, "Counterfactual matrix (row resampled → column affected)"));
      const cBox = el("div", { id: "tl-counterfactual" });
      view.appendChild(cBox);
      sBox.parentNode.parentNode.appendChild(view);
      sentenceMaps.counterfactual = heatmap(cBox, M.counterfactual, { width: 300, yLabel: "resampled sentence", xLabel: "affected sentence",
                                                                       tip: sentenceCellTip("effect"), onClick: function (r) { select(r); } });
    }
  }
  function renderHead() {
    const box = $("tl-headattn");
    const heads = M.head_attention || [];
    if (!heads.length) { box.textContent = ""; note(box, "head_attention"); return; }
    const h = heads[Number($("tl-head").value) || 0];
    sentenceMaps.head = heatmap(box, h.matrix, { width: 300, yLabel: "query sentence", xLabel: "key sentence",
                                                 tip: sentenceCellTip("attention"), onClick: function (r) { select(r); } });
    sentenceMaps.head.mark(state.selected);
  }

  // ---- categories -----------------------------------------------------------------------------------
  function renderCategoryBars() {
    const box = $("tl-catbars");
    box.textContent = "";
    $("tl-cat-metric").textContent = state.metric ? metricLabel(state.metric) : "";
    if (!DATA.category_table) { note(box, "category_table"); return; }
    const recs = DATA.category_table.filter(function (r) { return r.metric === state.metric; });
    if (!recs.length) { box.appendChild(el("p", { "class": "note" }, "no category data for this metric")); return; }
    const order = DATA.categories.concat(recs.map(function (r) { return r.category; }));
    recs.sort(function (a, b) { return order.indexOf(a.category) - order.indexOf(b.category); });
    let lo = 0, hi = 0;
    recs.forEach(function (r) {
      lo = Math.min(lo, r.mean, r.ci_low === null ? r.mean : r.ci_low);
      hi = Math.max(hi, r.mean, r.ci_high === null ? r.mean : r.ci_high);
    });
    if (hi === lo) hi = lo + 1;
    const LABEL = 170, W = 250, H = 24, N_COL = 46;
    const g = svg("svg", { width: LABEL + W + N_COL, height: recs.length * H + 24, "class": "bars" });
    const x = function (v) { return LABEL + (v - lo) / (hi - lo) * W; };
    recs.forEach(function (r, k) {
      const y = k * H + 4;
      const t = svg("text", { x: LABEL - 6, y: y + 14, "text-anchor": "end" }); t.textContent = pretty(r.category); g.appendChild(t);
      const bar = svg("rect", { x: Math.min(x(0), x(r.mean)), y: y + 3, width: Math.max(1, Math.abs(x(r.mean) - x(0))), height: H - 10 });
      bar.style.fill = catColors[r.category] || "#999";
      g.appendChild(bar);
      if (r.ci_low !== null && r.ci_high !== null) {
        g.appendChild(svg("line", { x1: x(r.ci_low), x2: x(r.ci_high), y1: y + H / 2 - 2, y2: y + H / 2 - 2, "class": "whisker" }));
        [r.ci_low, r.ci_high].forEach(function (v) { g.appendChild(svg("line", { x1: x(v), x2: x(v), y1: y + 6, y2: y + H - 10, "class": "whisker" })); });
      }
      const n = svg("text", { x: LABEL + W + 6, y: y + 14, "class": "n" }); n.textContent = "n=" + r.n; g.appendChild(n);
      const title = svg("title"); title.textContent = pretty(r.category) + ": mean " + fmt(r.mean) + " [" + fmt(r.ci_low) + ", " + fmt(r.ci_high) + "], n=" + r.n;
      bar.appendChild(title);
    });
    const y0 = recs.length * H + 4;
    g.appendChild(svg("line", { x1: x(0), x2: x(0), y1: 0, y2: y0, "class": "zero" }));
    [lo, 0, hi].forEach(function (v) {
      const t = svg("text", { x: x(v), y: y0 + 14, "text-anchor": "middle", "class": "tick" }); t.textContent = fmt(v); g.appendChild(t);
    });
    box.appendChild(g);
  }
  function renderTransition() {
    const box = $("tl-transition");
    const tm = DATA.transition_matrix;
    if (!tm) { note(box, "transition_matrix"); return; }
    const table = el("table", { "class": "transition" });
    const hr = el("tr"); hr.appendChild(el("th", null, "from \\ to"));
    tm.categories.forEach(function (c) { hr.appendChild(el("th", { title: pretty(c) }, abbrev(c))); });
    table.appendChild(hr);
    tm.matrix.forEach(function (row, r) {
      const tr = el("tr");
      const th = el("th", { "class": "row-head" });
      const dot = el("span", { "class": "dot" }); dot.style.background = catColors[tm.categories[r]] || "#999";
      th.appendChild(dot); th.appendChild(document.createTextNode(abbrev(tm.categories[r]) + " " + pretty(tm.categories[r])));
      tr.appendChild(th);
      row.forEach(function (v, c) {
        const count = tm.counts ? " (" + tm.counts[r][c] + ")" : "";
        const td = el("td", { title: pretty(tm.categories[r]) + " → " + pretty(tm.categories[c]) + ": " + fmt(v) + count }, v ? v.toFixed(2) : "");
        const rgb = viridis(v || 0);
        td.style.background = v ? "rgb(" + rgb.join(",") + ")" : "#f4f4f4";
        td.style.color = (v || 0) > 0.55 ? "#111" : "#fff";
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    box.appendChild(table);
    if (DATA.category_table_source) $("tl-cat-source").textContent = "Category table: " + DATA.category_table_source + ".";
  }

  // ---- SAE feature panel ----------------------------------------------------------------------------
  // Sentence panel: the selected sentence's top latents; the feature card: one latent's logit effects and
  // the sentences where it fires most (across the run). Tokens, labels and sentences are model text:
  // textContent only.
  const SAE = DATA.sae_features || null;
  state.feature = null;
  function featureInfo(f) { return SAE && SAE.features ? SAE.features[String(f)] || null : null; }
  function featureButton(f, extra) {
    const b = el("button", { "class": "feat", type: "button", "data-feature": f }, "F" + f + (extra || ""));
    b.addEventListener("click", function () { selectFeature(f); });
    return b;
  }
  function tokenList(items) {
    const box = el("span", { "class": "tokens" });
    (items || []).forEach(function (t) { box.appendChild(el("code", { "class": "tok", title: "logit effect " + fmt(t.effect) }, t.token)); });
    return box;
  }
  function featureGist(f) {  // one line: label, else the tokens it promotes
    const info = featureInfo(f);
    if (!info) return "";
    if (info.label) return info.label;
    return info.up ? "↑ " + info.up.slice(0, 4).map(function (t) { return JSON.stringify(t.token); }).join(" ") : "";
  }
  function saeSentenceView(body, i) {
    body.appendChild(el("h3", null, "Top SAE features"));
    const rows = SAE.sentences[i] || [];
    if (!rows.length) { body.appendChild(el("p", { "class": "note" }, "no active feature in this sentence")); return; }
    const top = rows[0].activation || 1;
    const list = el("ul", { "class": "sae-feats", id: "tl-sae-sentence" });
    rows.forEach(function (r) {
      const li = el("li", { "class": r.feature === state.feature ? "active" : "" });
      li.appendChild(featureButton(r.feature));
      const bar = el("span", { "class": "bar kept" }); bar.style.width = Math.max(2, 60 * (r.activation || 0) / top).toFixed(1) + "px";
      li.appendChild(bar);
      li.appendChild(el("span", { "class": "bar-value" }, fmt(r.activation)));
      li.appendChild(el("span", { "class": "gist" }, featureGist(r.feature)));
      list.appendChild(li);
    });
    body.appendChild(list);
    body.appendChild(el("p", { "class": "hint" }, "Click a feature to see where else it fires (card below)."));
  }
  function renderSaeCard() {
    if (!SAE) return;
    const card = el("section", { "class": "card", id: "tl-sae-card" });
    card.appendChild(el("h2", null, "SAE features"));
    const meta = SAE.sae || {};
    card.appendChild(el("p", { "class": "hint" }, [meta.architecture, meta.d_sae ? meta.d_sae + " latents" : null,
      meta.hook ? "at " + meta.hook : null, meta.pool ? meta.pool + " over each sentence's tokens" : null]
      .filter(Boolean).join(" · ")));
    if (NOTES.sae_features) card.appendChild(el("p", { "class": "note" }, NOTES.sae_features));
    // The trace's most frequent features (in how many sentences' top lists each appears) as entry points.
    const counts = {};
    SAE.sentences.forEach(function (rows) { rows.forEach(function (r) { counts[r.feature] = (counts[r.feature] || 0) + 1; }); });
    const common = Object.keys(counts).map(Number).sort(function (a, b) { return counts[b] - counts[a] || a - b; }).slice(0, 20);
    const head = el("div", { "class": "sae-common", id: "tl-sae-common" });
    head.appendChild(el("span", { "class": "hint" }, "Most frequent in this trace: "));
    common.forEach(function (f) { head.appendChild(featureButton(f, " ×" + counts[f])); });
    card.appendChild(head);
    card.appendChild(el("div", { id: "tl-sae-feature" }));
    $("tl-main").insertBefore(card, $("tl-attention-card"));  // under the trace, above the attention views
    renderFeature();
  }
  function renderFeature() {
    const box = $("tl-sae-feature");
    if (!box) return;
    box.textContent = "";
    document.querySelectorAll("button.feat").forEach(function (b) { b.classList.toggle("active", Number(b.getAttribute("data-feature")) === state.feature); });
    const hits = {};
    S.forEach(function (_, i) {
      const r = (SAE.sentences[i] || []).find(function (x) { return x.feature === state.feature; });
      if (r) hits[i] = r.activation;
      if (traceSpans[i]) traceSpans[i].classList.toggle("fires", !!r);
    });
    const f = state.feature;
    if (f === null) { box.appendChild(el("p", { "class": "note" }, "Click a feature (here or in the sentence panel) to see where it fires.")); return; }
    const info = featureInfo(f);
    box.appendChild(el("h3", { id: "tl-sae-title" }, "Feature " + f));
    if (info && info.label) box.appendChild(el("p", { "class": "summary", id: "tl-sae-label" }, info.label));
    if (info && info.up) {
      const p = el("p", { "class": "effects" }); p.appendChild(el("span", null, "Promotes: ")); p.appendChild(tokenList(info.up)); box.appendChild(p);
      const q = el("p", { "class": "effects" }); q.appendChild(el("span", null, "Suppresses: ")); q.appendChild(tokenList(info.down)); box.appendChild(q);
    }
    const here = Object.keys(hits).map(Number);
    const links = el("div", { "class": "links" });
    links.appendChild(el("span", null, "In this trace's top lists: "));
    here.forEach(function (i) { links.appendChild(linkTo(i)); });
    if (!here.length) links.appendChild(el("span", { "class": "hint" }, "none"));
    box.appendChild(links);
    box.appendChild(el("h3", null, "Top-activating sentences across the run"));
    if (!info) { box.appendChild(el("p", { "class": "note" }, NOTES.sae_features || "no feature table for this feature")); return; }
    const table = el("table", { "class": "metrics", id: "tl-sae-top" });
    const hr = el("tr");
    ["problem", "sentence", "activation", "text"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    table.appendChild(hr);
    info.top_sentences.forEach(function (t) {
      const tr = el("tr", { "class": t.here ? "here" : "" });
      tr.appendChild(el("td", null, t.problem_id));
      const td = el("td");
      if (t.here && t.sentence < S.length) td.appendChild(linkTo(t.sentence)); else td.textContent = "#" + t.sentence;
      tr.appendChild(td);
      tr.appendChild(el("td", { "class": "num" }, fmt(t.activation)));
      tr.appendChild(el("td", { "class": "sae-text" }, t.text));
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function selectFeature(f) {
    state.feature = f;
    renderFeature();
    document.querySelectorAll("#tl-sae-sentence li").forEach(function (li) {
      li.classList.toggle("active", Number(li.querySelector("button.feat").getAttribute("data-feature")) === f);
    });
  }

  // ---- transplant curve -----------------------------------------------------------------------------
  // Hinted-answer rate as more of the hinted CoT is placed after the unhinted prompt, with its 95 % CI band.
  function renderTransplant() {
    const tc = DATA.transplant_curve;
    if (!tc || !tc.points || !tc.points.length) return;
    const card = el("section", { "class": "card", id: "tl-transplant-card" });
    card.appendChild(el("h2", null, "Transplant: hinted-answer rate vs sentences of the hinted CoT kept"));
    const pts = tc.points;
    const W = 640, H = 260, L = 46, R = 14, T = 12, B = 36;
    const kMax = Math.max(1, pts[pts.length - 1].k);
    const x = function (k) { return L + (W - L - R) * k / kMax; };
    const y = function (v) { return T + (H - T - B) * (1 - v); };
    const g = svg("svg", { width: W, height: H, "class": "transplant", id: "tl-transplant" });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      g.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), "class": v === 0 ? "axis-line" : "grid" }));
      const t = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "class": "tick" }); t.textContent = v.toFixed(2); g.appendChild(t);
    });
    const step = Math.max(1, Math.ceil(kMax / 10));
    for (let k = 0; k <= kMax; k += step) {
      const t = svg("text", { x: x(k), y: H - B + 16, "text-anchor": "middle", "class": "tick" }); t.textContent = String(k); g.appendChild(t);
    }
    const xl = svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", "class": "axis-label" });
    xl.textContent = "k = sentences of the hinted CoT kept"; g.appendChild(xl);
    // Band and line over each run of consecutive points that have a value (a position with no valid answer breaks them).
    function runs(has) {
      const out = []; let cur = [];
      pts.forEach(function (p) { if (has(p)) cur.push(p); else { if (cur.length) out.push(cur); cur = []; } });
      if (cur.length) out.push(cur);
      return out;
    }
    runs(function (p) { return p.ci_low !== null && p.ci_high !== null; }).forEach(function (run) {
      const upper = run.map(function (p) { return x(p.k).toFixed(2) + "," + y(p.ci_high).toFixed(2); });
      const lower = run.slice().reverse().map(function (p) { return x(p.k).toFixed(2) + "," + y(p.ci_low).toFixed(2); });
      g.appendChild(svg("path", { d: "M" + upper.concat(lower).join("L") + "Z", "class": "tp-band" }));
    });
    runs(function (p) { return p.rate !== null; }).forEach(function (run) {
      g.appendChild(svg("path", { d: "M" + run.map(function (p) { return x(p.k).toFixed(2) + "," + y(p.rate).toFixed(2); }).join("L"), "class": "tp-line" }));
    });
    pts.forEach(function (p) {
      if (p.rate === null) return;
      const c = svg("circle", { cx: x(p.k), cy: y(p.rate), r: 3.5, "class": "tp-point" + (p.copied ? " copied" : ""), "data-k": p.k });
      const lines = ["k = " + p.k + (p.k === 0 ? " (no sentence kept)" : " (through sentence #" + (p.k - 1) + ")"),
                     "hinted-answer rate " + fmt(p.rate) + "  95 % CI [" + fmt(p.ci_low) + ", " + fmt(p.ci_high) + "]",
                     "n = " + p.n + (p.copied ? " (copied: converged earlier)" : "")];
      c.addEventListener("mousemove", function (evt) { showTip(evt, lines); });
      c.addEventListener("mouseleave", hideTip);
      if (tc.cot_on_page) c.addEventListener("click", function () { if (p.k > 0 && p.k - 1 < S.length) select(p.k - 1); });
      g.appendChild(c);
    });
    card.appendChild(g);
    card.appendChild(el("p", { "class": "hint" }, "y: share of answers that follow the hint, #cue / (#correct + #cue + #other); " +
      "band: 95 % Wilson CI; hollow points: copied after the rate converged (as the paper's run_chunk_prompts). " +
      (tc.cot_on_page ? "The trace above is the hinted CoT; click a point to select the last sentence it keeps." : "")));
    $("tl-main").insertBefore(card, $("tl-attention-card"));  // under the trace, above the attention views
  }

  // ---- selection and metric changes -----------------------------------------------------------------
  function select(i) {
    state.selected = i;
    markSelected();
    renderPanel();
    stripCells.forEach(function (c, k) { c.classList.toggle("selected", k === i); });
    traceSpans.forEach(function (sp, k) { if (sp) sp.classList.toggle("selected", k === i); });
    Object.keys(sentenceMaps).forEach(function (k) { sentenceMaps[k].mark(i); });
    const sp = traceSpans[i], box = $("tl-trace");
    // Scroll the trace box only, not the page (#tl-trace is position: relative, so offsetTop is inside it).
    if (sp) box.scrollTop = Math.max(0, sp.offsetTop - 60);
  }
  function onMetricChange() {
    updateNodeSizes();
    colorTrace();
    renderCategoryBars();
    renderPanel();
  }

  let resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { if ($("tl-graph-wrap").clientWidth !== graph.width) renderGraph(); }, 150);
  });

  renderSummary();
  renderControls();
  renderGraph();
  renderProblem();
  renderTrace();
  renderAttention();
  renderCategoryBars();
  renderTransition();
  renderTransplant();
  renderSaeCard();
  // Tests and the benchmark wait for data-ready; data-ready-ms is the time since navigation started.
  document.body.setAttribute("data-ready-ms", performance.now().toFixed(1));
  document.body.setAttribute("data-ready", "1");
})();
