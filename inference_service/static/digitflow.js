/* digitflow web page: draw → predict, model versions and reports, training.
 *
 * Plain JavaScript (no build step, no dependencies). Three views behind the URL hash
 * (#draw, #models, #train). Predictions and the model listing come from this (inference)
 * service; the training view talks to the trainer service at CONFIG.trainer_url, cross-origin,
 * and degrades to a notice when that service cannot be reached.
 *
 * The drawing is preprocessed here the way MNIST was made (crop to the ink, fit into 20x20
 * keeping the aspect ratio, place in 28x28 so the centre of mass is at the centre; the same
 * recipe as shared/preprocess.py) and sent as one 784-value instance in [0, 1].
 */
"use strict";

(() => {
  const CONFIG = JSON.parse(document.getElementById("digitflow-config").textContent);
  const TRAINER = CONFIG.trainer_url.replace(/\/+$/, "");
  // [file, caption, width, height]: the fixed pixel sizes of shared/reports.py's figures.
  const REPORT_FIGURES = [
    ["learning_curves.png", "Learning curves: loss and accuracy per epoch, training vs validation", 1000, 400],
    ["confusion_matrix.png", "Confusion matrix on the test set (rows: true, columns: predicted)", 700, 600],
    ["per_class.png", "Precision and recall per class on the test set", 900, 400],
    ["misclassified.png", "The test digits the model got wrong most confidently", 800, 600],
  ];
  const FIGURE_SIZE = Object.fromEntries(REPORT_FIGURES.map(([f, , w, h]) => [f, [w, h]]));
  const FINAL_STATUSES = new Set(["finished", "failed", "canceled", "stopped"]);

  const $ = (id) => document.getElementById(id);

  /** Build an element: el("td", {class: "num"}, "text", child, ...). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const pct = (v, digits = 2) =>
    typeof v === "number" ? `${(v * 100).toFixed(digits)} %` : "–";
  const num = (v, digits = 4) => (typeof v === "number" ? v.toFixed(digits) : "–");
  const when = (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  };
  const enc = encodeURIComponent;

  /** fetch() with a timeout; always resolves to {ok, status, body, headers, networkError}. */
  async function request(url, options = {}, timeoutMs = 8000) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const response = await fetch(url, { ...options, signal: controller.signal });
      let body = null;
      const type = response.headers.get("Content-Type") || "";
      if (type.includes("json")) body = await response.json().catch(() => null);
      return { ok: response.ok, status: response.status, body, headers: response.headers };
    } catch (error) {
      return { ok: false, status: 0, body: null, headers: new Headers(), networkError: error };
    } finally {
      clearTimeout(timer);
    }
  }

  const errorText = (res, fallback) =>
    (res.body && res.body.error && res.body.error.message) ||
    (res.networkError ? "the service did not answer" : `${fallback} (HTTP ${res.status})`);

  function showNotice(node, text, kind) {
    node.textContent = text;
    node.className = `notice${kind ? " " + kind : ""}`;
    node.hidden = !text;
  }

  // ============================================================== views (hash routing)

  const views = ["draw", "models", "train"];
  const onEnter = {};

  function route() {
    const wanted = location.hash.replace(/^#/, "");
    const name = views.includes(wanted) ? wanted : "draw";
    for (const view of views) {
      $(`view-${view}`).hidden = view !== name;
      const tab = $(`tab-${view}`);
      if (view === name) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    document.title = `digitflow · ${name}`;
    if (onEnter[name]) onEnter[name]();
  }

  // ============================================================== models (shared state)

  const registry = { models: [], details: new Map() };

  async function loadModels() {
    const res = await request("/v1/models");
    if (!res.ok) {
      showNotice($("global-notice"), `Could not list the models: ${errorText(res, "error")}`, "warn");
      return false;
    }
    registry.models = res.body.models || [];
    if (registry.models.length === 0) {
      showNotice(
        $("global-notice"),
        "No model has been published yet: train one in the Train view (or with " +
          "`python -m trainer_service worker` and `digitflow submit`).",
        "warn",
      );
    } else {
      showNotice($("global-notice"), "");
    }
    for (const id of ["draw-model", "models-model"]) fillModelSelect($(id));
    return true;
  }

  function fillModelSelect(select) {
    const previous = select.value;
    select.replaceChildren(
      ...registry.models.map((m) => el("option", { value: m.name, text: m.name })),
    );
    const names = registry.models.map((m) => m.name);
    if (names.includes(previous)) select.value = previous;
    else if (names.includes("mnist")) select.value = "mnist";
  }

  async function loadDetail(name) {
    const res = await request(`/v1/models/${enc(name)}`);
    if (!res.ok) return null;
    registry.details.set(name, res.body);
    return res.body;
  }

  const reportUrl = (model, version, file) =>
    `/v1/models/${enc(model)}/versions/${enc(version)}/report/${enc(file)}`;

  // ============================================================== draw view

  const pad = $("pad");
  const padCtx = pad.getContext("2d", { willReadFrequently: true });
  const strokes = [];
  let currentStroke = null;

  function strokeWidth() {
    return pad.width / 10; // 28 px on the 280 px pad: ~2.5 px, like MNIST, once fitted to 20x20
  }

  function padPoint(event) {
    const rect = pad.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) / rect.width) * pad.width,
      y: ((event.clientY - rect.top) / rect.height) * pad.height,
    };
  }

  function drawSegment(a, b) {
    padCtx.lineCap = "round";
    padCtx.lineJoin = "round";
    padCtx.strokeStyle = "#000";
    padCtx.lineWidth = strokeWidth();
    padCtx.beginPath();
    padCtx.moveTo(a.x, a.y);
    padCtx.lineTo(b.x, b.y);
    padCtx.stroke();
  }

  function redraw() {
    padCtx.clearRect(0, 0, pad.width, pad.height);
    for (const stroke of strokes) {
      for (let i = 0; i < stroke.length; i++) drawSegment(stroke[Math.max(0, i - 1)], stroke[i]);
    }
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    const p = padPoint(event);
    currentStroke = [p];
    strokes.push(currentStroke);
    drawSegment(p, p);
    schedulePredict();
  });

  pad.addEventListener("pointermove", (event) => {
    if (!currentStroke) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const p = padPoint(e);
      drawSegment(currentStroke[currentStroke.length - 1], p);
      currentStroke.push(p);
    }
    schedulePredict();
  });

  function endStroke() {
    if (!currentStroke) return;
    currentStroke = null;
    predictSoon(0);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("lostpointercapture", endStroke);

  function clearPad() {
    strokes.length = 0;
    currentStroke = null;
    redraw();
    resetResult();
  }
  $("clear").addEventListener("click", clearPad);
  $("undo").addEventListener("click", () => {
    strokes.pop();
    redraw();
    if (strokes.length) predictSoon(0);
    else resetResult();
  });
  pad.addEventListener("keydown", (event) => {
    if (event.key === "Escape" || event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      clearPad();
    }
  });

  /** The pad as MNIST would have it: Float32Array(784) in [0, 1], or null when blank. */
  function mnistInput() {
    const w = pad.width;
    const h = pad.height;
    const rgba = padCtx.getImageData(0, 0, w, h).data;
    const ink = new Float32Array(w * h);
    let top = h, bottom = -1, left = w, right = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = rgba[(y * w + x) * 4 + 3] / 255; // strokes are opaque on a transparent pad
        ink[y * w + x] = v;
        if (v > 0.2) {
          if (y < top) top = y;
          if (y > bottom) bottom = y;
          if (x < left) left = x;
          if (x > right) right = x;
        }
      }
    }
    if (bottom < 0) return null;
    const cw = right - left + 1;
    const ch = bottom - top + 1;
    const scale = 20 / Math.max(cw, ch);
    const nw = Math.max(1, Math.round(cw * scale));
    const nh = Math.max(1, Math.round(ch * scale));
    // Area-average the crop down to nw x nh (a box filter: no aliasing of thin strokes).
    const sum = new Float32Array(nw * nh);
    const count = new Float32Array(nw * nh);
    for (let y = 0; y < ch; y++) {
      const ty = Math.min(nh - 1, Math.floor((y * nh) / ch));
      for (let x = 0; x < cw; x++) {
        const tx = Math.min(nw - 1, Math.floor((x * nw) / cw));
        sum[ty * nw + tx] += ink[(top + y) * w + left + x];
        count[ty * nw + tx] += 1;
      }
    }
    let peak = 0;
    for (let i = 0; i < sum.length; i++) {
      sum[i] = count[i] ? sum[i] / count[i] : 0;
      if (sum[i] > peak) peak = sum[i];
    }
    if (peak <= 0) return null;
    let mass = 0, my = 0, mx = 0;
    for (let y = 0; y < nh; y++) {
      for (let x = 0; x < nw; x++) {
        const v = (sum[y * nw + x] /= peak);
        mass += v;
        my += v * y;
        mx += v * x;
      }
    }
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    const offY = clamp(Math.round(14 - my / mass), 0, 28 - nh);
    const offX = clamp(Math.round(14 - mx / mass), 0, 28 - nw);
    const field = new Float32Array(784);
    for (let y = 0; y < nh; y++) {
      for (let x = 0; x < nw; x++) field[(offY + y) * 28 + offX + x] = sum[y * nw + x];
    }
    return field;
  }

  function showPreview(field) {
    const ctx = $("preview").getContext("2d");
    const image = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = Math.round((field ? field[i] : 0) * 255);
      image.data.set([v, v, v, 255], i * 4);
    }
    ctx.putImageData(image, 0, 0);
  }

  // ---- probability bars
  const barRows = [];
  for (let digit = 0; digit < 10; digit++) {
    const fill = el("div", { class: "bar-fill" });
    const value = el("span", { class: "bar-value", text: "–" });
    const meter = el(
      "div",
      {
        class: "bar-track",
        role: "meter",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": "0",
        "aria-label": `probability of ${digit}`,
      },
      fill,
    );
    const row = el(
      "li",
      { class: "bar-row", "data-digit": String(digit) },
      el("span", { class: "bar-digit", text: String(digit) }),
      meter,
      value,
    );
    barRows.push({ row, fill, value, meter });
    $("bars").append(row);
  }

  function showProbabilities(probabilities) {
    let best = -1;
    probabilities.forEach((p, i) => {
      if (best < 0 || p > probabilities[best]) best = i;
    });
    barRows.forEach(({ row, fill, value, meter }, i) => {
      const p = probabilities[i] ?? 0;
      fill.style.width = `${(p * 100).toFixed(1)}%`;
      value.textContent = `${(p * 100).toFixed(1)}%`;
      meter.setAttribute("aria-valuenow", (p * 100).toFixed(1));
      row.dataset.probability = p.toFixed(6);
      row.classList.toggle("is-top", i === best);
    });
    return best;
  }

  function resetResult() {
    showProbabilities(new Array(10).fill(0));
    barRows.forEach(({ row, value }) => {
      row.classList.remove("is-top");
      delete row.dataset.probability;
      value.textContent = "–";
    });
    $("prediction").textContent = "–";
    $("confidence").textContent = "";
    showPreview(null);
    showHeatmap(null);
    $("draw-error").hidden = true;
  }

  // ---- predictions: throttled while drawing, one request in flight, stale answers dropped
  const THROTTLE_MS = 150;
  let predictTimer = null;
  let inFlight = false;
  let rerun = false;
  let lastSent = 0;
  let sequence = 0;

  function schedulePredict() {
    predictSoon(Math.max(0, THROTTLE_MS - (performance.now() - lastSent)));
  }

  function predictSoon(delay) {
    if (predictTimer !== null) {
      if (delay > 0) return;
      clearTimeout(predictTimer);
    }
    predictTimer = setTimeout(runPredict, delay);
  }

  async function runPredict() {
    predictTimer = null;
    if (inFlight) {
      rerun = true;
      return;
    }
    const model = $("draw-model").value;
    const version = $("draw-version").value || "default";
    const field = mnistInput();
    showPreview(field);
    if (!field || !model) {
      if (!field) resetResult();
      return;
    }
    inFlight = true;
    lastSent = performance.now();
    const mine = ++sequence;
    const instance = Array.from(field, (v) => Math.round(v * 1000) / 1000);
    const res = await request(`/v1/models/${enc(model)}/versions/${enc(version)}/predict`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ instances: [instance], scale: "unit" }),
    });
    inFlight = false;
    if (mine === sequence && strokes.length) {
      if (res.ok) {
        const best = showProbabilities(res.body.probabilities[0]);
        $("prediction").textContent = String(res.body.predictions[0]);
        $("confidence").textContent = `${(res.body.probabilities[0][best] * 100).toFixed(1)} % sure`;
        $("served-model").textContent = res.body.model;
        $("served-version").textContent = res.headers.get("X-Model-Version") || res.body.model_version;
        $("draw-error").hidden = true;
        // Explain the very version that answered (a new default may land in between).
        const answered = String(res.body.model_version);
        explainLater({ model, version: answered, instance, predicted: res.body.predictions[0] });
      } else {
        $("draw-error").textContent = `Prediction failed: ${errorText(res, "error")}`;
        $("draw-error").hidden = false;
      }
    }
    if (rerun) {
      rerun = false;
      predictSoon(0);
    }
  }

  // ---- explanations: the heatmap over the preview ("why 7", "why not 1")
  // Integrated gradients from the service, for the predicted class or the one picked in
  // #explain-target. One request in flight; only the newest drawing's answer is painted.
  for (let digit = 0; digit < 10; digit++) {
    $("explain-target").append(el("option", { value: String(digit), text: `class ${digit}` }));
  }
  let explainInput = null; // {model, version, instance, predicted} of the newest prediction
  let explainBusy = false;
  let explainAgain = false;

  /** Paint attributions (784 values, or null to clear) on the overlay: red pixels argue for the
   * explained class, blue ones against it, opacity by |attribution| / max |attribution|. */
  function showHeatmap(attributions, caption = "") {
    const canvas = $("heatmap");
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(28, 28);
    let peak = 0;
    for (const a of attributions || []) peak = Math.max(peak, Math.abs(a));
    for (let i = 0; peak > 0 && i < 784; i++) {
      const s = attributions[i] / peak;
      const alpha = Math.round(Math.pow(Math.abs(s), 0.7) * 230);
      image.data.set(s >= 0 ? [230, 40, 40, alpha] : [40, 110, 240, alpha], i * 4);
    }
    ctx.putImageData(image, 0, 0);
    canvas.dataset.painted = String(peak > 0);
    $("why").textContent = caption;
  }

  function explainLater(input) {
    explainInput = input;
    if (explainBusy) explainAgain = true;
    else runExplain();
  }

  async function runExplain() {
    const input = explainInput;
    if (!input || !strokes.length) return;
    const chosen = $("explain-target").value;
    const body = { instances: [input.instance], scale: "unit" };
    if (chosen !== "") body.target = Number(chosen);
    explainBusy = true;
    const res = await request(
      `/v1/models/${enc(input.model)}/versions/${enc(input.version)}/explain`,
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) },
    );
    explainBusy = false;
    if (explainAgain) {
      explainAgain = false;
      runExplain(); // a newer drawing or class is waiting: this answer is stale
      return;
    }
    if (input !== explainInput || !strokes.length) return;
    if (res.ok) {
      const target = res.body.target[0];
      const caption = target === input.predicted ? `Why ${target}` : `Why not ${target}`;
      showHeatmap(res.body.attributions[0], caption);
      $("heatmap").dataset.target = String(target);
    } else {
      showHeatmap(null, `Explanation failed: ${errorText(res, "error")}`);
    }
  }

  $("explain-target").addEventListener("change", () => {
    if (explainInput) explainLater(explainInput);
  });

  async function fillVersionSelect() {
    const name = $("draw-model").value;
    const select = $("draw-version");
    const previous = select.value;
    if (!name) {
      select.replaceChildren();
      return;
    }
    const detail = await loadDetail(name);
    if (!detail) return;
    const options = [
      el("option", { value: "default", text: `default (v${detail.default_version ?? "–"})` }),
      el("option", { value: "latest", text: `latest (v${detail.latest_version ?? "–"})` }),
    ];
    for (const [alias, version] of Object.entries(detail.aliases || {}).sort()) {
      options.push(el("option", { value: alias, text: `${alias} (v${version})` }));
    }
    for (const row of [...detail.versions].sort((a, b) => b.version - a.version)) {
      const acc = row.metrics ? ` · ${pct(row.metrics.test_accuracy)}` : "";
      const broken = row.status !== "ok";
      options.push(
        el("option", {
          value: String(row.version),
          text: `v${row.version}${acc}${broken ? " (broken)" : ""}`,
          disabled: broken,
        }),
      );
    }
    select.replaceChildren(...options);
    const values = options.map((o) => o.value);
    select.value = values.includes(previous) ? previous : "default";
  }

  $("draw-model").addEventListener("change", async () => {
    await fillVersionSelect();
    if (strokes.length) predictSoon(0);
  });
  $("draw-version").addEventListener("change", () => {
    if (strokes.length) predictSoon(0);
  });

  onEnter.draw = async () => {
    await fillVersionSelect();
  };

  // ============================================================== models view

  function networkText(config) {
    if (!config) return "–";
    const parts = [`${(config.hidden_layers || []).join("-")} ${config.activation || ""}`];
    if (config.batch_norm) parts.push("batch norm");
    if (config.dropout) parts.push(`dropout ${config.dropout}`);
    return parts.join(", ");
  }

  function trainingText(config) {
    if (!config) return "–";
    const parts = [
      `${config.optimizer} lr ${config.learning_rate}`,
      `${config.epochs} epochs`,
      config.batch_size ? `batch ${config.batch_size}` : "full batch",
    ];
    if (config.augment) parts.push(config.elastic ? "augment + elastic" : "augment");
    if (config.train_limit) parts.push(`${config.train_limit} images`);
    if (config.dataset && config.dataset !== "mnist") parts.push(config.dataset);
    return parts.join(", ");
  }

  // The rollout in one or three lines: the traffic split, the shadow's agreement with the answers
  // clients got, and each version's live figures (GET /v1/models/<name>: traffic, shadow, live).
  function rolloutLines(detail) {
    const lines = [];
    const number = (n) => Number(n).toLocaleString("en-US");
    const label = (ref) => (typeof ref === "number" ? `v${ref}` : ref);
    if (detail.traffic) {
      lines.push(
        "Traffic: " +
          detail.traffic
            .map((r) => `${label(r.version)}${r.serving && r.version !== r.serving ? ` (v${r.serving})` : ""} ${r.weight} %` +
              (r.problem ? ` (${r.problem})` : ""))
            .join(" · "),
      );
    }
    const live = detail.live || { versions: {}, shadows: {} };
    const shadow = detail.shadow;
    const figures = shadow && shadow.serving ? live.shadows[String(shadow.serving)] : null;
    if (shadow && shadow.problem) lines.push(`Shadow ${label(shadow.version)}: ${shadow.problem}`);
    if (figures && figures.requests > 0) {
      const champion =
        Object.entries(detail.aliases || {}).find(([, v]) => v === detail.default_version)?.[0] ||
        "the served answers";
      const top = figures.top_disagreement;
      lines.push(
        `${label(shadow.version)} agrees with ${champion} on ${(100 * figures.agreement).toFixed(1)} % ` +
          `of ${number(figures.requests)} live requests` +
          (top ? `; most disagreements ${top.classes[0]}↔${top.classes[1]}` : ""),
      );
    }
    const versions = Object.entries(live.versions).filter(([, f]) => f.requests > 0);
    if (versions.length > 0) {
      lines.push(
        "Live: " +
          versions
            .map(([v, f]) => `v${v} ${number(f.requests)} requests, mean confidence ${pct(f.mean_confidence)}`)
            .join(" · "),
      );
    }
    return lines;
  }

  async function renderModels() {
    const name = $("models-model").value;
    const tbody = $("versions-table").querySelector("tbody");
    if (!name) {
      tbody.replaceChildren();
      $("models-summary").textContent = "No models yet.";
      return;
    }
    const detail = await loadDetail(name);
    if (!detail) {
      $("models-summary").textContent = `Could not load model ${name}.`;
      return;
    }
    const ok = detail.versions.filter((v) => v.status === "ok").length;
    $("models-summary").textContent =
      `${detail.versions.length} version(s), ${ok} usable · default v${detail.default_version ?? "–"}` +
      (detail.pinned_version ? ` (pinned)` : " (the latest)") +
      ` · latest v${detail.latest_version ?? "–"}`;
    $("models-rollout").replaceChildren(
      ...rolloutLines(detail).flatMap((line, i) => (i ? [el("br"), line] : [line])),
    );
    const rows = [...detail.versions].sort((a, b) => b.version - a.version);
    tbody.replaceChildren(
      ...rows.map((row) => {
        const metrics = row.metrics || {};
        const figures = (row.files || []).filter((f) => f.endsWith(".png"));
        const badges = [];
        if (row.default) badges.push(el("span", { class: "badge default", text: "default" }));
        if (row.pinned) badges.push(el("span", { class: "badge", text: "pinned" }));
        if (row.status !== "ok") badges.push(el("span", { class: "badge broken", text: "broken" }));
        return el(
          "tr",
          {
            class: [row.default ? "is-default" : "", row.status !== "ok" ? "is-broken" : ""]
              .join(" ")
              .trim(),
            "data-version": String(row.version),
          },
          el("th", { scope: "row" }, `v${row.version} `, badges),
          el("td", { class: "num" }, pct(metrics.test_accuracy)),
          el("td", { class: "num" }, num(metrics.test_loss)),
          el("td", {}, networkText(row.config)),
          el("td", {}, trainingText(row.config)),
          el("td", {}, el("time", { datetime: row.created_at || "" }, when(row.created_at))),
          el(
            "td",
            {},
            (row.aliases || []).map((a) => el("span", { class: "badge", text: a })),
            row.aliases && row.aliases.length ? null : "–",
          ),
          el(
            "td",
            {},
            figures.length
              ? el("button", {
                  type: "button",
                  class: "secondary report-button",
                  "aria-label": `Show the report of version ${row.version}`,
                  text: "Show",
                  onclick: () => showReport(name, row),
                })
              : row.error || "–",
          ),
          el(
            "td",
            {},
            el("button", {
              type: "button",
              class: "secondary",
              "aria-label": `Compare version ${row.version}`,
              text: "Compare",
              disabled: row.status !== "ok",
              onclick: () => {
                $("compare-b").value = $("compare-a").value;
                $("compare-a").value = String(row.version);
                renderCompare();
                $("compare-panel").scrollIntoView({ behavior: "smooth", block: "start" });
              },
            }),
          ),
        );
      }),
    );
    fillCompareSelects(detail);
  }

  function showReport(name, row) {
    const files = row.files || [];
    $("report-heading").textContent = `Report · ${name} v${row.version}`;
    const figures = REPORT_FIGURES.filter(([file]) => files.includes(file)).map(
      ([file, caption, width, height]) =>
      el(
        "figure",
        {},
        el(
          "a",
          { href: reportUrl(name, row.version, file), target: "_blank", rel: "noopener" },
          el("img", {
            src: reportUrl(name, row.version, file),
            alt: caption,
            width: String(width),
            height: String(height),
            loading: "eager",
            decoding: "async",
            "data-file": file,
          }),
        ),
        el("figcaption", { text: caption }),
      ),
    );
    const links = files
      .filter((f) => !f.endsWith(".png"))
      .map((f) => el("a", { href: reportUrl(name, row.version, f), text: f }));
    $("report-body").replaceChildren(
      el("div", { class: "report-grid" }, figures),
      ...(links.length ? [el("p", {}, "The numbers: ", links)] : []),
    );
    $("report-panel").hidden = false;
    $("report-panel").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  function fillCompareSelects(detail) {
    const versions = detail.versions
      .filter((v) => v.status === "ok")
      .map((v) => v.version)
      .sort((a, b) => b - a);
    for (const [id, fallback] of [
      ["compare-a", versions[1] ?? versions[0]],
      ["compare-b", versions[0]],
    ]) {
      const select = $(id);
      const previous = Number(select.value);
      select.replaceChildren(
        ...versions.map((v) => el("option", { value: String(v), text: `v${v}` })),
      );
      if (versions.includes(previous)) select.value = String(previous);
      else if (fallback !== undefined) select.value = String(fallback);
    }
    renderCompare();
  }

  async function renderCompare() {
    const name = $("models-model").value;
    const a = $("compare-a").value;
    const b = $("compare-b").value;
    const body = $("compare-body");
    if (!name || !a || !b) {
      body.replaceChildren(el("p", { class: "hint", text: "Nothing to compare yet." }));
      return;
    }
    const [ra, rb] = await Promise.all(
      [a, b].map((v) => request(`/v1/models/${enc(name)}/versions/${enc(v)}`)),
    );
    if (!ra.ok || !rb.ok) {
      body.replaceChildren(el("p", { class: "error", text: "Could not load both versions." }));
      return;
    }
    const ma = ra.body;
    const mb = rb.body;
    const metricRows = [
      ["Test accuracy", (m) => m.metrics && m.metrics.test_accuracy, pct, "high"],
      ["Test loss", (m) => m.metrics && m.metrics.test_loss, num, "low"],
      ["Training seconds", (m) => m.train_seconds, (v) => num(v, 1), "low"],
      ["Epochs run", (m) => m.epochs_run, (v) => v ?? "–", null],
      ["Best epoch", (m) => m.best_epoch, (v) => v ?? "–", null],
      ["Training images", (m) => m.n_train, (v) => v ?? "–", null],
      ["Created", (m) => m.created_at, when, null],
    ];
    const keys = [...new Set([...Object.keys(ma.config || {}), ...Object.keys(mb.config || {})])];
    const show = (v) => (v === null || v === undefined ? "–" : Array.isArray(v) ? v.join(" ") : String(v));
    const rows = metricRows.map(([label, get, fmt, better]) => {
      const va = get(ma);
      const vb = get(mb);
      const mark = (mine, other) =>
        better && typeof mine === "number" && typeof other === "number" && mine !== other &&
        (better === "high" ? mine > other : mine < other)
          ? "num better"
          : "num";
      return el(
        "tr",
        {},
        el("th", { scope: "row", text: label }),
        el("td", { class: mark(va, vb), text: fmt(va) }),
        el("td", { class: mark(vb, va), text: fmt(vb) }),
      );
    });
    // Settings that differ first (highlighted), then the identical ones.
    const same = [];
    for (const key of keys) {
      const va = show((ma.config || {})[key]);
      const vb = show((mb.config || {})[key]);
      const row = el(
        "tr",
        { class: va !== vb ? "diff" : "" },
        el("th", { scope: "row", text: key }),
        el("td", { text: va }),
        el("td", { text: vb }),
      );
      (va !== vb ? rows : same).push(row);
    }
    rows.push(...same);
    const table = el(
      "table",
      { class: "compare-table" },
      el("caption", { class: "visually-hidden", text: `Version ${a} and version ${b}` }),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col", text: "" }),
          el("th", { scope: "col", text: `v${a}` }),
          el("th", { scope: "col", text: `v${b}` }),
        ),
      ),
      el("tbody", {}, rows),
    );
    const pictures = (manifest, version) => {
      const files = Object.keys(manifest.files || {});
      return el(
        "div",
        {},
        el("h4", { text: `v${version}` }),
        ["learning_curves.png", "confusion_matrix.png"]
          .filter((f) => files.includes(f))
          .map((f) =>
            el("img", {
              src: reportUrl(name, version, f),
              alt: `${f.replace(/_/g, " ").replace(".png", "")} of version ${version}`,
              width: String(FIGURE_SIZE[f][0]),
              height: String(FIGURE_SIZE[f][1]),
            }),
          ),
      );
    };
    body.replaceChildren(
      el("div", { class: "table-scroll full-row" }, table),
      pictures(ma, a),
      pictures(mb, b),
    );
  }

  $("models-model").addEventListener("change", renderModels);
  $("models-refresh").addEventListener("click", async () => {
    await loadModels();
    await renderModels();
  });
  $("compare-a").addEventListener("change", renderCompare);
  $("compare-b").addEventListener("change", renderCompare);
  onEnter.models = renderModels;

  // ============================================================== train view

  const form = $("train-form");
  const fields = [
    "model", "dataset", "preset", "hidden_layers", "activation", "epochs", "batch_size",
    "optimizer", "learning_rate", "dropout", "train_limit", "seed", "augment",
  ];
  let trainerUp = false;
  let trainerTimer = null;
  let watchedJob = null;
  let jobTimer = null;

  for (const [field, values] of Object.entries(CONFIG.choices)) {
    const select = $(`f-${field}`);
    if (!select) continue;
    const options = values.map((v) => el("option", { value: v, text: v }));
    if (field === "preset") options.unshift(el("option", { value: "", text: "(none)" }));
    select.replaceChildren(...options);
  }

  function applyPreset() {
    const preset = $("f-preset").value;
    const values = { ...CONFIG.defaults, ...(CONFIG.presets[preset] || {}) };
    for (const field of fields) {
      if (field === "model" || field === "dataset" || field === "preset") continue;
      const input = $(`f-${field}`);
      const value = values[field];
      if (input.type === "checkbox") input.checked = Boolean(value);
      else if (Array.isArray(value)) input.value = value.join(" ");
      else input.value = value === null || value === undefined ? "" : String(value);
    }
  }
  $("f-preset").addEventListener("change", applyPreset);
  $("f-dataset").value = CONFIG.defaults.dataset || "mnist";
  $("f-preset").value = "";
  applyPreset();
  $("f-token").value = sessionStorage.getItem("digitflow-token") || "";

  function formBody() {
    const body = {};
    for (const field of fields) {
      const input = $(`f-${field}`);
      if (input.type === "checkbox") {
        body[field] = input.checked;
        continue;
      }
      const raw = input.value.trim();
      if (raw === "") continue;
      if (field === "hidden_layers") body[field] = raw.split(/[\s,]+/).map(Number);
      else if (input.type === "number") body[field] = Number(raw);
      else body[field] = raw;
    }
    return body;
  }

  function setTrainerState(up, text, kind) {
    trainerUp = up;
    showNotice($("trainer-status"), text, kind);
    for (const fieldset of form.querySelectorAll("fieldset")) fieldset.disabled = !up;
    $("train-start").disabled = !up;
    form.setAttribute("aria-disabled", up ? "false" : "true");
  }

  async function checkTrainer() {
    const res = await request(`${TRAINER}/readyz`, {}, 4000);
    if (res.status === 0) {
      setTrainerState(
        false,
        `The trainer service at ${TRAINER} cannot be reached, so training is unavailable ` +
          "right now (it may be down, or not allow this page's origin in its CORS_ORIGINS). " +
          "Drawing and the models view keep working; this page checks again every few seconds.",
        "warn",
      );
    } else if (!res.ok) {
      setTrainerState(
        false,
        `The trainer service answers, but its job queue is unavailable: ${errorText(res, "not ready")}.`,
        "warn",
      );
    } else {
      const workers = res.body.workers ?? 0;
      setTrainerState(
        true,
        `Trainer service ready at ${TRAINER}: ${workers} worker(s) listening` +
          (workers ? "." : " — jobs wait in the queue until a worker starts."),
        workers ? "ok" : "warn",
      );
      if (!watchedJob) loadJobs();
    }
    return trainerUp;
  }

  function authHeaders() {
    const token = $("f-token").value.trim();
    sessionStorage.setItem("digitflow-token", token);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errors = $("train-errors");
    errors.hidden = true;
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    $("train-start").disabled = true;
    const res = await request(`${TRAINER}/v1/jobs`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(formBody()),
    });
    $("train-start").disabled = !trainerUp;
    if (res.status === 202) {
      watchJob(res.body.job_id);
      return;
    }
    const error = (res.body && res.body.error) || {};
    const items = (error.fields || []).map((f) => {
      const input = $(`f-${String(f.field).split(/[.[]/)[0]}`);
      if (input) input.setAttribute("aria-invalid", "true");
      return el("li", {}, el("strong", { text: f.field }), `: ${f.message}`);
    });
    let message = errorText(res, "the job was not accepted");
    if (res.status === 401) message = "The trainer requires an API token: fill in the API token field.";
    // replaceChildren() would print a null argument as the text "null": pass only nodes.
    const list = items.length ? [el("ul", {}, items)] : [];
    errors.replaceChildren(el("p", { text: message }), ...list);
    errors.hidden = false;
    if (res.status === 0) checkTrainer();
  });

  function watchJob(jobId) {
    watchedJob = jobId;
    sessionStorage.setItem("digitflow-job", jobId);
    $("job-panel").hidden = false;
    $("job-panel").dataset.status = "";
    $("job-panel").dataset.epoch = "0";
    $("job-id").textContent = jobId;
    $("job-result").textContent = "";
    $("epochs-table").querySelector("tbody").replaceChildren();
    $("job-stop").disabled = false;
    clearTimeout(jobTimer);
    pollJob();
  }

  async function pollJob() {
    const jobId = watchedJob;
    if (!jobId) return;
    const res = await request(`${TRAINER}/v1/jobs/${enc(jobId)}`, {}, 5000);
    if (jobId !== watchedJob) return;
    if (!res.ok) {
      $("job-status").textContent = res.status === 404 ? "unknown job" : "trainer unreachable";
      if (res.status === 404) return;
      jobTimer = setTimeout(pollJob, 3000);
      return;
    }
    renderJob(res.body);
    if (FINAL_STATUSES.has(res.body.status)) {
      $("job-stop").disabled = true;
      loadJobs();
      if (res.body.status === "finished") await loadModels();
      return;
    }
    jobTimer = setTimeout(pollJob, 700);
  }

  function renderJob(job) {
    $("job-status").textContent = job.status;
    $("job-panel").dataset.status = job.status;
    $("job-phase").textContent = job.phase ? `(${job.phase})` : "";
    const progress = job.progress || {};
    const epochs = progress.epochs || (job.config && job.config.epochs) || 1;
    const epoch = progress.epoch || 0;
    $("job-progress").max = epochs;
    $("job-progress").value = epoch;
    $("job-progress-text").textContent = `${epoch} / ${epochs}`;
    $("job-panel").dataset.epoch = String(epoch);
    const rows = (job.history || []).map((h) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: String(h.epoch) }),
        el("td", { class: "num", text: num(h.train_loss) }),
        el("td", { class: "num", text: pct(h.train_accuracy) }),
        el("td", { class: "num", text: num(h.val_loss) }),
        el("td", { class: "num", text: pct(h.val_accuracy) }),
        el("td", { class: "num", text: typeof h.learning_rate === "number" ? h.learning_rate.toExponential(2) : "–" }),
        el("td", { class: "num", text: num(h.seconds, 1) }),
      ),
    );
    $("epochs-table").querySelector("tbody").replaceChildren(...rows);
    const result = $("job-result");
    if (job.status === "finished") {
      result.replaceChildren(
        `Published ${job.model} version ${job.model_version} · test accuracy ${pct(job.test_accuracy)}. `,
        el("a", { href: "#models", text: "See it in the models view" }),
      );
    } else if (job.error) {
      result.textContent = job.error;
    } else if (job.status === "queued") {
      result.textContent =
        job.position !== undefined && job.position !== null
          ? `Waiting in the queue (position ${job.position + 1}).`
          : "Waiting in the queue.";
    } else {
      result.textContent = "";
    }
  }

  $("job-stop").addEventListener("click", async () => {
    if (!watchedJob) return;
    $("job-stop").disabled = true;
    const res = await request(`${TRAINER}/v1/jobs/${enc(watchedJob)}`, {
      method: "DELETE",
      headers: authHeaders(),
    });
    if (!res.ok && res.status !== 202) {
      $("job-result").textContent = `Could not stop the job: ${errorText(res, "error")}`;
      $("job-stop").disabled = false;
    } else {
      $("job-result").textContent = "Stop requested…";
    }
  });

  async function loadJobs() {
    const res = await request(`${TRAINER}/v1/jobs?limit=10`, {}, 5000);
    const list = $("jobs-list");
    if (!res.ok) {
      list.replaceChildren(el("li", { class: "hint", text: "Recent jobs unavailable." }));
      return;
    }
    const jobs = res.body.jobs || [];
    if (!jobs.length) {
      list.replaceChildren(el("li", { class: "hint", text: "No jobs yet." }));
      return;
    }
    list.replaceChildren(
      ...jobs.map((job) =>
        el(
          "li",
          {},
          el("code", { text: job.job_id.slice(0, 8) }),
          el("span", { text: job.model || "–" }),
          el("strong", { text: job.status }),
          job.model_version ? el("span", { text: `→ v${job.model_version}` }) : null,
          job.progress && job.progress.epoch
            ? el("span", { class: "hint", text: `epoch ${job.progress.epoch}/${job.progress.epochs}` })
            : null,
          el("button", {
            type: "button",
            class: "secondary",
            text: "Watch",
            "aria-label": `Watch job ${job.job_id}`,
            onclick: () => watchJob(job.job_id),
          }),
        ),
      ),
    );
  }

  onEnter.train = async () => {
    clearInterval(trainerTimer);
    trainerTimer = setInterval(() => {
      if (location.hash === "#train") checkTrainer();
      else clearInterval(trainerTimer);
    }, 5000);
    const up = await checkTrainer();
    const remembered = sessionStorage.getItem("digitflow-job");
    if (up && remembered && !watchedJob) watchJob(remembered);
  };

  // ============================================================== start

  window.addEventListener("hashchange", route);
  resetResult();
  (async () => {
    await loadModels();
    route();
    document.body.dataset.ready = "true";
  })();
  // New versions appear without a reload.
  setInterval(async () => {
    if (document.hidden) return;
    await loadModels();
    if (!$("view-draw").hidden) await fillVersionSelect();
  }, 15000);
})();
