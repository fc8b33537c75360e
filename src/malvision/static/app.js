// malvision web page: pick or drop one file, POST it to /v1/explain, show the answer: byte ranges
// for image and sequence models, named PE features for a features model.
// Server data is only ever set through textContent and attributes, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let needKey = false;
const CAPTIONS = {
  feature:
    "Attribution of each PE feature to the class explained, against an average training file " +
    "(red: for it, blue: against).",
  byte:
    "Byte plot (one byte, one gray pixel, row by row) with the attribution heat map; dashed lines " +
    "are PE section starts, green boxes the top ranges.",
};

function headers() {
  const key = $("api-key").value.trim();
  return needKey && key ? { "X-API-Key": key } : {};
}

function show(id, on) {
  $(id).hidden = !on;
}

function setError(msg) {
  $("error").textContent = msg || "";
  show("error", Boolean(msg));
}

function hex(n) {
  return n === null || n === undefined ? "" : "0x" + Number(n).toString(16);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return body.error;
  } catch (e) {
    /* not JSON */
  }
  return `HTTP ${resp.status}`;
}

async function loadModel() {
  try {
    const health = await (await fetch("/healthz")).json();
    needKey = Boolean(health.auth);
    show("key-box", needKey);
    const resp = await fetch("/v1/model", { headers: headers() });
    if (!resp.ok) {
      $("model").textContent = `model: ${health.model} (${await errorText(resp)})`;
      return;
    }
    const m = await resp.json();
    const input = m.input || {};
    const what = input.kind === "image" ? `${input.kind} ${input.image_size}x${input.image_size}` : input.kind;
    $("model").textContent =
      `model: ${m.model} (${m.file}), input ${what}, classes ${(m.classes || []).join(", ")}, ` +
      `threshold ${Number(m.threshold).toFixed(3)}, uploads up to ${Math.round(m.limits.max_upload / 1048576)} MiB`;
  } catch (e) {
    $("model").textContent = "server not reachable";
  }
}

function renderVerdict(r) {
  $("file-name").textContent = r.path;
  const v = $("verdict");
  v.textContent = r.verdict;
  v.className = "badge " + r.verdict;
  $("score").textContent = r.score === null ? "–" : Number(r.score).toFixed(4);
  $("family").textContent = r.family
    ? r.family + (r.family_score !== null ? ` (${Number(r.family_score).toFixed(2)})` : "")
    : "–";
  $("reason").textContent = r.reason || "–";
  $("sha256").textContent = r.sha256 || "–";
}

function render(r) {
  renderVerdict(r);
  $("target").textContent =
    `${r.method} for class "${r.target}" (model probability ${Number(r.target_probability).toFixed(3)})`;
  $("note").textContent = r.note || "";
  show("note", Boolean(r.note));
  $("heatmap").src = r.png;
  $("heatmap").alt =
    r.unit === "feature" ? "bar chart of feature attributions" : "byte plot with the attribution heat map";
  const byFeature = r.unit === "feature";
  $("caption").textContent = byFeature ? CAPTIONS.feature : CAPTIONS.byte;
  show("feature-box", byFeature);
  show("range-box", !byFeature);
  const fbody = $("features").querySelector("tbody");
  fbody.replaceChildren();
  for (const f of r.features || []) {
    const tr = document.createElement("tr");
    cell(tr, String(f.rank));
    cell(tr, f.name, "mono");
    cell(tr, Number(f.value).toPrecision(4));
    cell(tr, Number(f.typical).toPrecision(4));
    cell(tr, (f.attribution > 0 ? "+" : "") + Number(f.attribution).toFixed(4));
    cell(tr, (100 * f.share).toFixed(1) + "%");
    const names = f.imports || [];
    cell(tr, names.slice(0, 4).join(", ") + (names.length > 4 ? ` +${names.length - 4} more` : ""), "mono");
    fbody.appendChild(tr);
  }

  const unit = r.unit === "token" ? "token" : "byte";
  const body = $("ranges").querySelector("tbody");
  body.replaceChildren();
  for (const g of r.ranges) {
    const tr = document.createElement("tr");
    cell(tr, String(g.rank));
    cell(tr, unit === "byte" ? hex(g.start) : String(g.start), "mono");
    cell(tr, unit === "byte" ? hex(g.end) : String(g.end), "mono");
    cell(tr, `${g.length} ${unit}s`);
    cell(tr, (100 * g.share).toFixed(1) + "%");
    cell(tr, g.sections && g.sections.length ? g.sections.join(" + ") : "–");
    cell(tr, g.section_entropy === null || g.section_entropy === undefined ? "–" : g.section_entropy.toFixed(2));
    body.appendChild(tr);
  }
  if (!r.ranges.length) {
    const tr = document.createElement("tr");
    cell(tr, "no positive attribution");
    tr.firstChild.colSpan = 7;
    body.appendChild(tr);
  }
  const sbody = $("sections").querySelector("tbody");
  sbody.replaceChildren();
  for (const s of r.sections) {
    const tr = document.createElement("tr");
    cell(tr, s.name);
    cell(tr, hex(s.start), "mono");
    cell(tr, hex(s.end), "mono");
    cell(tr, s.entropy.toFixed(2));
    sbody.appendChild(tr);
  }
  show("sections", r.sections.length > 0);
  show("result", true);
}

async function send(file) {
  if (!file) return;
  setError("");
  show("result", false);
  $("status").textContent = `analysing ${file.name} (${file.size.toLocaleString()} bytes)…`;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const resp = await fetch("/v1/explain", { method: "POST", body: form, headers: headers() });
    if (!resp.ok) {
      $("status").textContent = "";
      setError(`${file.name}: ${await errorText(resp)}`);
      return;
    }
    render(await resp.json());
    $("status").textContent = "done";
  } catch (e) {
    $("status").textContent = "";
    setError(`${file.name}: request failed (${e.message})`);
  }
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => send(ev.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer && ev.dataTransfer.files.length) send(ev.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") $("file").click();
  });
  $("api-key").addEventListener("change", loadModel);
  loadModel();
}

document.addEventListener("DOMContentLoaded", setup);
