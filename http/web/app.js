// The dock's web page: plain JavaScript over the REST API (/v1), nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 20;

// The API key lives in this browser tab's session only.
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("modeldock-key") || "";
keyInput.addEventListener("change", () => {
  sessionStorage.setItem("modeldock-key", keyInput.value.trim());
  loadModels(true);
});

function authHeaders() {
  const key = keyInput.value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

// Fetches JSON; throws Error(message from the API's error body).
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(`${body.code || response.status}: ${body.message || body.error || response.statusText}`);
  }
  return body;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// ---- Models: search and paging (page tokens from the API; a stack of them for "previous").
let pageTokens = [""];
let nextToken = "";

async function loadModels(reset) {
  if (reset) pageTokens = [""];
  const params = new URLSearchParams({ page_size: PAGE_SIZE, page_token: pageTokens[pageTokens.length - 1] });
  if ($("search").value.trim()) params.set("name_contains", $("search").value.trim());
  if ($("tag").value.trim()) params.set("tag", $("tag").value.trim());
  if ($("state").value) params.set("state", $("state").value);
  const tbody = $("models").tBodies[0];
  try {
    const page = await api("/v1/models?" + params);
    tbody.replaceChildren();
    for (const m of page.models) {
      const row = tbody.insertRow();
      const link = document.createElement("a");
      link.href = "#model/" + encodeURIComponent(m.name + (m.version ? "@" + m.version : ""));
      link.textContent = m.name;
      row.insertCell().appendChild(link);
      cell(row, m.version || "-");
      cell(row, m.state, "state-" + m.state);
      cell(row, m.input_shape.join("x"));
      cell(row, m.kind);
      cell(row, m.class_labels.length ? m.class_labels.slice(0, 6).join(", ") + (m.class_labels.length > 6 ? ", …" : "") : "-");
      cell(row, m.tags.join(", "));
    }
    const first = (pageTokens.length - 1) * PAGE_SIZE;
    $("models-summary").textContent = page.total_size === 0 ? "No models match."
      : `Models ${first + 1}–${first + page.models.length} of ${page.total_size}`;
    nextToken = page.next_page_token;
    $("next").disabled = !nextToken;
    $("prev").disabled = pageTokens.length <= 1;
  } catch (e) {
    tbody.replaceChildren();
    $("models-summary").textContent = e.message;
    $("models-summary").className = "error";
    return;
  }
  $("models-summary").className = "";
}

$("search-form").addEventListener("submit", (event) => { event.preventDefault(); loadModels(true); });
$("next").addEventListener("click", () => { pageTokens.push(nextToken); loadModels(false); });
$("prev").addEventListener("click", () => { pageTokens.pop(); loadModels(false); });

// ---- The model card.
async function showCard(ref) {
  const card = $("card");
  try {
    const { model: m } = await api("/v1/models/" + encodeURIComponent(ref));
    $("card-title").textContent = `${m.name} ${m.version}`;
    $("card-description").textContent = m.description;
    const facts = [
      ["State", m.state + (m.state_reason ? ` (${m.state_reason})` : "")],
      ["Kind", m.kind], ["Task", m.task], ["Input shape", m.input_shape.join(" x ")],
      ["Labels", m.class_labels.join(", ") || "-"], ["Licence", m.license || "-"],
      ["Tags", m.tags.join(", ") || "-"],
      ["Layers", m.layers.map((l) => `${l.name} (${l.dim}-d)`).join(", ") || "-"],
      ["Feature dim", String(m.feature_dim)], ["Probing", `${m.probe_millis} ms`],
      ["Size", `${(m.size_bytes / 1048576).toFixed(2)} MiB`], ["SHA-256", m.sha256],
      ["Registered", new Date(m.created_unix_ms).toISOString()], ["Id", m.id],
      ["Stored as", m.remote ? `remote: ${m.remote.model} at ${m.remote.endpoint}` : "TorchScript file in the dock"],
    ];
    const dl = $("card-facts");
    dl.replaceChildren();
    for (const [name, value] of facts) {
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = value;
      dl.append(dt, dd);
    }
    await showNearest(m);
    await showRecords(m.id);
  } catch (e) {
    $("card-title").textContent = ref;
    $("card-description").textContent = e.message;
    $("card-facts").replaceChildren();
    $("card-records").tBodies[0].replaceChildren();
    $("card-records-summary").textContent = "";
    $("card-nearest").tBodies[0].replaceChildren();
    $("card-nearest-summary").textContent = "";
  }
  card.hidden = false;
  $("card-close").focus();
}

// The model's nearest models in its knowledge space (GET /v1/models/ID/nearest), best first,
// each a link to its own card. A model that is not READY has none yet: the API's message says so.
async function showNearest(m) {
  const tbody = $("card-nearest").tBodies[0];
  const summary = $("card-nearest-summary");
  tbody.replaceChildren();
  summary.className = "";
  let answer;
  try {
    answer = await api(`/v1/models/${encodeURIComponent(m.id)}/nearest?k=5`);
  } catch (e) {
    summary.textContent = e.message;
    summary.className = "error";
    return;
  }
  for (const n of answer.nearest) {
    const row = tbody.insertRow();
    const link = document.createElement("a");
    link.href = "#model/" + encodeURIComponent(n.model.name + (n.model.version ? "@" + n.model.version : ""));
    link.textContent = n.model.name;
    row.insertCell().appendChild(link);
    cell(row, n.model.version || "-");
    cell(row, n.similarity.toFixed(4));
    cell(row, n.model.class_labels.slice(0, 6).join(", ") + (n.model.class_labels.length > 6 ? ", …" : "") || "-");
  }
  summary.textContent = answer.nearest.length === 0
    ? "No other READY model in this model's knowledge space."
    : "By the inner product of the knowledge vectors (stage 1's similarity), best first.";
}

// The model's outcome records (GET /v1/records?model=ID), newest first.
async function showRecords(id) {
  const tbody = $("card-records").tBodies[0];
  tbody.replaceChildren();
  const list = await api(`/v1/records?model=${encodeURIComponent(id)}&limit=20`);
  for (const r of list.records) {
    const row = tbody.insertRow();
    cell(row, r.accuracy.toFixed(4));
    cell(row, r.source);
    cell(row, r.query_id.slice(0, 12));
    cell(row, r.created);
  }
  $("card-records-summary").textContent = list.total_records === 0
    ? "No outcomes reported yet (report one from a row of an answer below)."
    : `${list.total_records} outcome${list.total_records === 1 ? "" : "s"} reported on ` +
      `${list.total_queries} dataset${list.total_queries === 1 ? "" : "s"}` +
      (list.records.length < list.total_records ? ` (newest ${list.records.length} shown).` : ".");
}

function route() {
  const match = location.hash.match(/^#model\/(.+)$/);
  if (match) showCard(decodeURIComponent(match[1])); else $("card").hidden = true;
}
window.addEventListener("hashchange", route);
$("card-close").addEventListener("click", () => { location.hash = ""; });

// ---- Ask the dock.
// The task a dataset file suggests, as the CLI decides it: JSON Lines, or CSV/TSV with a "text"
// column, are texts; other CSV is tabular; images, IDX and zipped image folders are images;
// NPY/NPZ arrays say nothing (images or tabular by their shape, unless audio is chosen).
async function taskOfFile(file) {
  const name = file.name.toLowerCase();
  if (name.endsWith(".jsonl")) return "text";
  if (name.endsWith(".csv") || name.endsWith(".tsv")) {
    const header = (await file.slice(0, 4096).text()).split(/\r?\n/)[0];
    const columns = header.split(/[,\t]/).map((c) => c.trim().replace(/^"(.*)"$/, "$1"));
    return columns.includes("text") ? "text" : "tabular";
  }
  if (/\.(npy|npz)(\.gz)?$/.test(name)) return "";
  return "image";
}
$("dataset").addEventListener("change", async () => {
  const file = $("dataset").files[0];
  if (file) $("task").value = await taskOfFile(file);
});

// The options part: top and metric, and the task when one is chosen.
function askOptions() {
  const options = { top: Number($("top").value), metric: $("metric").value };
  if ($("task").value) options.task = $("task").value;
  return options;
}

$("ask-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("dataset", $("dataset").files[0]);
  if ($("labels").files.length) form.append("labels", $("labels").files[0]);
  form.append("options", JSON.stringify(askOptions()));
  $("ask").disabled = true;
  $("ask-status").className = "";
  $("ask-status").textContent = "Ranking…";
  try {
    const answer = await api("/v1/recommend", { method: "POST", body: form });
    showAnswer(answer);
    const part = answer.num_samples_scored ? ` on ${answer.num_samples_scored} samples` : "";
    $("ask-status").textContent = `Scored ${answer.num_scored} of ${answer.num_compatible} compatible models${part}.`;
  } catch (e) {
    $("answer").hidden = true;
    $("ask-status").className = "error";
    $("ask-status").textContent = e.message;
  } finally {
    $("ask").disabled = false;
  }
});

function showAnswer(answer) {
  const tbody = $("ranking").tBodies[0];
  tbody.replaceChildren();
  for (const r of answer.results) {
    const row = tbody.insertRow();
    cell(row, String(r.rank));
    cell(row, r.name);
    cell(row, r.version || "-");
    cell(row, r.scored || answer.metric === "none" ? r.score.toFixed(4) : "-");
    cell(row, r.stage1_score === null ? "-" : r.stage1_score.toFixed(4));
    cell(row, r.stage1_rank > 0 ? String(r.stage1_rank) : "-");
    cell(row, r.reason, "reason");
    const report = document.createElement("button");
    report.type = "button";
    report.className = "report";
    report.textContent = "Report accuracy";
    report.addEventListener("click", () => reportOutcome(r.name + (r.version ? "@" + r.version : "")));
    row.insertCell().appendChild(report);
  }
  $("answer-mode").textContent = `Mode ${answer.mode}: ${answer.mode_reason}. Metric ${answer.metric}; labels ${answer.label_source}.`;
  drawChart(answer);
  const t = answer.timings;
  $("answer-timings").textContent =
    `Timings: receive ${t.receive_millis.toFixed(1)} ms, encode query ${t.encode_query_millis.toFixed(1)} ms, ` +
    `stage 1 ${t.stage1_millis.toFixed(1)} ms, stage 2 ${t.stage2_millis.toFixed(1)} ms, total ${t.total_millis.toFixed(1)} ms.`;
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([JSON.stringify(answer, null, 2)], { type: "application/json" }));
  $("answer").hidden = false;
}

// "I fine-tuned this model on this dataset and reached this accuracy": POST /v1/report with
// the dataset (and labels) of the question asked.
async function reportOutcome(model) {
  const answer = window.prompt(`Accuracy ${model} reached, fine-tuned on this dataset (0 to 1):`);
  if (answer === null) return;
  const form = new FormData();
  form.append("dataset", $("dataset").files[0]);
  if ($("labels").files.length) form.append("labels", $("labels").files[0]);
  const outcomes = { outcomes: [{ model, accuracy: Number(answer) }] };
  if ($("task").value) outcomes.task = $("task").value;
  form.append("outcomes", JSON.stringify(outcomes));
  const status = $("ask-status");
  try {
    const stored = await api("/v1/report", { method: "POST", body: form });
    status.className = "";
    status.textContent = `Reported ${model}: ${Number(answer)}; the dock holds ${stored.total_records} outcome records.`;
  } catch (e) {
    status.className = "error";
    status.textContent = e.message;
  }
}

// Two bars per model: its stage-1 and stage-2 scores, each scaled min..max over the answer
// (their scales differ). A score the answer does not have draws no bar.
function drawChart(answer) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const rowHeight = 34, labelWidth = 190, barWidth = 480;
  const scale = (values) => {
    const known = values.filter((v) => v !== null);
    const lo = Math.min(...known), hi = Math.max(...known);
    return values.map((v) => (v === null ? null : hi > lo ? 0.05 + 0.95 * (v - lo) / (hi - lo) : 1));
  };
  const s1 = scale(answer.results.map((r) => r.stage1_score));
  const s2 = scale(answer.results.map((r) => (r.scored ? r.stage2_score : null)));
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${labelWidth + barWidth + 10} ${rowHeight * answer.results.length + 4}`);
  answer.results.forEach((r, i) => {
    const y = i * rowHeight + 2;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 0);
    label.setAttribute("y", y + 20);
    label.textContent = `${r.rank}. ${r.name}`;
    svg.appendChild(label);
    [[s1[i], "bar-s1", 0, "stage 1"], [s2[i], "bar-s2", 15, "stage 2"]].forEach(([value, cls, dy, name]) => {
      if (value === null) return;
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("class", cls);
      bar.setAttribute("x", labelWidth);
      bar.setAttribute("y", y + dy);
      bar.setAttribute("height", 13);
      bar.setAttribute("width", (value * barWidth).toFixed(1));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${r.name}: ${name}`;
      bar.appendChild(title);
      svg.appendChild(bar);
    });
  });
}

// ---- Register a model: upload progress, then its state changes (server-sent events).
$("register-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("metadata", $("metadata").files[0]);
  form.append("model", $("model-file").files[0]);
  const progress = $("register-progress");
  const status = $("register-status");
  progress.hidden = false;
  progress.value = 0;
  status.className = "";
  status.textContent = "Uploading…";
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/models");
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = e.loaded / e.total; };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status !== 200) {
      status.className = "error";
      status.textContent = `${body.code || xhr.status}: ${body.message || xhr.statusText}`;
      return;
    }
    progress.value = 1;
    watchState(body.model);
  };
  xhr.onerror = () => { status.className = "error"; status.textContent = "upload failed"; };
  xhr.send(form);
});

// EventSource cannot send headers; with a key the state is polled instead.
function watchState(model) {
  const status = $("register-status");
  const ref = model.name + (model.version ? "@" + model.version : "");
  const show = (m) => {
    status.textContent = `${m.name}: ${m.state}${m.state_reason ? " (" + m.state_reason + ")" : ""}`;
    return m.state === "READY" || m.state === "FAILED";
  };
  show(model);
  if (!keyInput.value.trim()) {
    const events = new EventSource("/v1/models/" + encodeURIComponent(ref) + "/events");
    events.addEventListener("state", (e) => { if (show(JSON.parse(e.data).model)) { events.close(); loadModels(true); } });
    events.addEventListener("error", () => events.close());
    return;
  }
  const poll = async () => {
    try {
      if (show((await api("/v1/models/" + encodeURIComponent(ref))).model)) { loadModels(true); return; }
    } catch (e) { status.textContent = e.message; return; }
    setTimeout(poll, 1000);
  };
  poll();
}

loadModels(true);
route();
