// The page of `epaiqa app` / `epaiqa serve`: upload two images (or pick a sample of the server's root), score them
// with POST /score, show the scores, level words, the region on the edited image and the explanation, if any.
// No external scripts or fonts: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const SHOWN = new Set(["model", "task", "score", "level", "score_1_5", "reward", "bbox", "bbox_source", "run",
  "dimensions", "explanation", "stage", "lineage"]);
let samples = [];
let editedUrl = null;

function headers(extra) {
  const out = Object.assign({}, extra || {});
  const key = $("key").value.trim();
  if (key) out["X-API-Key"] = key;
  return out;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (Array.isArray(value)) return value.map(fmt).join(", ");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${fmt(v)}`).join("; ");
  return String(value);
}

async function getJSON(path) {
  const reply = await fetch(path, { headers: headers() });
  const body = await reply.json().catch(() => ({ error: `HTTP ${reply.status}`, field: null }));
  return { ok: reply.ok, status: reply.status, body };
}

async function loadInfo() {
  const info = await getJSON("/info");
  if (info.status === 401) {
    $("key-row").hidden = false;
    $("model").textContent = "this server asks for its API key: type it below, then score";
    return false;
  }
  if (!info.ok) {
    $("model").textContent = `cannot read /info: ${info.body.error}`;
    return false;
  }
  const m = info.body;
  const dims = m.dimensions.length ? m.dimensions.join(", ") : "the edited region only";
  $("model").textContent = `${m.model} (${m.kind}${m.stage ? ", stage " + m.stage : ""}) — scores ${dims}`;
  return true;
}

async function loadSamples() {
  const found = await getJSON("/samples");
  if (!found.ok || !found.body.samples || !found.body.samples.length) return;
  samples = found.body.samples;
  const select = $("sample");
  samples.forEach((s, i) => {
    const option = document.createElement("option");
    option.value = String(i);
    option.textContent = `${s.id} — ${s.prompt.slice(0, 60)}`;
    select.appendChild(option);
  });
  $("demo-set").hidden = false;
}

function drawImage(url, bbox) {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const img = new Image();
  img.onload = () => {
    const scale = Math.min(720 / img.naturalWidth, 480 / img.naturalHeight);  // small images are shown larger
    canvas.width = Math.round(img.naturalWidth * scale);
    canvas.height = Math.round(img.naturalHeight * scale);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    if (bbox) {
      const [cx, cy, w, h] = bbox;
      ctx.lineWidth = Math.max(2, canvas.width / 160);
      ctx.strokeStyle = "#ff2d55";
      ctx.setLineDash([8, 4]);
      ctx.strokeRect((cx - w / 2) * canvas.width, (cy - h / 2) * canvas.height, w * canvas.width, h * canvas.height);
    }
  };
  img.onerror = () => showError("the edited image cannot be shown in this browser (it was still sent to the server)");
  img.src = url;
}

async function setEditedFromSample(sample) {
  const reply = await fetch("/files/" + sample.edited.split("/").map(encodeURIComponent).join("/"), { headers: headers() });
  if (!reply.ok) return;
  if (editedUrl) URL.revokeObjectURL(editedUrl);
  editedUrl = URL.createObjectURL(await reply.blob());
  drawImage(editedUrl, null);
}

function setEditedFromFile(file) {
  if (editedUrl) URL.revokeObjectURL(editedUrl);
  editedUrl = URL.createObjectURL(file);
  drawImage(editedUrl, null);
}

function parseBox(text) {
  if (!text.trim()) return null;
  const values = text.replace(/[[\]]/g, "").split(/[\s,]+/).filter(Boolean).map(Number);
  if (values.length !== 4 || values.some((v) => !Number.isFinite(v))) {
    throw new Error("bbox: type four numbers cx, cy, w, h in [0, 1], or leave it empty");
  }
  return values;
}

function render(result) {
  const body = $("scores").querySelector("tbody");
  body.replaceChildren();
  for (const [name, dim] of Object.entries(result.dimensions || {})) {
    const row = document.createElement("tr");
    // a rated dimension has a level word; the prompt-completion verdict has a level 1..3 and its words
    const level = typeof dim.level === "string" ? dim.level : (dim.verdict || fmt(dim.level));
    row.innerHTML = `<td></td><td class="num"></td><td class="num"></td><td class="num"></td><td><span class="level"></span></td>`;
    row.children[0].textContent = name;
    row.children[1].textContent = fmt(dim.score);
    row.children[2].textContent = fmt(dim.score_1_5);
    row.children[3].textContent = fmt(dim.reward);
    const badge = row.children[4].firstChild;
    badge.textContent = level;
    if (typeof dim.level === "string") badge.classList.add(dim.level);
    body.appendChild(row);
  }
  const box = result.bbox || [];
  $("region").textContent = `region scored (cx, cy, w, h): ${box.map((v) => v.toFixed(3)).join(", ")} — ${result.bbox_source}`;
  const extra = $("extra");
  extra.replaceChildren();
  for (const [key, value] of Object.entries(result)) {
    if (SHOWN.has(key) || (result.dimensions && key in result.dimensions)) continue;
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = key;
    dd.textContent = fmt(value);
    extra.append(dt, dd);
  }
  const explained = typeof result.explanation === "string" && result.explanation.length > 0;
  $("explanation-box").hidden = !explained;
  $("explanation").textContent = explained ? result.explanation : "";
  $("result").hidden = false;
  if (editedUrl) drawImage(editedUrl, box.length === 4 ? box : null);
}

async function submit(event) {
  event.preventDefault();
  showError("");
  let request;
  try {
    const bbox = parseBox($("bbox").value);
    const prompt = $("prompt").value;
    const pick = $("sample").value;
    if (pick !== "") {
      const s = samples[Number(pick)];
      const item = { source: s.source, edited: s.edited, prompt };
      if (bbox) item.bbox = bbox;
      request = { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(item) };
    } else {
      const source = $("source").files[0];
      const edited = $("edited").files[0];
      if (!source || !edited) throw new Error("choose a source and an edited image (or a sample of the root)");
      const form = new FormData();
      form.append("source", source);
      form.append("edited", edited);
      form.append("prompt", prompt);
      if (bbox) form.append("bbox", JSON.stringify(bbox));
      request = { method: "POST", headers: headers(), body: form };
    }
  } catch (problem) {
    showError(problem.message);
    return;
  }
  $("submit").disabled = true;
  $("status").textContent = "scoring…";
  const start = performance.now();
  try {
    const reply = await fetch("/score", request);
    const body = await reply.json().catch(() => ({ error: `HTTP ${reply.status}`, field: null }));
    if (!reply.ok) {
      if (reply.status === 401) $("key-row").hidden = false;
      showError(body.field ? `${body.field}: ${body.error}` : body.error);
      $("status").textContent = "";
      return;
    }
    render(body.results[0]);
    $("status").textContent = `scored in ${Math.round(performance.now() - start)} ms`;
  } catch (problem) {
    showError(`the server did not answer (${problem.message})`);
    $("status").textContent = "";
  } finally {
    $("submit").disabled = false;
  }
}

$("form").addEventListener("submit", submit);
$("edited").addEventListener("change", () => { if ($("edited").files[0]) setEditedFromFile($("edited").files[0]); });
$("sample").addEventListener("change", () => {
  const pick = $("sample").value;
  $("upload-set").disabled = pick !== "";
  if (pick === "") return;
  const s = samples[Number(pick)];
  $("prompt").value = s.prompt;
  setEditedFromSample(s);
});
$("key").addEventListener("change", async () => { if (await loadInfo()) loadSamples(); });
loadInfo().then((ok) => { if (ok) loadSamples(); });
