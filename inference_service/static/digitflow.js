/* digitflow web page: draw → predict, model versions and reports, training, sweeps.
 *
 * Plain JavaScript (no build step, no dependencies). Four views behind the URL hash
 * (#draw, #models, #train, #sweeps or #sweeps/<id>). Predictions and the model listing come
 * from this (inference) service; the training and sweeps views talk to the trainer service at
 * CONFIG.trainer_url, cross-origin, and degrade to a notice when that service cannot be reached.
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
  const FINAL_STATUSES = new Set(["finished", "failed", "canceled", "stopped", "pruned"]);

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

  const views = ["draw", "models", "train", "sweeps"];
  const onEnter = {};

  function route() {
    // #<view>, or #sweeps/<sweep id> for one sweep.
    const [wanted, detail] = location.hash.replace(/^#/, "").split("/");
    const name = views.includes(wanted) ? wanted : "draw";
    for (const view of views) {
      $(`view-${view}`).hidden = view !== name;
      const tab = $(`tab-${view}`);
      if (view === name) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    document.title = `digitflow · ${name}`;
    return onEnter[name] ? onEnter[name](detail) : undefined;
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
    hideConvolution();
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
        explanation.later({ model, version: answered, instance, predicted: res.body.predictions[0] });
        convolutionLater({ model, version: answered, instance });
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

  /** Requests about the newest drawing, one in flight: `send(input)` asks, `show(input, res)`
   * paints. While one is in flight only the newest input waits (older ones are skipped), and
   * an answer is painted only if its input is still the newest and the drawing still there. */
  function newestOnly(send, show) {
    let input = null;
    let busy = false;
    let again = false;
    async function run() {
      const asked = input;
      if (!asked || !strokes.length) return;
      busy = true;
      const res = await send(asked);
      busy = false;
      if (again) {
        again = false;
        run(); // a newer input is waiting: this answer is stale
        return;
      }
      if (asked === input && strokes.length) show(asked, res);
    }
    return {
      get input() {
        return input;
      },
      later(next) {
        input = next;
        if (busy) again = true;
        else run();
      },
      forget() {
        input = null;
      },
    };
  }

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

  // input: {model, version, instance, predicted} of the newest prediction
  const explanation = newestOnly(
    (input) => {
      const chosen = $("explain-target").value;
      const body = { instances: [input.instance], scale: "unit" };
      if (chosen !== "") body.target = Number(chosen);
      return request(`/v1/models/${enc(input.model)}/versions/${enc(input.version)}/explain`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    },
    (input, res) => {
      if (res.ok) {
        const target = res.body.target[0];
        const caption = target === input.predicted ? `Why ${target}` : `Why not ${target}`;
        showHeatmap(res.body.attributions[0], caption);
        $("heatmap").dataset.target = String(target);
      } else {
        showHeatmap(null, `Explanation failed: ${errorText(res, "error")}`);
      }
    },
  );

  $("explain-target").addEventListener("change", () => {
    if (explanation.input) explanation.later(explanation.input);
  });

  // ---- the first convolution of a convolutional version: its filters as small pictures and
  // their feature maps of the drawing (POST .../feature-maps: the very pixels predict got), after
  // each prediction. Hidden for a perceptron (its listed network has no conv2d, or a 409). One
  // request in flight; only the newest drawing's answer is painted.
  let convPaints = 0;

  /** Whether a version has a convolution, by its network in the listing (null: not listed). */
  function hasConvolution(model, version) {
    const detail = registry.details.get(model);
    const row = detail && detail.versions.find((v) => String(v.version) === String(version));
    if (!row || !row.network) return null;
    return row.network.some((layer) => layer.kind === "conv2d");
  }

  // input: {model, version, instance} of the newest prediction
  const convolution = newestOnly(
    (input) =>
      request(`/v1/models/${enc(input.model)}/versions/${enc(input.version)}/feature-maps`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ instances: [input.instance], scale: "unit" }),
      }),
    (input, res) => {
      if (res.ok) showConvolution(res.body);
      else hideConvolution(); // 409: no convolution (a perceptron); otherwise nothing to show
    },
  );

  function hideConvolution() {
    convolution.forget();
    $("conv-panel").hidden = true;
  }

  function convolutionLater(input) {
    if (hasConvolution(input.model, input.version) === false) hideConvolution();
    else convolution.later(input);
  }

  /** `count` canvases of width x height in `box`, reused while their number and size hold. */
  function canvases(box, count, width, height, label) {
    const kept = [...box.querySelectorAll("canvas")];
    if (kept.length === count && kept.every((c) => c.width === width && c.height === height)) {
      return kept;
    }
    const made = Array.from({ length: count }, (_, i) =>
      el("canvas", { width: String(width), height: String(height), "aria-label": label(i) }),
    );
    box.replaceChildren(...made);
    return made;
  }

  /** Paint a height x width grid of values with colour(value) → [r, g, b]. */
  function paintGrid(canvas, rows, colour) {
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(canvas.width, canvas.height);
    rows.forEach((row, y) =>
      row.forEach((v, x) => image.data.set([...colour(v), 255], (y * canvas.width + x) * 4)),
    );
    ctx.putImageData(image, 0, 0);
  }

  function showConvolution(body) {
    const filters = body.filters; // [out channels][in channels][k][k]
    const maps = body.feature_maps[0]; // [out channels][height][width]
    const k = filters[0][0].length;
    // A filter's picture: its weights averaged over input channels (a digit has one).
    const kernels = filters.map((f) =>
      f[0].map((row, y) => row.map((_, x) => f.reduce((s, c) => s + c[y][x], 0) / f.length)),
    );
    let wPeak = 0;
    for (const v of kernels.flat(2)) wPeak = Math.max(wPeak, Math.abs(v));
    let mPeak = 0;
    for (const v of maps.flat(2)) mPeak = Math.max(mPeak, Math.abs(v));
    const filterBoxes = canvases($("conv-filters"), kernels.length, k, k, (i) => `filter ${i + 1}`);
    kernels.forEach((kernel, i) =>
      paintGrid(filterBoxes[i], kernel, (v) => {
        const s = wPeak > 0 ? Math.abs(v) / wPeak : 0;
        const fade = Math.round(255 * (1 - s));
        return v >= 0 ? [255, fade, fade] : [fade, fade, 255];
      }),
    );
    const [h, w] = [maps[0].length, maps[0][0].length];
    const mapBoxes = canvases($("conv-maps"), maps.length, w, h, (i) => `feature map ${i + 1}`);
    maps.forEach((map, i) =>
      paintGrid(mapBoxes[i], map, (v) => {
        const g = mPeak > 0 ? Math.round((255 * Math.abs(v)) / mPeak) : 0;
        return [g, g, g];
      }),
    );
    const panel = $("conv-panel");
    $("conv-caption").textContent =
      `${body.model} v${body.model_version}, layer ${body.layer}: ${kernels.length} filters of ` +
      `${k}×${k}, each giving a ${h}×${w} map of where its pattern is in the 28×28 input ` +
      "(after the layer's activation; one brightness scale for all maps).";
    panel.dataset.version = String(body.model_version);
    panel.dataset.paints = String(++convPaints);
    panel.hidden = false;
  }

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
    const { split, shares } = trafficShares(detail);
    const defaultText = split
      ? `default (split: ${[...shares].map(([v, share]) => `v${v} ${Number(share.toFixed(1))} %`).join(" · ")})`
      : `default (v${detail.default_version ?? "–"})`;
    const options = [
      el("option", { value: "default", text: defaultText }),
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
    hideConvolution();
    await fillVersionSelect();
    if (strokes.length) predictSoon(0);
  });
  $("draw-version").addEventListener("change", () => {
    hideConvolution();
    if (strokes.length) predictSoon(0);
  });

  onEnter.draw = async () => {
    await fillVersionSelect();
  };

  // ============================================================== models view

  /** The settings of a version's network the drawing does not show (all of it without one). */
  function networkText(config, drawn = false) {
    if (!config) return "–";
    const layers = drawn || !config.hidden_layers ? "" : `${config.hidden_layers.join("-")} `;
    const parts = [`${layers}${config.activation || ""}`];
    if (config.batch_norm) parts.push("batch norm");
    if (config.input_dropout) parts.push(`input dropout ${config.input_dropout}`);
    if (config.dropout) parts.push(`dropout ${config.dropout}`);
    return parts.join(", ");
  }

  /** A layer's name and settings, short: "conv 32 5×5", "pool 2", "dense 128", "dropout 0.3". */
  function layerLabel(layer) {
    const s = layer.settings || {};
    switch (layer.kind) {
      case "conv2d":
        return `conv ${s.out_channels} ${s.kernel_size}×${s.kernel_size}` +
          (s.stride > 1 ? ` stride ${s.stride}` : "") + (s.padding === "same" ? " same" : "");
      case "maxpool2d":
        return `pool ${s.size}` + (s.stride !== s.size ? ` stride ${s.stride}` : "");
      case "dense":
        return `dense ${s.out_features}`;
      case "dropout":
        return `dropout ${s.p}`;
      case "batchnorm1d":
      case "batchnorm2d":
        return "batch norm";
      case "leaky_relu":
        return "leaky relu";
      default:
        return layer.kind;
    }
  }

  /** A version's network drawn as its layers (GET /v1/models/<name> versions[].network): one
   * block per layer, its height growing with the values it outputs per image (log scale), with
   * its name, output shape and parameter count; then the total. */
  function networkDrawing(row) {
    const layers = row.network;
    if (!layers) return networkText(row.config);
    const total = layers.reduce((sum, layer) => sum + layer.params, 0);
    const number = (n) => Number(n).toLocaleString("en-US");
    const blocks = layers.map((layer) => {
      const size = layer.output_shape.reduce((a, b) => a * b, 1);
      const shape = layer.output_shape.join("×");
      const block = el("span", { class: "layer-block" });
      block.style.height = `${Math.round(6 + 5 * Math.log2(size + 1))}px`; // CSSOM: the CSP allows it
      return el(
        "li",
        {
          class: `layer kind-${layer.kind}`,
          "data-kind": layer.kind,
          "data-shape": shape,
          "data-params": String(layer.params),
          title: `${layerLabel(layer)}: output ${shape}, ${number(layer.params)} parameters`,
        },
        block,
        el("span", { class: "layer-name", text: layerLabel(layer) }),
        el("span", { class: "layer-shape", text: shape }),
        el("span", { class: "layer-params", text: layer.params ? number(layer.params) : "" }),
      );
    });
    return el(
      "figure",
      { class: "network" },
      el("ol", { "aria-label": `Layers of version ${row.version}: output shape and parameters` }, blocks),
      el(
        "figcaption",
        {},
        el("span", { class: "network-total", "data-params": String(total), text: `${number(total)} parameters` }),
        ` · ${networkText(row.config, true)}`,
      ),
    );
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

  /** What the default route gives each version, as this worker serves it (GET /v1/models/<name>:
   * `traffic`, `shadow`, `serving_version`): {split, shares: Map(version → % of the default
   * route's requests), shadow: version or null}. Under a split each route that serves gets its
   * weight over the serving routes' total (a route that cannot serve gets nothing and its weight
   * goes to the others, as the service does); with no split, or none of its routes able to serve,
   * the served default version gets everything. */
  function trafficShares(detail) {
    const shares = new Map();
    const serving = (detail.traffic || []).filter(
      (r) => !r.problem && r.serving !== null && r.serving !== undefined && r.weight > 0,
    );
    const total = serving.reduce((sum, r) => sum + r.weight, 0);
    for (const r of serving) shares.set(r.serving, (shares.get(r.serving) || 0) + (100 * r.weight) / total);
    const served = detail.serving_version ?? detail.default_version;
    if (total === 0 && served !== null && served !== undefined) shares.set(served, 100);
    const shadow = detail.shadow && !detail.shadow.problem ? detail.shadow.serving ?? null : null;
    return { split: total > 0, brokenSplit: Boolean(detail.traffic) && total === 0, shares, shadow };
  }

  /** The Traffic cell of one version: its share of the default route, shadow, or why none. */
  function trafficCell(row, traffic) {
    const share = traffic.shares.get(row.version) || 0;
    const parts = [];
    if (share > 0) {
      const figure = Number(share.toFixed(1));
      parts.push(
        traffic.split
          ? `${figure} % of traffic`
          : traffic.brokenSplit
            ? "all traffic (no route of the split can serve)"
            : "all traffic",
      );
    } else if (row.default && traffic.split) {
      parts.push("default (no traffic under the split)");
    }
    if (traffic.shadow === row.version) parts.push("shadow");
    return el(
      "td",
      { class: "traffic", "data-share": String(Number(share.toFixed(1))) },
      parts.length ? parts.join(" · ") : "–",
    );
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
    // Another model was picked while this one loaded: the newer render owns the table (an older
    // answer arriving last must not paint the wrong model's versions).
    if ($("models-model").value !== name) return;
    if (!detail) {
      $("models-summary").textContent = `Could not load model ${name}.`;
      return;
    }
    const ok = detail.versions.filter((v) => v.status === "ok").length;
    const traffic = trafficShares(detail);
    $("models-summary").textContent =
      `${detail.versions.length} version(s), ${ok} usable · default v${detail.default_version ?? "–"}` +
      (detail.pinned_version ? ` (pinned)` : " (the latest)") +
      (traffic.split ? ", but the traffic split decides what the default route serves" : "") +
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
        const idle = traffic.split && !traffic.shares.get(row.version);
        if (row.default) {
          badges.push(
            el("span", {
              class: `badge default${idle ? " idle" : ""}`,
              text: "default",
              title: idle ? "the registry's default, but the traffic split sends it nothing" : null,
            }),
          );
        }
        if (row.pinned) badges.push(el("span", { class: "badge", text: "pinned" }));
        if (row.staged) {
          badges.push(
            el("span", {
              class: "badge staged",
              text: "staged (sweep trial)",
              title: "never the latest or the default until promoted; reachable by number or alias",
            }),
          );
        }
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
          trafficCell(row, traffic),
          el("td", { class: "num" }, pct(metrics.test_accuracy)),
          el("td", { class: "num" }, num(metrics.test_loss)),
          el("td", { class: "network-cell" }, networkDrawing(row)),
          el("td", {}, trainingText(row.config)),
          el("td", {}, el("time", { datetime: row.created_at || "" }, when(row.created_at))),
          el(
            "td",
            {},
            (row.aliases || []).map((a) => el("span", { class: "badge", text: a })),
            row.sweep
              ? el("a", {
                  class: "badge sweep-link",
                  href: `#sweeps/${enc(row.sweep.sweep_id)}`,
                  title: `Trial ${row.sweep.trial} of sweep ${row.sweep.sweep_id}`,
                  text: `sweep ${String(row.sweep.sweep_id).slice(0, 8)} #${row.sweep.trial}`,
                })
              : null,
            (row.aliases && row.aliases.length) || row.sweep ? null : "–",
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
  onEnter.models = async (wanted) => {
    // #models/<name> (the sweeps view links there) opens that model when it exists.
    const name = wanted ? decodeURIComponent(wanted) : null;
    if (name && registry.models.some((m) => m.name === name)) $("models-model").value = name;
    await renderModels();
  };

  // ============================================================== train view

  const form = $("train-form");
  const fields = [
    "model", "dataset", "preset", "hidden_layers", "activation", "epochs", "batch_size",
    "optimizer", "learning_rate", "dropout", "train_limit", "seed", "augment",
  ];
  let trainerUp = false;
  let trainerAuth = null; // GET /readyz `auth`: "bearer" (writes need the token), "none", or unknown
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
      if (field === "model" || field === "preset") continue;
      if (field === "dataset") {
        // A preset made for one dataset (fashion, fashion-best) selects it; others keep the choice.
        const own = (CONFIG.presets[preset] || {}).dataset;
        if (own) $("f-dataset").value = own;
        continue;
      }
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
      // A trainer that does not say (an older one) may need a token: offer the field then too.
      trainerAuth = res.body.auth ?? null;
      $("train-access").hidden = trainerAuth === "none";
      $("f-token").required = trainerAuth === "bearer";
      const needToken = trainerAuth === "bearer" && !$("f-token").value.trim();
      setTrainerState(
        true,
        `Trainer service ready at ${TRAINER}: ${workers} worker(s) listening` +
          (workers ? "." : " — jobs wait in the queue until a worker starts.") +
          (trainerAuth === "bearer"
            ? needToken
              ? " Starting a job needs the trainer's API token: enter it under Access."
              : " Jobs start with the API token entered under Access."
            : ""),
        workers && !needToken ? "ok" : "warn",
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

  /** A token problem next to the Start button (not below the fold), the token field marked. */
  function tokenProblem(text) {
    const note = $("train-start-note");
    note.textContent = text;
    note.hidden = !text;
    if (!text) {
      $("f-token").removeAttribute("aria-invalid");
      return;
    }
    $("train-access").hidden = false;
    $("f-token").setAttribute("aria-invalid", "true");
    $("f-token").focus({ preventScroll: true });
    // The field sits just above the button: show both, and the note beside the button.
    $("train-access").scrollIntoView({ block: "nearest" });
    note.scrollIntoView({ block: "nearest" });
  }
  $("f-token").addEventListener("input", () => {
    if ($("f-token").value.trim()) tokenProblem("");
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errors = $("train-errors");
    errors.hidden = true;
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    tokenProblem("");
    if (trainerAuth === "bearer" && !$("f-token").value.trim()) {
      tokenProblem("The trainer needs its API token (API_TOKEN) to start a job: enter it just above.");
      return;
    }
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
    if (res.status === 401) {
      trainerAuth = "bearer";
      tokenProblem(
        `Refused (HTTP 401): ${errorText(res, "unauthorized")}. ` +
          ($("f-token").value.trim() ? "Check the API token." : "Enter the trainer's API token."),
      );
      return;
    }
    const message = errorText(res, "the job was not accepted");
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
    if (res.body.status === "stopping") $("job-stop").disabled = true;
    if (FINAL_STATUSES.has(res.body.status)) {
      $("job-stop").disabled = true;
      loadJobs();
      if (res.body.status === "finished") await loadModels();
      return;
    }
    jobTimer = setTimeout(pollJob, 700);
  }

  /** A job's status in words, its sweep linked when it is a sweep's trial ("pruned (sweep
   * ab12cd34)"): the API's `sweep_id` (or a `sweep` object), whichever the job carries. */
  function jobStatusNodes(job) {
    const sweepId = job.sweep_id ?? (job.sweep && job.sweep.sweep_id) ?? null;
    const words = job.status === "stopping" ? "stopping…" : job.status;
    if (!sweepId) return [words];
    const trial = job.trial ?? (job.sweep && job.sweep.trial);
    return [
      `${words} (`,
      el("a", {
        href: `#sweeps/${enc(sweepId)}`,
        class: "sweep-link",
        title: `sweep ${sweepId}`,
        text: `sweep ${String(sweepId).slice(0, 8)}${trial !== undefined && trial !== null ? ` #${trial}` : ""}`,
      }),
      ")",
    ];
  }

  function renderJob(job) {
    $("job-status").replaceChildren(...jobStatusNodes(job));
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
    } else if (job.status === "pruned") {
      result.textContent =
        `Pruned by its sweep after epoch ${epoch}: not promising enough to finish; nothing was published.`;
    } else if (job.status === "canceled") {
      result.textContent = "Canceled; nothing was published.";
    } else if (job.status === "stopping") {
      result.textContent = "Stop requested: the job stops after its current batch; nothing will be published.";
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
          el("strong", { class: `job-status status-${job.status}` }, jobStatusNodes(job)),
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

  // ============================================================== sweeps view
  // GET /v1/sweeps and /v1/sweeps/<id> on the trainer (cross-origin, like the train view). The
  // plots are inline SVG built here: the validation curve of every trial on one chart (pruned
  // ones dashed with a × where they stopped, the best drawn last and thick), and one small
  // scatter per parameter against the objective. A running sweep is polled until it ends.

  const SVG_NS = "http://www.w3.org/2000/svg";
  const SWEEP_POLL_MS = 1500;
  let openSweepId = null;
  let sweepTimer = null;
  let sweepData = null;
  let sweepSort = { key: "number", dir: 1 };

  /** An SVG element: svg("path", {d: "M0 0"}, child, ...). */
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const objectiveLabel = (objective) =>
    ({ val_accuracy: "validation accuracy", val_loss: "validation loss" })[objective] || objective;
  const objectiveText = (objective, v) =>
    typeof v !== "number" ? "–" : objective === "val_accuracy" ? pct(v) : num(v);
  const maximize = (sweep) => sweep.objective !== "val_loss";

  function paramText(v) {
    if (Array.isArray(v)) return v.join("-") || "[]";
    if (typeof v !== "number" || Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : String(Number(v.toPrecision(3)));
  }

  /** The value a trial is plotted at: its objective, or a pruned trial's last reported value. */
  function trialPoint(sweep, t) {
    if (typeof t.value === "number") return { y: t.value, kind: "finished" };
    const last = t.curve.length ? t.curve[t.curve.length - 1][sweep.objective] : null;
    if (t.pruned && typeof last === "number") return { y: last, kind: "pruned" };
    return null;
  }

  /** "Nice" tick values covering [lo, hi] (about `n` of them). */
  function niceTicks(lo, hi, n = 5) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Number(v.toPrecision(12)));
    }
    return ticks;
  }

  function tickText(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(0);
    return String(Number(v.toPrecision(4)));
  }

  /**
   * An empty chart: axes, grid, ticks and labels. x: {lo, hi, log, ticks?, labels?};
   * y: {lo, hi}. Returns {node, px(v), py(v), layer} where layer holds the data marks.
   */
  function chart({ width, height, x, y, xLabel, yLabel, title }) {
    const m = { left: 52, right: 12, top: 10, bottom: 38 };
    const w = width - m.left - m.right;
    const h = height - m.top - m.bottom;
    const fx = x.log ? Math.log10 : (v) => v;
    const [x0, x1] = [fx(x.lo), fx(x.hi)];
    const px = (v) => m.left + ((fx(v) - x0) / (x1 - x0 || 1)) * w;
    const py = (v) => m.top + h - ((v - y.lo) / (y.hi - y.lo || 1)) * h;
    const grid = svg("g", { class: "grid" });
    const axes = svg("g", { class: "axes" });
    const xTicks =
      x.ticks ||
      (x.log
        ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => 10 ** (Math.ceil(x0) + i))
        : niceTicks(x.lo, x.hi, Math.max(2, Math.round(w / 80))));
    xTicks.forEach((v, i) => {
      const X = px(v);
      grid.append(svg("line", { x1: X, x2: X, y1: m.top, y2: m.top + h }));
      axes.append(
        svg("text", { x: X, y: m.top + h + 15, "text-anchor": "middle" },
          x.labels ? x.labels[i] : tickText(v)),
      );
    });
    for (const v of niceTicks(y.lo, y.hi, Math.max(2, Math.round(h / 45)))) {
      const Y = py(v);
      grid.append(svg("line", { x1: m.left, x2: m.left + w, y1: Y, y2: Y }));
      axes.append(svg("text", { x: m.left - 6, y: Y + 4, "text-anchor": "end" }, tickText(v)));
    }
    axes.append(svg("rect", { x: m.left, y: m.top, width: w, height: h, class: "frame" }));
    axes.append(
      svg("text", { x: m.left + w / 2, y: height - 4, "text-anchor": "middle", class: "label" }, xLabel),
      svg("text", { x: 12, y: m.top + h / 2, "text-anchor": "middle", class: "label",
        transform: `rotate(-90 12 ${m.top + h / 2})` }, yLabel),
    );
    const clip = `clip-${Math.random().toString(36).slice(2)}`;
    const layer = svg("g", { "clip-path": `url(#${clip})` });
    const node = svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
      svg("title", {}, title),
      svg("defs", {}, svg("clipPath", { id: clip },
        svg("rect", { x: m.left - 8, y: m.top - 8, width: w + 16, height: h + 16 }))),
      grid,
      axes,
      layer,
    );
    return { node, px, py, layer };
  }

  /** [lo, hi] of `values` padded by 5 % (a flat range gets some room). */
  function paddedRange(values) {
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (!Number.isFinite(lo)) return { lo: 0, hi: 1 };
    const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 0.05;
    return { lo: lo - pad, hi: hi + pad };
  }

  function crossPath(x, y, r = 5) {
    return `M${x - r} ${y - r}L${x + r} ${y + r}M${x - r} ${y + r}L${x + r} ${y - r}`;
  }

  function starPath(x, y, r = 8) {
    let d = "";
    for (let i = 0; i < 10; i++) {
      const a = (Math.PI / 5) * i - Math.PI / 2;
      const rr = i % 2 ? r * 0.45 : r;
      d += `${i ? "L" : "M"}${(x + rr * Math.cos(a)).toFixed(1)} ${(y + rr * Math.sin(a)).toFixed(1)}`;
    }
    return `${d}Z`;
  }

  function renderCurves(sweep) {
    const box = $("sweep-curves");
    const bestNumber = sweep.best ? sweep.best.number : null;
    const series = sweep.trials
      .map((t) => ({
        t,
        points: t.curve.filter((c) => typeof c[sweep.objective] === "number")
          .map((c) => [c.epoch, c[sweep.objective]]),
      }))
      .filter((s) => s.points.length);
    if (!series.length) {
      box.replaceChildren(el("p", { class: "hint", text: "No trial has reported an epoch yet." }));
      box.dataset.curves = "0";
      box.dataset.pruned = "0";
      return;
    }
    const epochs = series.flatMap((s) => s.points.map((p) => p[0]));
    const maxEpoch = Math.max(...epochs);
    const margin = maxEpoch > 1 ? (maxEpoch - 1) * 0.03 : 0.5; // marks at the ends stay whole
    const x = { lo: 1 - margin, hi: maxEpoch + margin };
    x.ticks =
      maxEpoch <= 12
        ? Array.from({ length: maxEpoch }, (_, i) => i + 1)
        : niceTicks(1, maxEpoch, 8).filter(Number.isInteger);
    // As wide as its box (1 unit = 1 pixel: the labels keep their size on a phone).
    const width = Math.max(320, Math.round(box.clientWidth || 760));
    const c = chart({
      width, height: width < 560 ? 240 : 300,
      y: paddedRange(series.flatMap((s) => s.points.map((p) => p[1]))), x,
      xLabel: "epoch", yLabel: objectiveLabel(sweep.objective),
      title: `${objectiveLabel(sweep.objective)} per epoch of every trial`,
    });
    // The best last, so it is drawn over the others.
    series.sort((a, b) => (a.t.number === bestNumber) - (b.t.number === bestNumber));
    let pruned = 0;
    for (const { t, points } of series) {
      const best = t.number === bestNumber;
      const d = points.map(([e, v], i) => `${i ? "L" : "M"}${c.px(e).toFixed(1)} ${c.py(v).toFixed(1)}`).join("");
      const classes = ["curve", t.status, best ? "best" : ""].join(" ").trim();
      const tip = `trial ${t.number} (${t.status}): ${objectiveText(sweep.objective, points[points.length - 1][1])} at epoch ${points[points.length - 1][0]}`;
      const group = svg("g", { class: classes, "data-trial": t.number }, svg("title", {}, tip));
      group.append(svg("path", { d, class: "line" }));
      if (points.length === 1) {
        group.append(svg("circle", { cx: c.px(points[0][0]), cy: c.py(points[0][1]), r: 3, class: "dot" }));
      }
      if (t.pruned) {
        const [e, v] = points[points.length - 1];
        group.append(svg("path", { d: crossPath(c.px(e), c.py(v)), class: "prune-mark" }));
        pruned += 1;
      }
      c.layer.append(group);
    }
    box.replaceChildren(c.node);
    box.dataset.curves = String(series.length);
    box.dataset.pruned = String(pruned);
  }

  function renderParamPlots(sweep) {
    const space = (sweep.request && sweep.request.space) || {};
    const bestNumber = sweep.best ? sweep.best.number : null;
    const figures = Object.entries(space).map(([name, dim]) => {
      const kind = Array.isArray(dim) ? "list" : Object.keys(dim)[0];
      const marks = sweep.trials
        .filter((t) => name in t.params)
        .map((t) => ({ t, point: trialPoint(sweep, t) }))
        .filter((m) => m.point);
      let x;
      let xOf;
      if (kind === "list" || kind === "choice") {
        const choices = [...(kind === "list" ? dim : dim.choice)];
        if (choices.every((v) => typeof v === "number")) choices.sort((a, b) => a - b);
        const index = new Map(choices.map((v, i) => [JSON.stringify(v), i]));
        x = { lo: -0.5, hi: choices.length - 0.5, ticks: choices.map((_, i) => i), labels: choices.map(paramText) };
        // A little deterministic jitter, so trials with the same value do not hide each other.
        xOf = (t) => (index.get(JSON.stringify(t.params[name])) ?? 0) + (((t.number * 0.618) % 1) - 0.5) * 0.3;
      } else {
        const [lo, hi] = dim[kind];
        const log = kind === "log_uniform";
        const pad = log ? (hi / lo) ** 0.05 : (hi - lo) * 0.05;
        x = log ? { lo: lo / pad, hi: hi * pad, log } : { lo: lo - pad, hi: hi + pad };
        if (kind === "int" && hi - lo <= 10) {
          x.ticks = Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
        }
        xOf = (t) => t.params[name];
      }
      const c = chart({
        width: 340, height: 210, x,
        y: paddedRange(marks.map((m) => m.point.y)),
        xLabel: name + (x.log ? " (log)" : ""), yLabel: objectiveLabel(sweep.objective),
        title: `${name} against ${objectiveLabel(sweep.objective)}`,
      });
      for (const { t, point } of marks) {
        const X = c.px(xOf(t));
        const Y = c.py(point.y);
        const best = t.number === bestNumber;
        const tip = `trial ${t.number}: ${name} ${paramText(t.params[name])}, ${objectiveText(sweep.objective, point.y)}${point.kind === "pruned" ? " (pruned)" : ""}`;
        const mark = best
          ? svg("path", { d: starPath(X, Y), class: "point best" })
          : point.kind === "pruned"
            ? svg("path", { d: crossPath(X, Y, 4), class: "point pruned" })
            : svg("circle", { cx: X, cy: Y, r: 4.5, class: "point finished" });
        mark.setAttribute("data-trial", String(t.number));
        mark.append(svg("title", {}, tip));
        c.layer.append(mark);
      }
      c.node.classList.add("param-plot");
      c.node.setAttribute("data-param", name);
      c.node.setAttribute("data-scale", x.log ? "log" : x.labels ? "categorical" : "linear");
      c.node.setAttribute("data-points", String(marks.length));
      return el("figure", { class: "plot" }, el("figcaption", {}, el("strong", { text: name }),
        ` · ${kind === "list" ? "values" : kind.replace("_", " ")}`), c.node);
    });
    $("sweep-params").replaceChildren(...figures);
  }

  function sortedTrials(sweep) {
    const rows = [...sweep.trials];
    const { key, dir } = sweepSort;
    if (key === "value") {
      // Best first (dir 1), trials without an objective always last.
      const sign = (maximize(sweep) ? -1 : 1) * dir;
      rows.sort((a, b) => {
        const va = typeof a.value === "number";
        const vb = typeof b.value === "number";
        if (va !== vb) return va ? -1 : 1;
        return va ? sign * (a.value - b.value) || a.number - b.number : a.number - b.number;
      });
    } else {
      rows.sort((a, b) => dir * (a.number - b.number));
    }
    return rows;
  }

  function sortHeader(label, key, sweep) {
    const active = sweepSort.key === key;
    const ascending = key === "value" ? (maximize(sweep) ? sweepSort.dir < 0 : sweepSort.dir > 0) : sweepSort.dir > 0;
    const arrow = active ? (ascending ? " ▲" : " ▼") : "";
    return el(
      "th",
      { scope: "col", "aria-sort": active ? (ascending ? "ascending" : "descending") : "none", "data-sort": key },
      el("button", {
        type: "button",
        class: "sort",
        text: label + arrow,
        onclick: () => {
          sweepSort = { key, dir: active ? -sweepSort.dir : 1 };
          renderTrials(sweepData);
        },
      }),
    );
  }

  /** A trial's version: a link to the model in the Models view, or marked removed when the
   * sweep's `keep` deleted it (`removed_versions`): nothing to link to. */
  function versionCell(sweep, version) {
    if (!version) return el("td", { class: "num", text: "–" });
    if ((sweep.removed_versions || []).includes(version)) {
      return el(
        "td",
        { class: "num removed", "data-removed": "true", title: "deleted by the sweep: not among its best `keep` trials" },
        el("s", { text: `v${version}` }),
        " removed",
      );
    }
    return el("td", { class: "num" }, el("a", { href: `#models/${enc(sweep.model)}`, text: `v${version}` }));
  }

  function renderTrials(sweep) {
    const table = $("trials-table");
    const names = Object.keys((sweep.request && sweep.request.space) || {});
    table.querySelector("thead").replaceChildren(
      el(
        "tr",
        {},
        sortHeader("#", "number", sweep),
        names.map((n) => el("th", { scope: "col", text: n })),
        el("th", { scope: "col", text: "Status" }),
        sortHeader(objectiveLabel(sweep.objective), "value", sweep),
        el("th", { scope: "col", text: "Epochs" }),
        el("th", { scope: "col", text: "Pruned" }),
        el("th", { scope: "col", text: "Version" }),
      ),
    );
    const bestNumber = sweep.best ? sweep.best.number : null;
    const rows = sortedTrials(sweep).map((t) => {
      const status = [t.status];
      if (t.retry_of !== null && t.retry_of !== undefined) status.push(` (retry of #${t.retry_of})`);
      if (t.retried_by !== null && t.retried_by !== undefined) status.push(` (retried as #${t.retried_by})`);
      const last = t.curve.length ? t.curve[t.curve.length - 1].epoch : 0;
      const row = el(
        "tr",
        {
          class: [t.number === bestNumber ? "is-best" : "", `status-${t.status}`].join(" ").trim(),
          "data-trial": String(t.number),
          "data-status": t.status,
          "data-value": typeof t.value === "number" ? String(t.value) : "",
        },
        el("th", { scope: "row" }, `${t.number}`, t.number === bestNumber ? el("span", { class: "badge best", text: "best" }) : null),
        names.map((n) => el("td", { class: "num", text: n in t.params ? paramText(t.params[n]) : "–" })),
        el("td", { class: "status" }, el("span", { class: `status-dot ${t.status}` }), status.join("")),
        el("td", { class: "num", text: objectiveText(sweep.objective, t.value) }),
        el("td", { class: "num", text: String(last) }),
        el("td", { text: t.pruned ? `at epoch ${last}` : "–" }),
        versionCell(sweep, t.model_version),
      );
      // Point at a row: its curve stands out.
      const hover = (on) => {
        for (const node of document.querySelectorAll(`#view-sweeps [data-trial="${t.number}"]`)) {
          if (node !== row) node.classList.toggle("hover", on);
        }
      };
      row.addEventListener("mouseenter", () => hover(true));
      row.addEventListener("mouseleave", () => hover(false));
      return row;
    });
    table.querySelector("tbody").replaceChildren(...rows);
  }

  function renderSweep(sweep) {
    sweepData = sweep;
    const panel = $("sweep-panel");
    panel.hidden = false;
    panel.dataset.status = sweep.status;
    panel.dataset.sweep = sweep.sweep_id;
    $("sweep-id").textContent = sweep.sweep_id.slice(0, 8);
    $("sweep-id").title = sweep.sweep_id;
    const count = (s) => sweep.trials.filter((t) => t.status === s).length;
    const started = sweep.trials.filter((t) => t.retry_of === null || t.retry_of === undefined).length;
    $("sweep-summary").textContent =
      `${sweep.status} · model ${sweep.model} · ${objectiveLabel(sweep.objective)} · ` +
      `${started} of ${sweep.n_trials} trials started (${count("finished")} finished, ` +
      `${count("pruned")} pruned, ${count("failed")} failed, ` +
      `${count("running") + count("queued")} running or queued) · ${sweep.sampler} sampler, ` +
      `${sweep.pruner} pruner, ${sweep.parallelism} at a time`;
    const best = sweep.best;
    const promotion = sweep.promotion;
    $("sweep-best").replaceChildren(
      ...(best
        ? [
            el("strong", { text: `Best: trial ${best.number}` }),
            ` ${objectiveText(sweep.objective, best.value)} · ` +
              Object.entries(best.params).map(([k, v]) => `${k} ${paramText(v)}`).join(", ") +
              (best.model_version ? ` · ${sweep.model} v${best.model_version}` : "") +
              ((sweep.removed_versions || []).includes(best.model_version) ? " (removed)" : ""),
          ]
        : ["No finished trial yet."]),
      ...(promotion
        ? [
            el("br"),
            promotion.alias === "default"
              ? `Default: ${promotion.reason}.`
              : `Alias ${promotion.alias}: ${promotion.reason}.`,
          ]
        : []),
      ...((sweep.removed_versions || []).length
        ? [el("br"), `Removed by keep: ${sweep.removed_versions.map((v) => `v${v}`).join(", ")}.`]
        : []),
    );
    const report = $("sweep-report");
    report.href = `${TRAINER}/v1/sweeps/${enc(sweep.sweep_id)}/report.png`;
    $("sweep-cancel").hidden = sweep.status !== "running";
    renderCurves(sweep);
    renderTrials(sweep);
    renderParamPlots(sweep);
  }

  async function pollSweep() {
    const id = openSweepId;
    clearTimeout(sweepTimer);
    if (!id) return;
    const res = await request(`${TRAINER}/v1/sweeps/${enc(id)}`, {}, 8000);
    if (id !== openSweepId) return;
    if (!res.ok) {
      const error = $("sweep-error");
      error.textContent =
        res.status === 404 ? `No sweep ${id}.` : `Could not load the sweep: ${errorText(res, "error")}`;
      error.hidden = false;
      if (res.status !== 404) sweepTimer = setTimeout(pollSweep, 5000);
      return;
    }
    $("sweep-error").hidden = true;
    const was = sweepData && sweepData.sweep_id === id ? sweepData.status : null;
    renderSweep(res.body);
    if (res.body.status === "running") {
      if (!$("view-sweeps").hidden) sweepTimer = setTimeout(pollSweep, SWEEP_POLL_MS);
    } else if (was === "running") {
      loadSweeps();
      loadModels();
    }
  }

  function openSweep(id, scroll = false) {
    if (openSweepId !== id) {
      sweepSort = { key: "number", dir: 1 };
      sweepData = null;
    }
    openSweepId = id;
    if (location.hash !== `#sweeps/${id}`) history.replaceState(null, "", `#sweeps/${id}`);
    for (const row of $("sweeps-table").querySelectorAll("tbody tr")) {
      row.classList.toggle("is-open", row.dataset.sweep === id);
    }
    pollSweep().then(() => {
      if (scroll) $("sweep-panel").scrollIntoView({ behavior: "smooth", block: "start" });
    });
  }

  async function loadSweeps() {
    const res = await request(`${TRAINER}/v1/sweeps?limit=20`, {}, 5000);
    const tbody = $("sweeps-table").querySelector("tbody");
    if (!res.ok) {
      showNotice(
        $("sweeps-status"),
        res.status === 0
          ? `The trainer service at ${TRAINER} cannot be reached, so sweeps cannot be shown ` +
              "right now (it may be down, or not allow this page's origin in its CORS_ORIGINS)."
          : `The trainer could not list the sweeps: ${errorText(res, "error")}`,
        "warn",
      );
      tbody.replaceChildren();
      return false;
    }
    showNotice($("sweeps-status"), "");
    const sweeps = res.body.sweeps || [];
    if (!sweeps.length) {
      tbody.replaceChildren(
        el("tr", {}, el("td", { colspan: "6", class: "hint", text: "No sweeps yet." })),
      );
      return true;
    }
    tbody.replaceChildren(
      ...sweeps.map((s) =>
        el(
          "tr",
          { "data-sweep": s.sweep_id, "data-status": s.status, class: s.sweep_id === openSweepId ? "is-open" : "" },
          el("th", { scope: "row" }, el("code", { text: s.sweep_id.slice(0, 8) })),
          el("td", { text: s.model }),
          el("td", { class: "status" }, el("span", { class: `status-dot ${s.status}` }), s.status),
          el("td", { class: "num", text: `${s.trials_started} / ${s.n_trials}` }),
          el("td", {}, el("time", { datetime: s.created_at }, when(s.created_at))),
          el("td", {}, el("button", {
            type: "button",
            class: "secondary",
            text: "Open",
            "aria-label": `Open sweep ${s.sweep_id}`,
            onclick: () => openSweep(s.sweep_id, true),
          })),
        ),
      ),
    );
    return true;
  }

  $("sweep-cancel").addEventListener("click", async () => {
    if (!openSweepId) return;
    $("sweep-cancel").disabled = true;
    const res = await request(`${TRAINER}/v1/sweeps/${enc(openSweepId)}`, {
      method: "DELETE",
      headers: authHeaders(),
    });
    $("sweep-cancel").disabled = false;
    if (!res.ok) {
      const error = $("sweep-error");
      error.textContent =
        res.status === 401
          ? "The trainer requires an API token: fill in the API token field of the Train view."
          : `Could not cancel the sweep: ${errorText(res, "error")}`;
      error.hidden = false;
      return;
    }
    renderSweep(res.body);
    loadSweeps();
  });

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (sweepData && !$("view-sweeps").hidden) renderCurves(sweepData);
    }, 200);
  });

  onEnter.sweeps = async (id) => {
    const up = await loadSweeps();
    if (id) openSweep(id);
    else if (openSweepId && up) pollSweep();
  };
  // While the list is shown, a running sweep's row keeps moving too.
  setInterval(() => {
    if (!$("view-sweeps").hidden && !document.hidden) loadSweeps();
  }, 5000);

  // ============================================================== start

  window.addEventListener("hashchange", route);
  resetResult();
  (async () => {
    await loadModels();
    await route(); // "ready" once the first view is filled in (the draw view's version list)
    document.body.dataset.ready = "true";
  })();
  // New versions appear without a reload.
  setInterval(async () => {
    if (document.hidden) return;
    await loadModels();
    if (!$("view-draw").hidden) await fillVersionSelect();
  }, 15000);
})();
