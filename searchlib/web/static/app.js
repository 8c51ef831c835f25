// searchlib's page: a search box, a grid of thumbnails, a viewer. Plain JS, no build step.
// The URL holds the state (?q=..., ?like=ID, filters), so a search can be bookmarked or shared.
"use strict";

const API = "/api/v1";
const PAGE = 60;
const $ = (id) => document.getElementById(id);
// The panel's fields by API parameter. Selects ("sort", "media") give no value for their first option,
// "collapse" (a checkbox) gives "true" or nothing. The order and "Hide copies" keep "Only relevant" as it is.
const FILTERS = { in: "f-in", after: "f-after", before: "f-before", camera: "f-camera", place: "f-place",
  text: "f-text", media: "f-media", sort: "f-sort", collapse: "f-collapse" };
const FILTER_NAMES = { in: "folder", after: "after", before: "before", camera: "camera", place: "place",
  text: "words", media: "only", sort: "order", collapse: "hiding copies" };

function fieldValue(id) {
  const field = $(id);
  if (field.type === "checkbox") return field.checked ? "true" : "";
  const value = field.value.trim();
  return field.tagName === "SELECT" && value === field.options[0].value ? "" : value;
}

function setField(id, value) {
  const field = $(id);
  if (field.type === "checkbox") field.checked = value === "true";
  else if (field.tagName === "SELECT") field.value = [...field.options].some((o) => o.value === value) ? value : field.options[0].value;
  else field.value = value || "";
}
// Thumbnail sizes the server offers (searchlib/thumbnails.py SIZES); the browser picks from them by
// the tile's width and the screen's pixel density, so a phone's small tiles get small thumbnails.
const TILE_SIZES = [128, 256, 512];
const BIG_SIZES = [512, 1024];
const CLOSEST = 12;  // how many photos the "nothing relevant" state shows anyway

const state = { q: "", like: null, relevant: false, filters: {}, upload: null, hits: [], next: null, loading: false, selected: -1,
  generation: null, opener: null, skipPop: false };

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
    setField(FILTERS[key], value || "");
  }
  showFilterCount();
  $("q").value = state.q;
}

// The filters panel drops down over the results, so it stays closed; its label counts the active ones.
function showFilterCount() {
  const n = Object.keys(state.filters).length;
  $("filters").querySelector("summary").textContent = n ? `Filters (${n})` : "Filters";
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

function searchUrl(offset, k = PAGE, relevant = state.relevant) {
  const params = new URLSearchParams({ k, offset });
  for (const [key, value] of Object.entries(state.filters)) params.set(key, value);
  if (state.like) {
    if (state.q) params.set("q", state.q);
    return `${API}/images/${encodeURIComponent(state.like)}/similar?${params}`;
  }
  params.set("q", state.q);
  if (relevant) params.set("relevant", "true");  // judged for text queries only
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
    const nothingRelevant = !state.hits.length && state.relevant && textual;
    $("status").textContent = state.hits.length
      ? `${state.hits.length} photos ${what} (${page.took_ms} ms)`
      : nothingRelevant ? `nothing relevant ${what}` : `no photos ${what}`;
    if (!state.hits.length) await showEmpty(nothingRelevant, what);
  } catch (error) {
    $("status").textContent = "";
    notice(escapeHtml(error.message), true);
  } finally {
    state.loading = false;
    $("more").hidden = state.next == null;
    if (!$("viewer").hidden) showPosition();  // a page loaded behind the viewer
  }
}

function clearResults() {
  state.hits = [];
  state.next = null;
  state.selected = -1;
  $("grid").innerHTML = "";
  $("grid").setAttribute("aria-label", "Results");
  $("more").hidden = true;
  $("status").textContent = "";
  $("empty").hidden = true;
  $("hint").hidden = Boolean(state.q || state.like || state.upload);
}

// Nothing to show: say so in the page, say what to try, and when the relevance cut hid everything,
// show the closest photos anyway (under a heading that says they are not relevant).
async function showEmpty(nothingRelevant, what) {
  const filters = Object.entries(state.filters).filter(([k]) => k !== "sort" && k !== "collapse").map(([k, v]) => `${FILTER_NAMES[k]} ${v}`);
  let title, advice;
  if (nothingRelevant) {
    title = `Nothing relevant ${what}`;
    advice = "No photo looks likely to match. Try other words: say what is in the photo (things, colours, " +
      "the place, the light), or show all photos for this search, best first.";
  } else if (filters.length) {
    title = `No photos ${what} match the filters`;
    advice = `Filters: ${filters.join(", ")}. Clear them or widen them (a parent folder, a wider date range).`;
  } else if (state.like) {
    title = `No photos like image ${state.like}`;
    advice = "That image may have been removed from the index. Search with words instead.";
  } else {
    title = `No photos ${what}`;
    advice = "Nothing is indexed here yet. Index a folder, e.g. searchlib index ~/Pictures; " +
      "this page shows the photos as they are added.";
  }
  $("empty-title").textContent = title;
  $("empty-advice").textContent = advice;
  $("show-anyway").hidden = !nothingRelevant;
  $("empty-clear-filters").hidden = !filters.length;
  $("closest-title").hidden = true;
  $("empty").hidden = false;
  if (!nothingRelevant) return;
  const closest = await api(searchUrl(0, CLOSEST, false));
  if (state.hits.length) return;  // another search has started meanwhile
  if (closest.hits.length) {
    $("closest-title").hidden = false;
    $("grid").setAttribute("aria-label", "Closest photos, not relevant");
    appendHits(closest.hits);
  }
}

function showAnyway() {
  state.relevant = false;
  $("relevant").checked = false;
  writeUrl(true);
  run(true);
}

function fileName(path) {
  return path.split("/").pop();
}

function thumbnailUrl(id, size) {
  return `${API}/images/${encodeURIComponent(id)}/thumbnail?size=${size}`;
}

function srcset(id, sizes) {
  return sizes.map((size) => `${thumbnailUrl(id, size)} ${size}w`).join(", ");
}

// The alt text: the file name. (When searchlib reads the text in images, that text belongs here too.)
function altText(hit) {
  return fileName(hit.path);
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
    img.alt = altText(hit);
    // "auto" sizes a lazy image by its laid-out tile; the rest is for browsers without it.
    img.sizes = "auto, (max-width: 700px) 34vw, 240px";
    img.srcset = srcset(hit.id, TILE_SIZES);
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
    if (hit.media === "video") {  // a scene of a video: where it is in the clip
      const clip = document.createElement("span");
      clip.className = "clip";
      clip.textContent = `▶ ${clock(hit.start)}–${clock(hit.end)}`;
      clip.title = `a scene of a ${clock(hit.duration)} video`;
      tile.appendChild(clip);
    }
    tile.addEventListener("click", () => openViewer(start + i));
    tile.addEventListener("focus", () => { state.selected = start + i; });
    li.appendChild(tile);
    fragment.appendChild(li);
  });
  grid.appendChild(fragment);
}

// Seconds as a player shows them: 0:04, 12:30, 1:02:03.
function clock(seconds) {
  const total = Math.round(seconds || 0);
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

// A video hit plays in the viewer from its segment's start (a media fragment: the browser seeks
// there with Range requests and pauses at the segment's end); a photo shows in the image.
function showVideo(hit) {
  const play = $("play");
  const video = hit.media === "video";
  $("big").hidden = video;
  play.hidden = !video;
  if (!video) {
    play.pause();
    play.removeAttribute("src");
    return;
  }
  play.poster = thumbnailUrl(hit.id, 1024);
  play.src = `${hit.file_url}#t=${hit.start},${hit.end}`;
  play.play().catch(() => {});  // autoplay may be refused; the controls stay
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
  const opening = $("viewer").hidden;
  if (opening) {
    state.opener = document.activeElement;
    // A history entry of its own, so the phone's Back button (or the browser's) closes the viewer
    // instead of leaving the page.
    if (!(history.state && history.state.viewer)) history.pushState({ viewer: true }, "", location.href);
  }
  state.selected = index;
  const big = $("big");
  big.removeAttribute("src");  // never show the previous photo under the new name
  big.sizes = "(max-width: 700px) 100vw, 60vw";
  big.srcset = srcset(hit.id, BIG_SIZES);
  big.src = thumbnailUrl(hit.id, 1024);
  if (hit.width > 0 && hit.height > 0) {  // the photo's shape, so the viewer keeps its layout while it loads
    big.width = hit.width;
    big.height = hit.height;
  } else {
    big.removeAttribute("width");
    big.removeAttribute("height");
  }
  big.alt = altText(hit);
  $("viewer-title").textContent = fileName(hit.path);
  showVideo(hit);
  showPosition();
  $("open-file").href = hit.file_url;
  const camera = [hit.camera_make, hit.camera_model].filter(Boolean).join(" ");
  const rows = [
    ["date", hit.date ? `${hit.date.replace("T", " ")} (${hit.date_source === "exif" ? "EXIF, when taken" : "file time"})` : ""],
    ["camera", camera],
    ["pixels", `${hit.width} × ${hit.height}`],
    ["scene", hit.media === "video" ? `${clock(hit.start)}–${clock(hit.end)} of ${clock(hit.duration)}` +
      ((hit.segments || []).length ? ` (and ${hit.segments.length} more matching scenes)` : "") : ""],
    ["file size", formatBytes(hit.size)],
    ["format", hit.format || ""],
    ["path", hit.path],
    ["text", hit.text || ""],
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
  if (opening) $("similar").focus();
  const tile = document.querySelector(`.tile[data-index="${index}"]`);
  if (tile) tile.scrollIntoView({ block: "nearest" });  // closing lands where the viewer was
}

// Previous (-1) or next (+1) photo in the viewer, among those loaded. openViewer scrolls the grid
// behind along, so its infinite scroll loads the next page as the end comes near.
function step(delta) {
  const target = state.selected + delta;
  if ($("viewer").hidden || target < 0 || target >= state.hits.length) return;
  openViewer(target);
}

function showPosition() {
  const index = state.selected;
  $("position").textContent = `${index + 1} of ${state.hits.length}${state.next != null ? "+" : ""}`;
  $("prev").disabled = index <= 0;
  $("next").disabled = index >= state.hits.length - 1;
}

function closeViewer() {
  hideViewer();
  if (history.state && history.state.viewer) {  // drop the viewer's history entry too
    state.skipPop = true;
    history.back();
  }
}

function hideViewer() {
  $("viewer").hidden = true;
  $("play").pause();
  const tile = document.querySelector(`.tile[data-index="${state.selected}"]`);
  if (tile) tile.focus();
  else if (state.opener && state.opener.focus) state.opener.focus();
}

// Keep Tab inside the open viewer (it is a modal dialog).
function trapFocus(event) {
  const focusable = [...$("viewer").querySelectorAll("button, a[href]")].filter((e) => !e.disabled && e.offsetParent);
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
  else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
  else if (!$("viewer").contains(document.activeElement)) { first.focus(); event.preventDefault(); }
}

function moreLikeThis() {
  const hit = state.hits[state.selected];
  if (!hit) return;
  $("viewer").hidden = true;
  $("play").pause();
  state.like = String(hit.id);
  state.q = "";
  state.upload = null;
  $("q").value = "";
  writeUrl(!(history.state && history.state.viewer));  // the viewer's own entry becomes this search's
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
    const value = fieldValue(id);
    if (value) state.filters[key] = value;
  }
  showFilterCount();
  $("filters").open = false;
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
    else if (event.key === "ArrowRight") { step(1); event.preventDefault(); }
    else if (event.key === "ArrowLeft") { step(-1); event.preventDefault(); }
    else if (event.key === "m") { moreLikeThis(); event.preventDefault(); }
    else if (event.key === "Tab") trapFocus(event);
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
for (const id of Object.values(FILTERS)) {  // Enter in a filter applies them (the phone keyboard's "go")
  $(id).addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); applyFilters(); } });
}
$("clear-filters").addEventListener("click", () => {
  for (const id of Object.values(FILTERS)) setField(id, "");
  applyFilters();
});
$("more").addEventListener("click", () => run(false));
document.addEventListener("click", (event) => {  // a click outside the open filters closes them
  if ($("filters").open && !$("filters").contains(event.target)) $("filters").open = false;
});
$("similar").addEventListener("click", moreLikeThis);
$("close").addEventListener("click", closeViewer);
$("prev").addEventListener("click", () => step(-1));
$("next").addEventListener("click", () => step(1));
$("show-anyway").addEventListener("click", showAnyway);
$("empty-clear-filters").addEventListener("click", () => $("clear-filters").click());

// Swipe on the photo: a mostly horizontal stroke of 40 px or more moves to the next or previous one.
let touchStart = null;
$("big").parentElement.addEventListener("touchstart", (event) => {
  const t = event.touches[0];
  touchStart = event.touches.length === 1 ? { x: t.clientX, y: t.clientY } : null;
}, { passive: true });
$("big").parentElement.addEventListener("touchend", (event) => {
  if (!touchStart || event.touches.length) return;
  const t = event.changedTouches[0];
  const dx = t.clientX - touchStart.x;
  const dy = t.clientY - touchStart.y;
  touchStart = null;
  if (Math.abs(dx) >= 40 && Math.abs(dx) > 1.5 * Math.abs(dy)) step(dx < 0 ? 1 : -1);
}, { passive: true });
$("viewer").addEventListener("click", (event) => { if (event.target === $("viewer")) closeViewer(); });
window.addEventListener("popstate", (event) => {
  if (state.skipPop) { state.skipPop = false; return; }  // closeViewer's own step back
  const viewerEntry = event.state && event.state.viewer;
  if (!$("viewer").hidden && !viewerEntry) { hideViewer(); return; }  // Back with the viewer open
  if (viewerEntry) {  // Forward onto a viewer entry: show that photo again
    if ($("viewer").hidden && state.hits[state.selected]) openViewer(state.selected);
    return;
  }
  readUrl(); state.upload = null; run(true);
});

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
