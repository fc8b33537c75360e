// malvision web page. One file: POST it to /v1/explain and show the verdict, its band, the score with
// the threshold it was compared with, the byte plot and what drove the verdict. Several files, or a
// sample zip with its password: POST them to /v1/scan and show a sortable table; a row opens its
// explanation (a zip entry is explained by sending the zip again with the entry's name).
// Server data is only ever set through textContent and attributes, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let needKey = false;
let rows = []; // the table: {record, file, entry, password}
let sortKey = "score";
let sortDesc = true;
let latest = 0; // the request whose answer the page shows: an older one that answers late is dropped

const CAPTIONS = {
  feature:
    "Left: the file's byte plot (one byte, one gray pixel, row by row) with its PE sections and their " +
    "entropy; boxes mark the bytes a top feature is read from. Right: each top feature's push on the " +
    "malware log-odds against an average training file (red: up, blue: down).",
  byte:
    "Byte plot (one byte, one gray pixel, row by row) with the attribution heat map; dashed lines " +
    "are PE section starts with their entropy, green boxes the top ranges.",
  token:
    "Left: the file's byte plot. Right: attribution per opcode token of the sequence the model read.",
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

function cell(row, text, cls, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (title) td.title = title;
  row.appendChild(td);
  return td;
}

function scoreText(r) {
  if (r.score === null || r.score === undefined) return "–";
  const s = Number(r.score).toFixed(4);
  if (r.threshold === null || r.threshold === undefined) return s;
  const side = r.score >= r.threshold ? "at or above" : "below";
  return `${s}, threshold ${Number(r.threshold).toFixed(4)}: ${side}`;
}

async function errorText(resp) {
  if (resp.status === 401 && needKey) return "missing or wrong API key: enter it in the API key field above";
  try {
    const body = await resp.json();
    if (body && body.error) return body.error;
  } catch (e) {
    /* not JSON */
  }
  return `HTTP ${resp.status}`;
}

function unreachable(e) {
  $("model").textContent = "server not reachable";
  return `the server did not answer (${e.message}): is malvision serve still running?`;
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
    const bands = m.bands
      ? `, bands: suspicious from ${Number(m.bands.points["0.01"]).toFixed(4)} (1% FPR), ` +
        `malicious from ${Number(m.bands.points["0.001"]).toFixed(4)} (0.1% FPR)`
      : "";
    $("model").textContent =
      `model: ${m.model} (${m.file}), input ${what}, classes ${(m.classes || []).join(", ")}, ` +
      `threshold ${Number(m.threshold).toFixed(4)}${bands}, uploads up to ` +
      `${Math.round(m.limits.max_upload / 1048576)} MiB and ${m.limits.max_files} files a request`;
  } catch (e) {
    $("model").textContent = "server not reachable";
  }
}

function badge(el, text, cls) {
  el.textContent = text || "";
  el.className = "badge " + (cls || "");
  el.hidden = !text;
}

function renderVerdict(r) {
  $("file-name").textContent = r.path;
  badge($("verdict"), r.verdict, r.verdict);
  badge($("band"), r.band, "band-" + r.band);
  $("score").textContent = scoreText(r);
  $("family").textContent = r.family
    ? r.family + (r.family_score !== null ? ` (${Number(r.family_score).toFixed(2)})` : "")
    : "–";
  $("reason").textContent = r.reason || "–";
  $("sha256").textContent = r.sha256 || "–";
}

function renderFeatures(r) {
  const fbody = $("features").querySelector("tbody");
  fbody.replaceChildren();
  for (const f of r.features || []) {
    const tr = document.createElement("tr");
    cell(tr, String(f.rank));
    const name = cell(tr, f.label || f.name, "feature-name", f.description || "");
    name.dataset.feature = f.name;
    cell(tr, Number(f.value).toPrecision(4));
    cell(tr, Number(f.typical).toPrecision(4));
    cell(tr, (f.attribution > 0 ? "+" : "") + Number(f.attribution).toFixed(4));
    cell(tr, (100 * f.share).toFixed(1) + "%");
    cell(tr, f.span ? `${hex(f.span[0])}–${hex(f.span[1])}` : "whole file", "mono");
    const names = f.imports || [];
    cell(tr, names.slice(0, 4).join(", ") + (names.length > 4 ? ` +${names.length - 4} more` : ""), "mono");
    fbody.appendChild(tr);
  }
}

function renderRanges(r) {
  const unit = r.unit === "token" ? "token" : "byte";
  const body = $("ranges").querySelector("tbody");
  body.replaceChildren();
  for (const g of r.ranges || []) {
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
  if (!(r.ranges || []).length) {
    const tr = document.createElement("tr");
    cell(tr, "no positive attribution");
    tr.firstChild.colSpan = 7;
    body.appendChild(tr);
  }
}

function renderSections(r) {
  const sbody = $("sections").querySelector("tbody");
  sbody.replaceChildren();
  for (const s of r.sections || []) {
    const tr = document.createElement("tr");
    cell(tr, s.name);
    cell(tr, hex(s.start), "mono");
    cell(tr, hex(s.end), "mono");
    cell(tr, s.entropy.toFixed(2));
    sbody.appendChild(tr);
  }
  show("sections-box", (r.sections || []).length > 0);
}

function render(r) {
  renderVerdict(r);
  const explained = r.explained !== false;
  $("target").textContent = explained
    ? `${r.method}: what pushes the log-odds of "${r.target}" up or down; raw model probability of ` +
      `"${r.target}" ${Number(r.raw_probability).toPrecision(3)} (before calibration)`
    : "not explained";
  $("note").textContent = r.note || "";
  show("note", Boolean(r.note));
  show("picture", explained && Boolean(r.png));
  if (explained && r.png) {
    $("heatmap").src = r.png;
    $("heatmap").alt = "the file's byte plot with its sections and the model's attribution";
    $("caption").textContent = CAPTIONS[r.unit] || CAPTIONS.byte;
  }
  const byFeature = r.unit === "feature";
  show("feature-box", explained && (r.features || []).length > 0);
  show("range-box", explained && !byFeature);
  if (explained) {
    renderFeatures(r);
    renderRanges(r);
    renderSections(r);
  }
  show("result", true);
}

async function explain(file, entry, password) {
  const mine = ++latest;
  setError("");
  show("result", false);
  const label = entry ? `${file.name}!${entry}` : file.name;
  $("status").textContent = `analysing ${label} (${file.size.toLocaleString()} bytes)…`;
  const form = new FormData();
  form.append("file", file, file.name);
  if (entry) {
    form.append("entry", entry);
    form.append("zip_password", password); // the one the table was scanned with
  }
  try {
    const resp = await fetch("/v1/explain", { method: "POST", body: form, headers: headers() });
    const body = resp.ok ? await resp.json() : await errorText(resp);
    if (mine !== latest) return; // the user has asked for something else since
    const zipHint =
      !entry && /\.zip$/i.test(file.name)
        ? "; a .zip is judged as one file: enter the zip password to judge its entries"
        : "";
    $("status").textContent = resp.ok ? `done${zipHint}` : "";
    if (resp.ok) render(body);
    else setError(`${label}: ${body}`);
  } catch (e) {
    if (mine !== latest) return;
    $("status").textContent = "";
    setError(`${label}: ${unreachable(e)}`);
  }
}

function sortValue(row, key) {
  const r = row.record;
  if (key === "band") return r.band ? ["clean", "suspicious", "malicious"].indexOf(r.band) : null;
  const v = r[key];
  return v === undefined ? null : v;
}

function renderTable() {
  const body = $("scan-table").querySelector("tbody");
  body.replaceChildren();
  const sorted = rows.slice().sort((a, b) => {
    const x = sortValue(a, sortKey);
    const y = sortValue(b, sortKey);
    if (x === null || y === null) return (x === null) - (y === null); // rows without one last, either way
    const c = x < y ? -1 : x > y ? 1 : 0;
    return sortDesc ? -c : c;
  });
  for (const row of sorted) {
    const r = row.record;
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    cell(tr, r.path, "mono path");
    if (r.error) {
      cell(tr, "error", "error-cell");
      const td = cell(tr, r.error);
      td.colSpan = 5;
    } else {
      const v = cell(tr, "");
      const b = document.createElement("span");
      badge(b, r.verdict, r.verdict);
      v.appendChild(b);
      const bd = cell(tr, "");
      if (r.band) {
        const s = document.createElement("span");
        badge(s, r.band, "band-" + r.band);
        bd.appendChild(s);
      }
      cell(tr, r.score === null ? "–" : Number(r.score).toFixed(4), "num", scoreText(r));
      cell(tr, r.family || "–");
      cell(tr, r.size === null ? "–" : Number(r.size).toLocaleString(), "num");
      cell(tr, r.sha256 || "–", "mono sha");
      const open = () => explain(row.file, row.entry, row.password);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault(); // Space opens the row, as on a button, instead of scrolling
          open();
        }
      });
      tr.className = "clickable";
      tr.setAttribute("role", "button");
      tr.setAttribute("aria-label", `explain ${r.path}`);
    }
    body.appendChild(tr);
  }
  for (const th of $("scan-table").querySelectorAll("th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDesc ? "descending" : "ascending") : "none");
  }
  const n = rows.filter((x) => !x.record.error);
  const found = n.filter((x) => x.record.verdict === "malware").length;
  $("table-summary").textContent =
    `${rows.length} file(s): ${found} malware, ${n.filter((x) => x.record.verdict === "benign").length} benign, ` +
    `${n.filter((x) => x.record.verdict === "unknown").length} unknown, ${rows.length - n.length} error(s). ` +
    "Click a row for its explanation.";
  show("table-box", true);
}

async function scanMany(files) {
  const mine = ++latest;
  setError("");
  show("result", false);
  show("table-box", false);
  const password = $("zip-password").value;
  $("status").textContent = `scanning ${files.length} file(s)…`;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  if (password) form.append("zip_password", password);
  try {
    const resp = await fetch("/v1/scan", { method: "POST", body: form, headers: headers() });
    const body = resp.ok ? await resp.json() : await errorText(resp);
    if (mine !== latest) return; // the user has asked for something else since
    if (!resp.ok) {
      $("status").textContent = "";
      setError(body);
      return;
    }
    // Each record names its upload by place (names may repeat, and the server shortens and cleans them).
    rows = body.map((record) => ({ record, file: files[record.upload], entry: record.entry || null, password }));
    renderTable();
    const zips = files.filter((f) => /\.zip$/i.test(f.name));
    $("status").textContent =
      zips.length && !password
        ? `done; ${zips.length} .zip file(s) judged as one file each: enter the zip password to judge their entries`
        : "done";
  } catch (e) {
    if (mine !== latest) return;
    $("status").textContent = "";
    setError(unreachable(e));
  }
}

function send(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const zipped = files.some((f) => /\.zip$/i.test(f.name)) && $("zip-password").value;
  if (files.length === 1 && !zipped) {
    show("table-box", false);
    explain(files[0], null);
  } else {
    scanMany(files);
  }
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => {
    const files = Array.from(ev.target.files);
    ev.target.value = ""; // the next pick starts afresh (and the same file can be picked again)
    send(files);
  });
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
    if (ev.dataTransfer && ev.dataTransfer.files.length) send(ev.dataTransfer.files);
  });
  drop.addEventListener("keydown", (ev) => {
    // The drop zone itself, not the password field or the file input inside it (they keep their keys).
    if (ev.target === drop && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      $("file").click();
    }
  });
  for (const th of $("scan-table").querySelectorAll("th[data-key]")) {
    const sortBy = () => {
      sortDesc = th.dataset.key === sortKey ? !sortDesc : th.dataset.key === "score";
      sortKey = th.dataset.key;
      renderTable();
    };
    th.tabIndex = 0;
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        sortBy();
      }
    });
  }
  $("api-key").addEventListener("change", loadModel);
  loadModel();
}

document.addEventListener("DOMContentLoaded", setup);
