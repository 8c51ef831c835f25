// searchlib's page: a search box, a grid of thumbnails, a viewer. Plain JS, no build step.
// The URL holds the state (?q=..., ?like=ID, filters), so a search can be bookmarked or shared.
"use strict";

const API = "/api/v1";
const PAGE = 60;
const $ = (id) => document.getElementById(id);
const FILTERS = { in: "f-in", after: "f-after", before: "f-before", camera: "f-camera" };

const state = { q: "", like: null, relevant: false, filters: {}, upload: null, hits: [], next: null, loading: false, selected: -1,
  generation: null };

function readUrl() {
  const params = new URLSearchParams(location.search);
  state.q = params.get("q") || "";
  state.like = params.get("like");
  state.relevant = params.get("relevant") === "1";
  $("relevant").checked = state.relevant;
  state.filters = {};
  for (const key of Object.keys(FILTERS)) {
    const value = params.get(key);
    if (value) state.filters[key] = value;
    $(FILTERS[key]).value = value || "";
  }
  if (Object.keys(state.filters).length) $("filters").open = true;
  $("q").value = state.q;
}

function writeUrl(push) {
  const params = new URLSearchParams();
  if (state.like) params.set("like", state.like);
  else if (state.q) params.set("q", state.q);
  if (state.relevant) params.set("relevant", "1");
  for (const [key, value] of Object.entries(state.filters)) params.set(key, value);
  const url = params.toString() ? `/?${params}` : "/";
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

function notice(html, error) {
  const box = $("notice");
  box.hidden = !html;
  box.className = error ? "error" : "";
  box.innerHTML = html || "";
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function searchUrl(offset) {
  const params = new URLSearchParams({ k: PAGE, offset });
  for (const [key, value] of Object.entries(state.filters)) params.set(key, value);
  if (state.like) {
    if (state.q) params.set("q", state.q);
    return `${API}/images/${encodeURIComponent(state.like)}/similar?${params}`;
  }
  params.set("q", state.q);
  if (state.relevant) params.set("relevant", "true");  // judged for text queries only
  return `${API}/search?${params}`;
}

async function fetchPage(offset) {
  if (state.upload) {
    const form = new FormData();
    form.append("image", state.upload, state.upload.name || "pasted-image");
    if (state.q) form.append("q", state.q);
    const params = new URLSearchParams({ k: PAGE, offset });
    for (const [key, value] of Object.entries(state.filters)) params.set(key, value);
    return api(`${API}/search?${params}`, { method: "POST", body: form });
  }
  return api(searchUrl(offset));
}

async function run(reset) {
  if (!state.q && !state.like && !state.upload) { clearResults(); return; }
  if (state.loading) return;
  state.loading = true;
  const offset = reset ? 0 : state.next;
  if (reset) clearResults();
  $("status").textContent = "searching…";
  try {
    const page = await fetchPage(offset);
    state.generation = page.generation;
    state.next = page.next_offset;
    appendHits(page.hits);
    // A query the model cannot read (e.g. Chinese for an English-only model) says so.
    notice((page.warnings || []).map(escapeHtml).join("<br>"));
    const what = state.upload ? "like the dropped image" : state.like ? `like image ${state.like}` : `for “${state.q}”`;
    const textual = !state.upload && !state.like;
    $("status").textContent = state.hits.length
      ? `${state.hits.length} photos ${what} (${page.took_ms} ms)`
      : state.relevant && textual ? `nothing relevant ${what}` : `no photos ${what}`;
  } catch (error) {
    $("status").textContent = "";
    notice(escapeHtml(error.message), true);
  } finally {
    state.loading = false;
    $("more").hidden = state.next == null;
  }
}

function clearResults() {
  state.hits = [];
  state.next = null;
  state.selected = -1;
  $("grid").innerHTML = "";
  $("more").hidden = true;
  $("status").textContent = "";
}

function fileName(path) {
  return path.split("/").pop();
}

function appendHits(hits) {
  const grid = $("grid");
  const start = state.hits.length;
  const fragment = document.createDocumentFragment();
  hits.forEach((hit, i) => {
    state.hits.push(hit);
    const li = document.createElement("li");
    const tile = document.createElement("button");
    tile.className = "tile";
    tile.type = "button";
    tile.dataset.index = String(start + i);
    tile.dataset.id = String(hit.id);
    tile.dataset.path = hit.path;
    tile.title = `${hit.path}\nscore ${hit.score.toFixed(3)}`;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = fileName(hit.path);
    img.src = hit.thumbnail_url;
    tile.appendChild(img);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    tile.appendChild(score);
    if (hit.relevance != null) {
      const rel = document.createElement("span");
      rel.className = "rel";
      rel.textContent = `${Math.round(100 * hit.relevance)}%`;
      rel.title = "how likely this matches the query (calibrated across queries)";
      tile.appendChild(rel);
    }
    tile.addEventListener("click", () => openViewer(start + i));
    tile.addEventListener("focus", () => { state.selected = start + i; });
    li.appendChild(tile);
    fragment.appendChild(li);
  });
  grid.appendChild(fragment);
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function openViewer(index) {
  const hit = state.hits[index];
  if (!hit) return;
  state.selected = index;
  $("big").src = `${API}/images/${hit.id}/thumbnail?size=1024`;
  $("big").alt = fileName(hit.path);
  $("viewer-title").textContent = fileName(hit.path);
  $("open-file").href = hit.file_url;
  const camera = [hit.camera_make, hit.camera_model].filter(Boolean).join(" ");
  const rows = [
    ["date", hit.date ? `${hit.date.replace("T", " ")} (${hit.date_source === "exif" ? "EXIF, when taken" : "file time"})` : ""],
    ["camera", camera],
    ["pixels", `${hit.width} × ${hit.height}`],
    ["file size", formatBytes(hit.size)],
    ["format", hit.format || ""],
    ["path", hit.path],
    ["place", hit.place ? [hit.place.city, hit.place.region, hit.place.country].filter(Boolean)
      .filter((v, i, all) => all.indexOf(v) === i).join(", ") : ""],
    ["copies", (hit.duplicates || []).length ? `${hit.duplicates.length} more (ids ${hit.duplicates.join(", ")})` : ""],
    ["GPS", hit.gps_lat != null && hit.gps_lon != null ? `${hit.gps_lat.toFixed(5)}, ${hit.gps_lon.toFixed(5)}` : ""],
    ["score", hit.score.toFixed(4)],
    ["relevance", hit.relevance != null ? `${Math.round(100 * hit.relevance)}%` : ""],
    ["tags", (hit.tags || []).join(", ")],
    ["id", hit.id],
  ];
  $("meta").innerHTML = rows.filter(([, v]) => v !== "" && v != null)
    .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join("");
  $("viewer").hidden = false;
  $("similar").focus();
}

function closeViewer() {
  $("viewer").hidden = true;
  const tile = document.querySelector(`.tile[data-index="${state.selected}"]`);
  if (tile) tile.focus();
}

function moreLikeThis() {
  const hit = state.hits[state.selected];
  if (!hit) return;
  $("viewer").hidden = true;
  state.like = String(hit.id);
  state.q = "";
  state.upload = null;
  $("q").value = "";
  writeUrl(true);
  run(true);
}

function searchText(event) {
  if (event) event.preventDefault();
  state.q = $("q").value.trim();
  state.like = null;
  state.upload = null;
  writeUrl(true);
  run(true);
}

function applyFilters() {
  state.filters = {};
  for (const [key, id] of Object.entries(FILTERS)) {
    const value = $(id).value.trim();
    if (value) state.filters[key] = value;
  }
  writeUrl(true);
  run(true);
}

function searchImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    notice("that is not an image file", true);
    return;
  }
  state.upload = file;
  state.like = null;
  state.q = $("q").value.trim();
  writeUrl(true);
  run(true);
}

function moveSelection(delta) {
  const tiles = document.querySelectorAll(".tile");
  if (!tiles.length) return;
  const next = Math.max(0, Math.min(tiles.length - 1, (state.selected < 0 ? -delta : state.selected) + delta));
  tiles[next].focus();
  tiles[next].scrollIntoView({ block: "nearest" });
}

function columns() {
  const tiles = document.querySelectorAll(".tile");
  if (tiles.length < 2) return 1;
  const top = tiles[0].getBoundingClientRect().top;
  let n = 0;
  for (const t of tiles) { if (t.getBoundingClientRect().top !== top) break; n += 1; }
  return Math.max(1, n);
}

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (!$("viewer").hidden) {
    if (event.key === "Escape") { closeViewer(); event.preventDefault(); }
    else if (event.key === "ArrowRight") { openViewer(Math.min(state.hits.length - 1, state.selected + 1)); event.preventDefault(); }
    else if (event.key === "ArrowLeft") { openViewer(Math.max(0, state.selected - 1)); event.preventDefault(); }
    else if (event.key === "m") { moreLikeThis(); event.preventDefault(); }
    return;
  }
  if (event.key === "/" && !typing) { $("q").focus(); $("q").select(); event.preventDefault(); return; }
  if (typing) return;
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
  if (event.key in moves) { moveSelection(moves[event.key]); event.preventDefault(); }
  else if (event.key === "m" && state.selected >= 0) { moreLikeThis(); }
});

document.addEventListener("dragover", (event) => { event.preventDefault(); $("dropzone").hidden = false; });
document.addEventListener("dragleave", (event) => { if (!event.relatedTarget) $("dropzone").hidden = true; });
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("dropzone").hidden = true;
  const file = event.dataTransfer && event.dataTransfer.files[0];
  searchImage(file);
});
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData ? event.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
  if (item) { event.preventDefault(); searchImage(item.getAsFile()); }
});

$("search-form").addEventListener("submit", searchText);
$("relevant").addEventListener("change", () => {
  state.relevant = $("relevant").checked;
  writeUrl(true);
  if (!state.upload && !state.like) run(true);
});
$("apply-filters").addEventListener("click", applyFilters);
$("clear-filters").addEventListener("click", () => {
  for (const id of Object.values(FILTERS)) $(id).value = "";
  applyFilters();
});
$("more").addEventListener("click", () => run(false));
$("similar").addEventListener("click", moreLikeThis);
$("close").addEventListener("click", closeViewer);
$("viewer").addEventListener("click", (event) => { if (event.target === $("viewer")) closeViewer(); });
window.addEventListener("popstate", () => { readUrl(); state.upload = null; run(true); });

new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting) && state.next != null && !state.loading) run(false);
}, { rootMargin: "600px" }).observe($("sentinel"));

async function checkIndex() {
  try {
    const info = await api(`${API}/info`);
    if (info.empty) {
      notice("No photos are indexed here yet. Index a folder, e.g. <code>searchlib index ~/Pictures</code>; " +
        "this page shows them as they are added, no restart needed.");
    } else if (state.generation != null && info.generation !== state.generation && (state.q || state.like)) {
      notice(`${info.images} photos are indexed now; <a href="">search again</a> to include the new ones.`);
    } else if ($("notice").className !== "error") {
      notice("");
    }
    return info;
  } catch (error) {
    notice(escapeHtml(error.message), true);
    return null;
  }
}

async function start() {
  readUrl();
  if (new URLSearchParams(location.search).has("token")) writeUrl(false);  // the cookie carries it now
  const info = await checkIndex();
  if (info && !info.empty) run(true);
  setInterval(checkIndex, 5000);
}

start();
