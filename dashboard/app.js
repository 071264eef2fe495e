// allocmeter's live page.
//
// Plain JavaScript, no build step and no libraries. Once a second it reads the
// exporter's JSON API (see docs/json-api.md):
//
//   api/snapshot                 current counters, sampling, inner allocator, spike detector
//   api/history?since_ms=T       the per-second points newer than T (incremental)
//   api/spikes                   detected allocation-rate spikes with their top call sites
//   api/sites?top=N&by=...       sampled call sites with stacks (every few seconds)
//   api/hints                    optimisation hints (every 10 s: each answer is symbolized afresh)
//
// and draws everything as SVG built with createElementNS. Text that comes from
// the program (function names, file paths) is only ever set with textContent,
// never parsed as HTML.
//
// With an exporter that requires a bearer token, open the page as
// `/?token=TOKEN`: the page sends the token from its own URL as
// `Authorization: Bearer` on every API call. With call-site data disabled
// (`profiles_exposed: false` in api/snapshot), the page does not ask for
// api/sites or api/hints and says so where they would be; an api/hints that
// answers 404 (an exporter that serves no call sites, or one from before
// hints) is told the same way, not as an error.
//
// Every chart container has a stable id, data-chart, and a data-points
// attribute with how many data items it drew, which the browser test reads.

'use strict';

// ---------------------------------------------------------------------------
// Settings

const POLL_MS = 1000; // one tick: snapshot, history, spikes
const SITES_EVERY_TICKS = 5; // call sites (and the flame graph) every 5 ticks
const HINTS_EVERY_TICKS = 10; // hints every 10 ticks: the exporter symbolizes each answer
const BACKOFF_MAX_MS = 8000; // retries after failures: 1 s, 2 s, 4 s, 8 s, 8 s, ...
const FETCH_TIMEOUT_MS = 5000; // a request that hangs counts as failed
const TOP_SITES = 10; // rows in each top-sites table
const SPIKES_SHOWN = 4; // spikes listed in full; older ones are behind a toggle
const SPIKE_SITES_SHOWN = 5; // top sites shown per spike; the rest (up to 10) behind a toggle
const FLAME_SITES = 1000; // sites fetched for the flame graph
const SVG_NS = 'http://www.w3.org/2000/svg';
// The exporter's bearer token, if the page was opened with ?token=.
const TOKEN = new URLSearchParams(window.location.search).get('token');
const SITES_DISABLED = 'Call-site data is disabled on this exporter (expose_profiles(false)).';
const HINTS_NOT_EXPOSED = 'Call sites are not exposed by this exporter (expose_profiles(false)), and hints are drawn from them: there are none to show.';

// ---------------------------------------------------------------------------
// State: everything the page knows, replaced or extended by each poll.

const state = {
  points: [], // /api/history points, oldest first
  capacity: 300, // how many points the exporter keeps; the page keeps as many
  intervalMs: 1000,
  startMs: null, // when the exporter started (unix_ms - uptime_ms): a new value is a restart
  restarts: 0,
  snapshot: null,
  spikes: null, // the /api/spikes body
  sitesInuse: null, // /api/sites?by=inuse_space, up to FLAME_SITES
  sitesAlloc: null, // /api/sites?by=alloc_space, up to TOP_SITES
  profilesExposed: true, // false: the exporter serves no call sites (api/snapshot's profiles_exposed)
  hints: null, // the /api/hints body
  hintsAsked: false, // whether this process was asked for hints yet
  hintsExposed: true, // false: /api/hints answered 404
  hintsAtMs: null, // the snapshot's unix_ms when the hints were read
  tick: 0,
  failures: 0, // consecutive failed polls
  lastOkMs: null, // Date.now() of the last successful poll
  flameFocus: [], // keys of the frames from the root down to the zoomed node
  openDetails: new Set(), // keys of the <details> the reader opened
};

// ---------------------------------------------------------------------------
// Human units

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** The power of 1024 to show `n` bytes in (0 for B, 1 for KiB, ...). */
function bytePower(n) {
  let p = 0;
  while (Math.abs(n) >= 1024 && p < BYTE_UNITS.length - 1) {
    n /= 1024;
    p++;
  }
  return p;
}

/** 1536 -> "1.5 KiB"; three significant digits at most. */
function fmtBytes(n) {
  if (!Number.isFinite(n)) return '–';
  const p = bytePower(n);
  const v = n / Math.pow(1024, p);
  return (p === 0 ? String(Math.round(v)) : trimNumber(v)) + ' ' + BYTE_UNITS[p];
}

function fmtByteRate(n) {
  return fmtBytes(n) + '/s';
}

/** 1234567 -> "1.23M"; counts use decimal prefixes. */
function fmtCount(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['', 'k', 'M', 'G', 'T', 'P'];
  let p = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && p < units.length - 1) {
    v /= 1000;
    p++;
  }
  return (p === 0 ? trimNumber(v) : trimNumber(v) + units[p]);
}

/** 1234567 -> "1,234,567": the exact integer, grouped. */
function fmtExact(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}

/** Three significant digits, no trailing zeros: 12.30 -> "12.3", 0.5 -> "0.5". */
function trimNumber(v) {
  const a = Math.abs(v);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
  return String(Number(v.toFixed(digits)));
}

/** 75000 -> "1m 15s". */
function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  // "1m 15s", "1m", "2h 5m", "3d 4h": the smaller unit only when it is not 0.
  const two = (big, bigUnit, small, smallUnit) => big + bigUnit + (small ? ' ' + small + smallUnit : '');
  if (m < 60) return two(m, 'm', s % 60, 's');
  const h = Math.floor(m / 60);
  if (h < 48) return two(h, 'h', m % 60, 'm');
  return two(Math.floor(h / 24), 'd', h % 24, 'h');
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

/** Local wall-clock time, "14:03:07". */
function fmtClock(unixMs) {
  const d = new Date(unixMs);
  return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
}

/** "src/main.rs:42", or just the file when the line is unknown. */
function fmtLocation(frame) {
  if (!frame.file) return '(no file)';
  const file = shortPath(frame.file);
  return frame.line ? file + ':' + frame.line : file;
}

/**
 * Shortens the paths that say little in full: the standard library's
 * "/rustc/<commit>/library/std/src/x.rs" becomes "std/src/x.rs", and a
 * dependency's ".../.cargo/registry/src/<index>/serde-1.0.0/src/x.rs" becomes
 * "serde-1.0.0/src/x.rs". The full path is in the API and in /debug/pprof.
 */
function shortPath(file) {
  let m = /^\/rustc\/[0-9a-f]+\/library\/(.*)$/.exec(file);
  if (m) return m[1];
  m = /\/\.cargo\/(?:registry\/src|git\/checkouts)\/[^/]+\/(.*)$/.exec(file);
  if (m) return m[1];
  return file;
}

function fmtFunction(frame) {
  return frame.function || '(unknown function)';
}

// ---------------------------------------------------------------------------
// DOM helpers: elements are built, never parsed from strings.

/**
 * el('td', {class: 'num', title: 'x'}, 'text', childNode) creates an HTML
 * element; string children become text nodes.
 */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

/** The same for SVG elements. */
function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
}

function appendAll(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

function byId(id) {
  return document.getElementById(id);
}

/** Sets an element's text, and its data-value to the raw number (for the test). */
function setValue(id, text, raw) {
  const node = byId(id);
  node.textContent = text;
  if (raw !== undefined) node.dataset.value = String(raw);
}

/** An SVG <title>: the browser shows it as a tooltip on hover. */
function svgTitle(text) {
  return svgEl('title', {}, text);
}

/**
 * A <details> whose open state survives re-rendering: the page redraws lists
 * every second, and a stack the reader opened must stay open.
 */
function keptDetails(key, summary, buildBody) {
  const details = el('details', {}, el('summary', {}, summary), buildBody());
  details.open = state.openDetails.has(key);
  details.addEventListener('toggle', () => {
    if (details.open) state.openDetails.add(key);
    else state.openDetails.delete(key);
  });
  return details;
}

/** A site's summary line: function, location, and what it did. Clicking it opens the stack. */
function siteSummary(site, figures) {
  const parts = el('span', {class: 'site-line'},
    el('span', {class: 'fn'}, fmtFunction(site)), ' ',
    el('span', {class: 'loc', title: site.file}, fmtLocation(site)));
  if (figures) parts.append(' ', el('span', {class: 'figures'}, figures));
  return parts;
}

/** An ordered list of frames, innermost first, as the API gives them. */
function stackList(stack) {
  const list = el('ol', {class: 'stack'});
  for (const frame of stack || []) {
    list.append(el('li', {}, el('span', {class: 'fn'}, fmtFunction(frame)), ' ', el('span', {class: 'loc', title: frame.file}, fmtLocation(frame))));
  }
  if (!stack || stack.length === 0) list.append(el('li', {}, '(no stack recorded)'));
  return list;
}

/** A key that identifies a call site across polls. */
function siteKey(site) {
  const frames = (site.stack || []).map((f) => f.function + '@' + f.file + ':' + f.line);
  return [site.function, site.file, site.line].concat(frames).join('|');
}

/**
 * Keys for a list of sites. Two sites can symbolize to the same function,
 * line and stack (different return addresses on one source line); the second
 * gets "#2" so that opening one does not open the other.
 */
function siteKeys(prefix, sites) {
  const seen = new Map();
  return sites.map((site) => {
    const key = prefix + '|' + siteKey(site);
    const n = (seen.get(key) || 0) + 1;
    seen.set(key, n);
    return n === 1 ? key : key + '#' + n;
  });
}

// ---------------------------------------------------------------------------
// Fetching

/**
 * GETs a JSON path relative to the page, failing on HTTP errors and
 * timeouts; with `missingOk`, a 404 gives null instead of failing.
 */
async function getJSON(path, missingOk) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  let response;
  try {
    const headers = TOKEN ? {Authorization: 'Bearer ' + TOKEN} : {};
    response = await fetch(path, {cache: 'no-store', signal: controller.signal, headers});
  } catch (e) {
    const why = e.name === 'AbortError' ? 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s' : e.message;
    throw new Error(path + ': ' + why);
  } finally {
    clearTimeout(timer);
  }
  if (response.status === 401) {
    throw new Error(path + ': HTTP 401: the exporter requires a token; open this page as /?token=TOKEN' + (TOKEN ? ' with the right one' : ''));
  }
  if (missingOk && response.status === 404) return null;
  if (!response.ok) throw new Error(path + ': HTTP ' + response.status + ' ' + response.statusText);
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(path + ': not JSON (' + e.message + ')');
  }
  if (body.version !== 1) throw new Error(path + ': API version ' + body.version + ', this page knows version 1');
  return body;
}

/**
 * When the process behind a snapshot or history point started. Its uptime
 * alone is not enough: a restarted exporter found after a long backoff can
 * already be up longer than the old one was.
 */
function startedAt(x) {
  return x.unix_ms - x.uptime_ms;
}

/** Two start times more than 2 s apart are two processes (1 s is clock jitter between reads). */
function sameProcess(a, b) {
  return Math.abs(a - b) <= 2000;
}

/**
 * One poll. Reads the snapshot first: if the exporter restarted, the page's
 * series are from the old process and are dropped.
 */
async function pollOnce() {
  const snapshot = await getJSON('api/snapshot');
  if (state.startMs !== null && !sameProcess(startedAt(snapshot), state.startMs)) resetForRestart();
  state.startMs = startedAt(snapshot);
  state.snapshot = snapshot;

  const last = state.points[state.points.length - 1];
  const historyPath = last ? 'api/history?since_ms=' + last.unix_ms : 'api/history';
  // Older exporters do not send the field: sites are exposed there.
  state.profilesExposed = snapshot.profiles_exposed !== false;
  const needSites = state.profilesExposed && (state.tick % SITES_EVERY_TICKS === 0 || state.sitesInuse === null);
  const needHints = state.profilesExposed && (state.tick % HINTS_EVERY_TICKS === 0 || !state.hintsAsked);
  const [history, spikes, sitesInuse, sitesAlloc, hints] = await Promise.all([
    getJSON(historyPath),
    getJSON('api/spikes'),
    needSites ? getJSON('api/sites?top=' + FLAME_SITES + '&by=inuse_space') : null,
    needSites ? getJSON('api/sites?top=' + TOP_SITES + '&by=alloc_space') : null,
    needHints ? getJSON('api/hints', true) : null,
  ]);
  addHistory(history);
  state.spikes = spikes;
  if (needSites) {
    state.sitesInuse = sitesInuse;
    state.sitesAlloc = sitesAlloc;
  }
  if (needHints) {
    state.hintsAsked = true;
    state.hintsExposed = hints !== null;
    state.hints = hints;
    state.hintsAtMs = snapshot.unix_ms;
  }
  state.tick++;
  return {sites: needSites, hints: needHints};
}

/** Appends new history points, dropping the oldest past the exporter's capacity. */
function addHistory(history) {
  state.capacity = history.capacity || state.capacity;
  state.intervalMs = history.interval_ms || state.intervalMs;
  for (const p of history.points) {
    const last = state.points[state.points.length - 1];
    if (last && !sameProcess(startedAt(p), startedAt(last))) {
      // A point from a restarted process starts a new series.
      state.points = [];
    } else if (last && p.unix_ms <= last.unix_ms) {
      continue; // already have it
    }
    state.points.push(p);
  }
  if (state.points.length > state.capacity) state.points.splice(0, state.points.length - state.capacity);
}

function resetForRestart() {
  state.points = [];
  state.spikes = null;
  state.sitesInuse = null;
  state.sitesAlloc = null;
  state.hints = null;
  state.hintsAsked = false;
  state.flameFocus = [];
  state.restarts++;
}

/** The poll loop: one tick a second while the exporter answers, backing off while it does not. */
async function loop() {
  let delay = POLL_MS;
  try {
    const fetched = await pollOnce();
    state.failures = 0;
    state.lastOkMs = Date.now();
    showConnected();
    renderAll(fetched);
  } catch (e) {
    state.failures++;
    delay = Math.min(BACKOFF_MAX_MS, POLL_MS * Math.pow(2, state.failures - 1));
    showReconnecting(e, delay);
  }
  setTimeout(loop, delay);
}

// ---------------------------------------------------------------------------
// Connection status

function showConnected() {
  byId('banner').hidden = true;
  document.body.classList.remove('stale');
  const snap = state.snapshot;
  byId('status-dot').className = 'dot ok';
  let text = 'live · updated ' + fmtClock(snap.unix_ms) + ' · exporter up ' + fmtDuration(snap.uptime_ms);
  if (state.restarts > 0) text += ' · restarted ' + (state.restarts === 1 ? 'once' : state.restarts + ' times') + ' while watched';
  byId('status-text').textContent = text;
}

function showReconnecting(error, delayMs) {
  const banner = byId('banner');
  banner.replaceChildren(
    el('strong', {}, 'Reconnecting…'),
    ' The exporter did not answer: ',
    el('code', {}, error.message),
    '. Try ' + (state.failures + 1) + ' in ' + Math.round(delayMs / 1000) + ' s.',
    state.lastOkMs ? ' Showing the data from ' + fmtClock(state.lastOkMs) + '.' : ' No data yet.'
  );
  banner.hidden = false;
  document.body.classList.add('stale');
  byId('status-dot').className = 'dot bad';
  byId('status-text').textContent = 'reconnecting…';
}

/** Errors of this page's own script are shown on the page, not only in the console. */
function showPageError(message) {
  const box = byId('page-error');
  box.hidden = false;
  box.append(el('p', {}, 'This page hit an error: ' + message));
}

window.addEventListener('error', (e) => showPageError(e.message || String(e.error)));
window.addEventListener('unhandledrejection', (e) => showPageError(String(e.reason && e.reason.message ? e.reason.message : e.reason)));

// ---------------------------------------------------------------------------
// Rendering

/**
 * Draws every panel. A panel that throws shows its error in place; the
 * others still draw. `fetched.sites` and `fetched.hints` say whether this
 * poll read the call sites and the hints (their panels are redrawn only
 * then).
 */
function renderAll(fetched) {
  const snap = state.snapshot;
  safely('panel-rate', renderTimeCharts);
  safely('panel-rate', () => renderTiles(snap));
  safely('panel-rate', () => renderSpikeStatus(snap.spike));
  safely('panel-sizes', () => renderSizes(snap.stats.by_size));
  safely('panel-reallocs', () => renderReallocs(snap.stats));
  safely('panel-sampling', () => renderSampling(snap));
  safely('panel-spikes', () => renderSpikes(state.spikes));
  if (!state.profilesExposed || (fetched.hints && !state.hintsExposed)) safely('panel-hints', renderHintsNotExposed);
  else if (fetched.hints) safely('panel-hints', () => renderHints(state.hints));
  if (!state.profilesExposed) {
    safely('panel-sites-inuse', () => renderSitesDisabled('sites-inuse'));
    safely('panel-sites-alloc', () => renderSitesDisabled('sites-alloc'));
    safely('panel-flame', () => {
      const flame = byId('flame');
      flame.replaceChildren(el('p', {class: 'empty'}, SITES_DISABLED));
      flame.dataset.points = '0';
    });
  } else if (fetched.sites) {
    // Sites whose sampled memory was all freed have nothing in use to show.
    const holding = state.sitesInuse.sites.filter((s) => s.inuse_space >= 0.5);
    safely('panel-sites-inuse', () => renderSites('sites-inuse', holding.slice(0, TOP_SITES), 'inuse'));
    safely('panel-sites-alloc', () => renderSites('sites-alloc', state.sitesAlloc.sites, 'alloc'));
    safely('panel-flame', renderFlame);
  }
}

/** Runs one panel's renderer; on an exception, shows it in the panel and logs it. */
function safely(panelId, render) {
  const panel = byId(panelId);
  let box = panel.querySelector(':scope > .panel-error');
  try {
    render();
    if (box) box.remove();
  } catch (e) {
    if (!box) {
      box = el('p', {class: 'panel-error', role: 'alert'});
      panel.append(box);
    }
    box.textContent = 'Could not draw this panel: ' + e.message;
    console.error(e);
  }
}

/** The figures at the top: exact totals and current rates. */
function renderTiles(snap) {
  const s = snap.stats;
  const last = state.points[state.points.length - 1];
  setValue('v-live-bytes', fmtBytes(s.live_bytes), s.live_bytes);
  setValue('v-live-bytes-exact', fmtExact(s.live_bytes) + ' bytes');
  setValue('v-live-objects', fmtCount(s.live_objects), s.live_objects);
  setValue('v-live-objects-exact', fmtExact(s.live_objects) + ' objects');
  setValue('v-alloc-bytes', fmtBytes(s.alloc_bytes), s.alloc_bytes);
  setValue('v-allocs', fmtExact(s.allocs) + ' allocations', s.allocs);
  setValue('v-free-bytes', fmtBytes(s.free_bytes), s.free_bytes);
  setValue('v-frees', fmtExact(s.frees) + ' frees', s.frees);
  setValue('v-failures', fmtExact(s.failures), s.failures);
  setValue('v-threads', fmtExact(s.threads), s.threads);
  setValue('v-telemetry', 'allocmeter itself uses ' + fmtBytes(s.telemetry_bytes), s.telemetry_bytes);
  if (last) {
    setValue('v-alloc-rate', fmtByteRate(last.alloc_bytes_per_sec), last.alloc_bytes_per_sec);
    setValue('v-allocs-rate', fmtCount(last.allocs_per_sec) + ' allocations/s', last.allocs_per_sec);
    setValue('v-free-rate', fmtByteRate(last.free_bytes_per_sec), last.free_bytes_per_sec);
    setValue('v-frees-rate', fmtCount(last.frees_per_sec) + ' frees/s', last.frees_per_sec);
  }
  byId('v-failures').classList.toggle('alarm', s.failures > 0);
  // The tab's title says the live heap too, for a page kept in a background tab.
  document.title = fmtBytes(s.live_bytes) + ' live · allocmeter';
}

function renderSpikeStatus(spike) {
  const node = byId('spike-status');
  if (!spike) {
    node.textContent = '';
    return;
  }
  const threshold = Math.max(spike.k * spike.baseline_bytes_per_sec, spike.min_bytes_per_sec);
  node.replaceChildren(
    spike.active ? el('strong', {class: 'alarm'}, 'Spike in progress. ') : '',
    'A spike is a second allocating more than ' + trimNumber(spike.k) + '× the median of the last ' +
      fmtDuration(spike.baseline_secs * 1000) + ' (' + fmtByteRate(spike.baseline_bytes_per_sec) + ') and more than ' +
      fmtByteRate(spike.min_bytes_per_sec) + ': now over ' + fmtByteRate(threshold) + '. Current rate ' +
      fmtByteRate(spike.current_bytes_per_sec) + '.'
  );
}

// ---------------------------------------------------------------------------
// Time-series charts

// Series colours come from the stylesheet (classes s-alloc, s-free, ...).
const TIME_CHARTS = [
  {
    id: 'chart-rate',
    legend: 'legend-rate',
    unit: 'bytes/s',
    spikes: true,
    series: [
      {name: 'allocated', cls: 's-alloc', value: (p) => p.alloc_bytes_per_sec},
      {name: 'freed', cls: 's-free', value: (p) => p.free_bytes_per_sec},
    ],
  },
  {
    id: 'chart-ops',
    legend: 'legend-ops',
    unit: 'count/s',
    series: [
      {name: 'allocations/s', cls: 's-alloc', value: (p) => p.allocs_per_sec},
      {name: 'frees/s', cls: 's-free', value: (p) => p.frees_per_sec},
    ],
  },
  {
    id: 'chart-live',
    legend: 'legend-live',
    unit: 'bytes',
    peak: true,
    series: [{name: 'live bytes', cls: 's-live', value: (p) => p.live_bytes}],
  },
  {
    id: 'chart-objects',
    legend: 'legend-objects',
    unit: 'count',
    series: [{name: 'live objects', cls: 's-live', value: (p) => p.live_objects}],
  },
];

/** How a value is written on a chart's axis and in its tooltip. */
function fmtUnit(unit, v) {
  switch (unit) {
    case 'bytes':
      return fmtBytes(v);
    case 'bytes/s':
      return fmtByteRate(v);
    case 'count/s':
      return fmtCount(v) + '/s';
    default:
      return fmtCount(v);
  }
}

function renderTimeCharts() {
  for (const chart of TIME_CHARTS) drawTimeChart(chart);
}

/**
 * Axis ticks from 0 to at least `max`: about `count` steps of 1, 2 or 5 times
 * a power of ten, in the unit the labels are written in (KiB, MiB, ... for
 * bytes, so that a tick reads "2 MiB" rather than "2.1 MiB").
 */
function niceTicks(max, count, unit) {
  if (!(max > 0)) max = 1;
  const scale = unit.startsWith('bytes') ? Math.pow(1024, bytePower(max)) : 1;
  const raw = max / scale / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) * scale;
  const ticks = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(v);
  return ticks;
}

/** Time-axis ticks at round seconds or minutes, about one per 100 pixels. */
function timeTicks(t0, t1, width) {
  const span = t1 - t0;
  const want = Math.max(3, Math.floor(width / 100));
  const steps = [5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 1800e3, 3600e3];
  const step = steps.find((s) => span / s <= want) || steps[steps.length - 1];
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return ticks;
}

/** The drawing area of a chart container: its width, a height that suits it. */
function chartSize(container, tall) {
  const width = Math.max(240, Math.floor(container.clientWidth));
  const height = tall ? (width < 600 ? 200 : 240) : width < 600 ? 160 : 180;
  return {width, height};
}

/**
 * Draws one time-series chart: a line per series over the kept points, a
 * y axis in human units, a time axis in local clock time, and, on the rate
 * chart, shaded bands for the spikes of /api/spikes and a tick on the top
 * edge for every point the exporter marked `spike`.
 */
function drawTimeChart(def) {
  const container = byId(def.id);
  const points = state.points;
  const {width, height} = chartSize(container, def.spikes);
  const m = {left: 64, right: 10, top: 12, bottom: 22};
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;

  // The window spans the kept points: at least a minute (a young exporter's
  // lines grow from the right), at most what the exporter keeps (5 minutes by
  // default).
  const tEnd = points.length ? points[points.length - 1].unix_ms : Date.now();
  const tFirst = points.length ? points[0].unix_ms : tEnd;
  const tStart = Math.max(tEnd - (state.capacity - 1) * state.intervalMs, Math.min(tFirst, tEnd - 60e3));
  const x = (t) => m.left + ((t - tStart) / (tEnd - tStart)) * plotW;

  let max = 0;
  for (const p of points) for (const s of def.series) max = Math.max(max, s.value(p));
  // The live heap's high-water mark since the exporter started (from
  // /api/snapshot): drawn as a dashed line, with a dot where it was reached
  // if that is in the window.
  const peak = def.peak && state.snapshot && state.snapshot.peak && state.snapshot.peak.live_bytes > 0
    ? state.snapshot.peak : null;
  if (peak) max = Math.max(max, peak.live_bytes);
  const ticks = niceTicks(max, 4, def.unit);
  const yMax = ticks[ticks.length - 1];
  const y = (v) => m.top + plotH - (v / yMax) * plotH;

  const root = svgEl('svg', {width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': def.series.map((s) => s.name).join(' and ')});
  const clipId = def.id + '-clip';
  root.append(svgEl('defs', {}, svgEl('clipPath', {id: clipId}, svgEl('rect', {x: m.left, y: m.top, width: plotW, height: plotH}))));

  // Grid and y labels.
  for (const v of ticks) {
    root.append(svgEl('line', {class: 'grid', x1: m.left, x2: width - m.right, y1: y(v), y2: y(v)}));
    root.append(svgEl('text', {class: 'axis', x: m.left - 6, y: y(v) + 4, 'text-anchor': 'end'}, fmtUnit(def.unit, v)));
  }
  for (const t of timeTicks(tStart, tEnd, plotW)) {
    root.append(svgEl('line', {class: 'grid', x1: x(t), x2: x(t), y1: m.top, y2: m.top + plotH}));
    root.append(svgEl('text', {class: 'axis', x: x(t), y: height - 6, 'text-anchor': 'middle'}, fmtClock(t)));
  }

  let spikeBands = 0;
  let spikePoints = 0;
  if (def.spikes) {
    const marks = svgEl('g', {'clip-path': `url(#${clipId})`});
    spikeBands = drawSpikeBands(marks, x, tStart, tEnd, m.top, plotH);
    spikePoints = drawSpikePoints(marks, points, x, m.top);
    root.append(marks);
  }

  // One path per series. A gap of more than three intervals (the page or the
  // exporter was away) breaks the line rather than drawing across it.
  const lines = svgEl('g', {'clip-path': `url(#${clipId})`});
  for (const s of def.series) {
    let d = '';
    let prevT = null;
    for (const p of points) {
      const gap = prevT === null || p.unix_ms - prevT > 3 * state.intervalMs;
      d += (gap ? 'M' : 'L') + x(p.unix_ms).toFixed(1) + ',' + y(s.value(p)).toFixed(1);
      prevT = p.unix_ms;
    }
    lines.append(svgEl('path', {class: 'line ' + s.cls, d}));
  }
  root.append(lines);
  if (peak) {
    const py = y(peak.live_bytes);
    const label = 'peak ' + fmtBytes(peak.live_bytes) + ' at ' + fmtClock(peak.unix_ms);
    const mark = svgEl('g', {class: 'peak-mark'},
      svgEl('line', {class: 'peak-line', x1: m.left, x2: width - m.right, y1: py, y2: py}),
      svgEl('text', {class: 'peak-label', x: width - m.right - 4, y: py - 4, 'text-anchor': 'end'}, label),
      svgTitle('The highest live heap seen at the exporter\'s ticks since it started: ' + fmtExact(peak.live_bytes) +
        ' bytes. /debug/pprof/peak has the call sites as they stood then.'));
    if (peak.unix_ms >= tStart && peak.unix_ms <= tEnd) {
      mark.append(svgEl('circle', {class: 'peak-dot', cx: x(peak.unix_ms), cy: py, r: 3.5}));
    }
    root.append(mark);
    container.dataset.peak = String(peak.live_bytes);
  }
  root.append(svgEl('rect', {class: 'frame', x: m.left, y: m.top, width: plotW, height: plotH}));

  addHoverReadout(root, container, def, points, x, m, plotH);
  container.replaceChildren(root);
  container.dataset.points = String(points.length);
  if (def.spikes) {
    container.dataset.spikes = String(spikeBands);
    container.dataset.spikePoints = String(spikePoints);
  }
  renderLegend(def, points);
}

/** Shaded bands for the spikes of /api/spikes that overlap the window. */
function drawSpikeBands(group, x, tStart, tEnd, top, plotH) {
  if (!state.spikes) return 0;
  let drawn = 0;
  for (const spike of state.spikes.spikes) {
    const start = spike.start_unix_ms;
    const end = spike.end_unix_ms === null ? tEnd : spike.end_unix_ms;
    if (end < tStart || start > tEnd) continue;
    const x0 = x(start);
    const w = Math.max(3, x(end) - x0);
    const band = svgEl('rect', {class: 'spike-band' + (spike.active ? ' active' : ''), x: x0, y: top, width: w, height: plotH, 'data-spike-id': spike.id},
      svgTitle('Spike #' + spike.id + ': peak ' + fmtByteRate(spike.peak_bytes_per_sec) + ' against a baseline of ' + fmtByteRate(spike.baseline_bytes_per_sec)));
    group.append(band);
    group.append(svgEl('text', {class: 'spike-label', x: x0 + 3, y: top + 22}, '#' + spike.id));
    drawn++;
  }
  return drawn;
}

/** A small tick on the top edge for every history point inside a spike. */
function drawSpikePoints(group, points, x, top) {
  let n = 0;
  for (const p of points) {
    if (!p.spike) continue;
    const px = x(p.unix_ms);
    group.append(svgEl('path', {class: 'spike-point', d: `M${px - 4},${top} L${px + 4},${top} L${px},${top + 7} Z`}));
    n++;
  }
  return n;
}

/** A legend above the chart: each series' colour, name and latest value. */
function renderLegend(def, points) {
  const last = points[points.length - 1];
  const items = def.series.map((s) =>
    el('span', {class: 'item'}, el('span', {class: 'swatch ' + s.cls}), s.name + (last ? ' ' + fmtUnit(def.unit, s.value(last)) : ''))
  );
  if (def.spikes) {
    items.push(el('span', {class: 'item'}, el('span', {class: 'swatch spike'}), 'detected spike (#n as listed below)'));
    items.push(el('span', {class: 'item'}, el('span', {class: 'mark'}, '▼'), 'a second inside a spike'));
  }
  byId(def.legend).replaceChildren(...items);
}

/**
 * A vertical rule and a readout of every series at the point under the
 * pointer. The readout is a positioned HTML box in the chart container.
 */
function addHoverReadout(root, container, def, points, x, m, plotH) {
  const rule = svgEl('line', {class: 'hover-rule', y1: m.top, y2: m.top + plotH, visibility: 'hidden'});
  root.append(rule);
  const hide = () => {
    rule.setAttribute('visibility', 'hidden');
    const box = container.querySelector('.readout');
    if (box) box.remove();
  };
  root.addEventListener('pointerleave', hide);
  root.addEventListener('pointermove', (ev) => {
    if (points.length === 0) return;
    const bounds = root.getBoundingClientRect();
    const px = ev.clientX - bounds.left;
    // Nearest point by x.
    let best = points[0];
    for (const p of points) if (Math.abs(x(p.unix_ms) - px) < Math.abs(x(best.unix_ms) - px)) best = p;
    const bx = x(best.unix_ms);
    rule.setAttribute('x1', bx);
    rule.setAttribute('x2', bx);
    rule.setAttribute('visibility', 'visible');
    let box = container.querySelector('.readout');
    if (!box) {
      box = el('div', {class: 'readout'});
      container.append(box);
    }
    box.replaceChildren(el('div', {}, fmtClock(best.unix_ms) + (best.spike ? ' · spike' : '')),
      ...def.series.map((s) => el('div', {}, el('span', {class: 'swatch ' + s.cls}), s.name + ': ' + fmtUnit(def.unit, s.value(best)))));
    const left = bx + 12 + 180 > bounds.width ? bx - 12 - 180 : bx + 12;
    box.style.left = Math.max(0, left) + 'px';
    box.style.top = m.top + 'px';
  });
}

// ---------------------------------------------------------------------------
// Size classes

/** "≤ 64 B", "≤ 4 KiB", "> 4 GiB" for the open-ended last class. */
function classLabel(cls, prev) {
  if (cls.max_size === null || cls.max_size === undefined) return '> ' + fmtBytes(prev);
  return '≤ ' + fmtBytes(cls.max_size);
}

/**
 * Two bars per size class on a log scale: allocations since start and live
 * now (allocations minus frees). Classes above the largest one used are left
 * out, so the bars stay wide enough to read.
 */
function renderSizes(bySize) {
  const container = byId('chart-sizes');
  let lastUsed = -1;
  bySize.forEach((c, i) => {
    if (c.allocs > 0) lastUsed = i;
  });
  const classes = bySize.slice(0, Math.max(lastUsed + 1, 1));
  const {width, height} = chartSize(container, false);
  const m = {left: 48, right: 8, top: 10, bottom: 44};
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const max = Math.max(1, ...classes.map((c) => c.allocs));
  const decades = Math.max(1, Math.ceil(Math.log10(max + 1)));
  const y = (v) => m.top + plotH - (Math.log10(v + 1) / decades) * plotH;
  const slot = plotW / classes.length;
  const barW = Math.max(1, slot / 2 - 1);

  const root = svgEl('svg', {width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'allocations and live objects per size class'});
  // A grid line per power of ten; a label on every one that has room.
  const labelDecades = plotH / decades >= 14 ? 1 : 2;
  for (let d = 0; d <= decades; d++) {
    const v = Math.pow(10, d);
    root.append(svgEl('line', {class: 'grid', x1: m.left, x2: width - m.right, y1: y(v - 1), y2: y(v - 1)}));
    if (d % labelDecades === 0) root.append(svgEl('text', {class: 'axis', x: m.left - 6, y: y(v - 1) + 4, 'text-anchor': 'end'}, d === 0 ? '0' : fmtCount(v)));
  }
  // Label every class if they fit, else every second or fourth one.
  const labelEvery = slot >= 34 ? 1 : slot >= 17 ? 2 : 4;
  let drawn = 0;
  classes.forEach((c, i) => {
    const live = Math.max(0, c.allocs - c.frees);
    const label = classLabel(c, i > 0 ? classes[i - 1].max_size : 0);
    const x0 = m.left + i * slot + 1;
    const tip = label + ': ' + fmtExact(c.allocs) + ' allocations, ' + fmtExact(live) + ' live';
    root.append(svgEl('rect', {class: 'bar s-alloc', x: x0, y: y(c.allocs), width: barW, height: m.top + plotH - y(c.allocs)}, svgTitle(tip)));
    root.append(svgEl('rect', {class: 'bar s-live', x: x0 + barW + 1, y: y(live), width: barW, height: m.top + plotH - y(live)}, svgTitle(tip)));
    if (c.allocs > 0) drawn++;
    if (i % labelEvery === 0) {
      const lx = m.left + (i + 0.5) * slot;
      root.append(svgEl('text', {class: 'axis', x: lx, y: m.top + plotH + 12, 'text-anchor': 'end', transform: `rotate(-35 ${lx} ${m.top + plotH + 12})`}, label));
    }
  });
  root.append(svgEl('rect', {class: 'frame', x: m.left, y: m.top, width: plotW, height: plotH}));
  container.replaceChildren(root);
  container.dataset.points = String(drawn);
  byId('legend-sizes').replaceChildren(
    el('span', {class: 'item'}, el('span', {class: 'swatch s-alloc'}), 'allocations since start'),
    el('span', {class: 'item'}, el('span', {class: 'swatch s-live'}), 'live now')
  );
}

// ---------------------------------------------------------------------------
// Reallocs and failures

/** Horizontal bars: reallocs by kind, and failed allocations. */
function renderReallocs(stats) {
  const r = stats.reallocs;
  const rows = [
    {name: 'grown in place', value: r.grown_in_place, cls: 's-alloc'},
    {name: 'shrunk in place', value: r.shrunk_in_place, cls: 's-free'},
    {name: 'moved', value: r.moved, cls: 's-live'},
    {name: 'failed allocations', value: stats.failures, cls: 's-bad'},
  ];
  const container = byId('chart-reallocs');
  const width = Math.max(240, Math.floor(container.clientWidth));
  const rowH = 26;
  const labelW = 130;
  const valueW = 70;
  const height = rows.length * rowH + 4;
  const max = Math.max(1, ...rows.map((row) => row.value));
  const root = svgEl('svg', {width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'reallocs by kind and failures'});
  rows.forEach((row, i) => {
    const top = i * rowH + 2;
    const w = (row.value / max) * (width - labelW - valueW);
    root.append(svgEl('text', {class: 'label', x: 0, y: top + 16}, row.name));
    root.append(svgEl('rect', {class: 'bar ' + row.cls, x: labelW, y: top + 3, width: Math.max(row.value > 0 ? 2 : 0, w), height: rowH - 8}, svgTitle(row.name + ': ' + fmtExact(row.value))));
    root.append(svgEl('text', {class: 'label num', x: labelW + w + 6, y: top + 16}, fmtCount(row.value)));
  });
  container.replaceChildren(root);
  container.dataset.points = String(rows.filter((row) => row.value > 0).length);
  byId('realloc-bytes').textContent =
    'Grown in place by ' + fmtBytes(r.grown_bytes) + ', shrunk in place by ' + fmtBytes(r.shrunk_bytes) +
    '. A moved realloc counts as an allocation and a free of the new and old sizes.';
}

// ---------------------------------------------------------------------------
// Sampling and the inner allocator

/** A definition list from [term, value, title?] rows. */
function fillFacts(dl, rows) {
  dl.replaceChildren();
  for (const [term, value, title] of rows) {
    dl.append(el('dt', {}, term), el('dd', {title}, value));
  }
}

function renderSampling(snap) {
  const s = snap.sampling;
  const rate = s.rate === 0 ? 'off' : s.rate === 1 ? 'every allocation' : 'one per ' + fmtBytes(s.rate) + ' allocated, on average';
  fillFacts(byId('sampling'), [
    ['Sampling', rate, fmtExact(s.rate) + ' bytes'],
    ['Samples taken', fmtExact(s.samples)],
    ['Sampled and live', fmtExact(s.live_samples)],
    ['Samples dropped', fmtExact(s.dropped), 'lost outright: neither handed over nor carried'],
    ['Samples carried', fmtExact(s.carried || 0), 'a thread\'s sample rings were full at their bound: a later sample of the thread carries their weight (its site shows it; in-use figures do not)'],
    ['Sampled frees lost', fmtExact(s.frees_lost)],
    ['allocmeter\'s own memory', fmtBytes(snap.stats.telemetry_bytes)],
  ]);
  byId('sampling').classList.toggle('warn', s.dropped > 0 || (s.carried || 0) > 0);

  const inner = snap.inner;
  if (!inner) {
    byId('inner-title').textContent = 'Inner allocator';
    fillFacts(byId('inner'), [['Figures', 'not available for this inner allocator (the exporter\'s jemalloc, mimalloc and glibc features report them)']]);
    return;
  }
  byId('inner-title').textContent = 'Inner allocator: ' + inner.allocator;
  fillFacts(byId('inner'), inner.figures.map((f) => {
    const name = f.name.replace(/^allocmeter_inner_/, '').replace(/_/g, ' ');
    const value = /bytes/.test(f.name) ? fmtBytes(f.value) : fmtCount(f.value);
    return [name, value, f.help + ' (' + f.name + ' = ' + fmtExact(f.value) + ')'];
  }));
}

// ---------------------------------------------------------------------------
// Spikes

/** The spike list, newest first: when, how high, exactly how much, and by whom. */
function renderSpikes(body) {
  const list = byId('spikes');
  if (!body || body.spikes.length === 0) {
    list.replaceChildren(el('li', {class: 'empty'}, 'No allocation-rate spike detected so far.'));
    list.dataset.count = '0';
    return;
  }
  // The newest few in full; older ones behind one "earlier spikes" toggle.
  const newestFirst = body.spikes.slice().reverse();
  const shown = window.innerWidth < 600 ? 2 : SPIKES_SHOWN; // a phone shows fewer
  const items = newestFirst.slice(0, shown).map(spikeItem);
  const older = newestFirst.slice(shown);
  if (older.length > 0) {
    items.push(el('li', {}, keptDetails('earlier-spikes', older.length + ' earlier spike' + (older.length > 1 ? 's' : ''),
      () => el('ol', {class: 'spikes'}, ...older.map(spikeItem)))));
    items[items.length - 1].firstChild.classList.add('earlier');
  }
  list.replaceChildren(...items);
  list.dataset.count = String(body.spikes.length);
}

function spikeItem(spike) {
  const end = spike.end_unix_ms;
  const when = fmtClock(spike.start_unix_ms) + (end === null ? ', still going' : ' – ' + fmtClock(end) + ' (' + fmtDuration(end - spike.start_unix_ms) + ')');
  const ratio = spike.baseline_bytes_per_sec > 0 ? ' (' + trimNumber(spike.peak_bytes_per_sec / spike.baseline_bytes_per_sec) + '×)' : '';
  const head = el('div', {class: 'spike-head'},
    el('strong', {}, 'Spike #' + spike.id), ' ', el('span', {class: 'when'}, when),
    spike.active ? el('span', {class: 'badge'}, 'active') : '');
  const figures = el('p', {class: 'spike-figures'},
    'Peak ' + fmtByteRate(spike.peak_bytes_per_sec) + ' against a baseline of ' + fmtByteRate(spike.baseline_bytes_per_sec) + ratio +
      '. Allocated ' + fmtBytes(spike.alloc_bytes) + ' (' + fmtExact(spike.alloc_bytes) + ' bytes) in ' + fmtExact(spike.allocs) + ' allocations.');
  // Each site line opens to its stack; the first few show, the rest behind a toggle.
  const keys = siteKeys('spike' + spike.id, spike.top_sites);
  const siteItem = (site, i) => el('li', {}, keptDetails(keys[i], siteSummary(site,
    '~' + fmtBytes(site.alloc_space) + ' in ~' + fmtCount(site.alloc_objects) + ' allocations, ' + fmtExact(site.samples) + ' samples'),
  () => stackList(site.stack)));
  const sites = el('ol', {class: 'spike-sites'}, ...spike.top_sites.slice(0, SPIKE_SITES_SHOWN).map((site, i) => siteItem(site, i)));
  const more = spike.top_sites.slice(SPIKE_SITES_SHOWN);
  const moreSites = more.length === 0 ? null : keptDetails('spike' + spike.id + '|more', more.length + ' more site' + (more.length > 1 ? 's' : ''),
    () => el('ol', {class: 'spike-sites', start: SPIKE_SITES_SHOWN + 1}, ...more.map((site, i) => siteItem(site, SPIKE_SITES_SHOWN + i))));
  const noSites = state.spikes && state.spikes.sites_exposed === false ? SITES_DISABLED : 'No sampled allocation during this spike.';
  if (spike.top_sites.length === 0) sites.append(el('li', {class: 'empty'}, noSites));
  return el('li', {class: 'spike' + (spike.active ? ' active' : ''), 'data-spike-id': spike.id}, head, figures,
    el('p', {class: 'spike-sites-title'}, 'Allocated most during the spike (estimated from samples):'), sites, moreSites);
}

// ---------------------------------------------------------------------------
// Hints

/** 0.91 -> "91 %"; small shares keep two significant digits, tiny ones read "< 0.1 %". */
function fmtShare(x) {
  if (!Number.isFinite(x)) return '–';
  const pct = 100 * x;
  if (pct > 0 && pct < 0.1) return '< 0.1 %';
  return trimNumber(pct) + ' %';
}

/** 4096 -> "4.1 µs": a lifetime in nanoseconds. */
function fmtNanos(ns) {
  if (!Number.isFinite(ns)) return '–';
  const units = [[1e9, 's'], [1e6, 'ms'], [1e3, 'µs']];
  for (const [scale, unit] of units) if (ns >= scale) return trimNumber(ns / scale) + ' ' + unit;
  return Math.round(ns) + ' ns';
}

/** What each technique means, for the label's tooltip. */
const TECHNIQUES = {
  preallocate: 'Reserve the capacity a buffer grows to, up front',
  reuse: 'Keep one buffer and clear it, instead of a new one each time',
  pool: 'Keep a pool or free list of short-lived objects',
  stream: 'Process a huge input in chunks instead of loading it whole',
  format: 'Write formatted text into a kept String instead of format!',
};

/** The technique as a label; its class (for its colour) keeps letters only. */
function techniqueLabel(technique) {
  const name = String(technique);
  return el('span', {class: 'technique t-' + name.replace(/[^a-z]/g, ''), title: TECHNIQUES[name] || null}, name);
}

/** A hint's site: function and file:line. */
function hintSite(hint) {
  return el('span', {class: 'hint-site'}, el('span', {class: 'fn'}, fmtFunction(hint)), ' ', el('span', {class: 'loc', title: hint.file}, fmtLocation(hint)));
}

/** "~312k allocations/s (247k–377k) and 2.54 MiB/s; 91 % of all allocations, 15 % of bytes". */
function savingText(saving) {
  return '~' + fmtCount(saving.allocs_per_sec) + ' allocations/s (' + fmtCount(saving.allocs_per_sec_low) + '–' + fmtCount(saving.allocs_per_sec_high) +
    ') and ' + fmtByteRate(saving.bytes_per_sec) + '; ' + fmtShare(saving.share_of_allocs) + ' of all allocations, ' +
    fmtShare(saving.share_of_bytes) + ' of bytes allocated';
}

/** The evidence in one paragraph: samples, rate, sizes, lifetimes, threads. */
function evidenceText(e) {
  const parts = [
    fmtExact(e.samples) + ' samples over ' + fmtDuration(e.window_secs * 1000) + ': ~' + fmtCount(e.allocs_per_sec) + ' allocations/s, ' + fmtByteRate(e.bytes_per_sec) +
      ' (' + fmtShare(e.share_of_allocs) + ' of all allocations)',
    'sizes ' + fmtBytes(e.size_p10) + '–' + fmtBytes(e.size_p90) + ', median ' + fmtBytes(e.size_p50),
  ];
  if (e.lifetime_p50_ns !== null && e.lifetime_p50_ns !== undefined) {
    parts.push('lifetimes median ' + fmtNanos(e.lifetime_p50_ns) + ', 90th percentile ' + fmtNanos(e.lifetime_p90_ns));
  }
  if (e.same_thread !== null && e.same_thread !== undefined) parts.push(fmtShare(e.same_thread) + ' freed by the allocating thread');
  if (e.grown_chains > 0 && e.mean_growths !== null) parts.push(fmtExact(e.grown_chains) + ' grew by realloc, ' + trimNumber(e.mean_growths) + ' times on average');
  parts.push(fmtExact(e.threads) + ' thread' + (e.threads === 1 ? '' : 's'));
  return parts.join('; ') + '.';
}

/** The rule's share: "102 of 102 freed within 1 ms ... (at least 96 %, needed 80 %)". */
function ruleText(rule) {
  return fmtExact(rule.count) + ' of ' + fmtExact(rule.of) + ' ' + rule.property + ' (at least ' + fmtShare(rule.at_least) + ' at 95 %, needed ' + fmtShare(rule.bar) + ')';
}

/** One hint as a card: label, site, confidence, advice, saving, cost, and the rest on demand. */
function hintCard(hint, key) {
  const s = hint.saving;
  const confidence = String(hint.confidence);
  const head = el('div', {class: 'hint-head'}, techniqueLabel(hint.technique), ' ', hintSite(hint), ' ',
    el('span', {class: 'confidence c-' + confidence.replace(/[^a-z]/g, ''), title: hint.confidence_basis}, confidence + ' confidence'));
  const more = keptDetails(key, 'Why it might not fit, how to check, the evidence and the stack', () => {
    const facts = el('dl', {class: 'facts hint-facts'});
    const rows = [
      ['Why it might not fit', hint.why_not],
      ['How to check', hint.check],
      ['Confidence', confidence + ': ' + hint.confidence_basis],
      ['Evidence', evidenceText(hint.evidence)],
      hint.evidence.rule ? ['Rule', ruleText(hint.evidence.rule)] : null,
      ['Saving, bytes', fmtByteRate(s.bytes_per_sec) + ' (' + fmtByteRate(s.bytes_per_sec_low) + '–' + fmtByteRate(s.bytes_per_sec_high) + ', 95 %)'],
    ];
    for (const row of rows) if (row) facts.append(el('dt', {}, row[0]), el('dd', {}, row[1]));
    return el('div', {class: 'hint-body'}, facts, el('p', {class: 'hint-stack-title'}, 'Stack, innermost program frame first:'), stackList(hint.stack));
  });
  more.classList.add('hint-more');
  return el('li', {class: 'hint-card', 'data-technique': hint.technique}, head,
    el('p', {class: 'advice'}, hint.advice),
    el('p', {class: 'saving'}, el('span', {class: 'what'}, 'Saving: '), savingText(s)),
    el('p', {class: 'cost', title: fmtExact(s.memory_cost_bytes) + ' bytes'}, el('span', {class: 'what'}, 'Memory cost: '), s.memory_cost),
    more);
}

/** A site still collecting evidence: how many sampled blocks of how many, and about when. */
function collectingRow(c) {
  const eta = c.eta_secs === null || c.eta_secs === undefined ? 'time to go unknown' : 'about ' + fmtDuration(Math.max(1, c.eta_secs) * 1000) + ' to go';
  return el('li', {}, hintSite(c), ' ', el('span', {class: 'figures'},
    fmtExact(c.samples) + ' of ' + fmtExact(c.needed) + ' sampled blocks, ' + eta + ' (~' + fmtCount(c.evidence.allocs_per_sec) + ' allocations/s, ' +
      fmtShare(c.evidence.share_of_allocs) + ' of all)'));
}

/** A technique declined for a site, with the reason. */
function declinedRow(d) {
  return el('li', {}, techniqueLabel(d.technique), ' ', hintSite(d), ': ', el('span', {class: 'reason'}, d.reason));
}

/** Fills one of the "Collecting evidence" and "Declined" lists; its box shows only when it has rows. */
function fillHintRows(id, rows) {
  byId(id).replaceChildren(...rows);
  byId(id + '-box').hidden = rows.length === 0;
}

/** The Hints panel from the /api/hints body, ranked as served. */
function renderHints(body) {
  const panel = byId('panel-hints');
  const list = byId('hints');
  const hints = body.hints || [];
  const keys = siteKeys('hint', hints.map((h) => Object.assign({}, h, {function: h.technique + ' ' + h.function})));
  list.replaceChildren(...hints.map((h, i) => hintCard(h, keys[i])));
  list.dataset.count = String(hints.length);
  fillHintRows('hints-collecting', (body.collecting || []).map(collectingRow));
  fillHintRows('hints-declined', (body.declined || []).map(declinedRow));
  const span = fmtDuration(body.window_secs * 1000);
  const when = state.hintsAtMs ? ', read at ' + fmtClock(state.hintsAtMs) : '';
  const rate = body.sample_rate > 0 ? 'one sample per ' + fmtBytes(body.sample_rate) + ' allocated, on average' : 'sampling is off';
  let note;
  if (hints.length > 0) {
    note = 'From the sampled allocations of the last ' + span + ' (' + rate + '); refreshed every ' + HINTS_EVERY_TICKS + ' s' + when + '.';
  } else {
    note = 'Hints name, for the call sites that allocate most, the technique that would cut their allocations (preallocate, reuse, pool, stream, ' +
      'or format into a kept String), with the evidence, the estimated saving, its memory cost and a named confidence. None yet: they need traffic, ' +
      'a few dozen sampled blocks at a busy site (the last ' + span + ' had too few; ' + rate + '). Refreshed every ' + HINTS_EVERY_TICKS + ' s' + when + '.';
  }
  byId('hints-note').textContent = note;
  panel.dataset.state = hints.length > 0 ? 'ok' : 'empty';
}

/** The Hints panel of an exporter that serves no call sites. */
function renderHintsNotExposed() {
  byId('hints').replaceChildren();
  byId('hints').dataset.count = '0';
  fillHintRows('hints-collecting', []);
  fillHintRows('hints-declined', []);
  byId('hints-note').textContent = HINTS_NOT_EXPOSED;
  byId('panel-hints').dataset.state = 'not-exposed';
}

// ---------------------------------------------------------------------------
// Top call sites

/** A sites table saying that the exporter serves no call sites. */
function renderSitesDisabled(tableId) {
  const table = byId(tableId);
  table.replaceChildren(el('tbody', {}, el('tr', {}, el('td', {colspan: 3, class: 'empty'}, SITES_DISABLED))));
  table.dataset.rows = '0';
}

/** A table of call sites: function and location, in-use and allocated estimates, stack on demand. */
function renderSites(tableId, sites, kind) {
  const table = byId(tableId);
  const head = el('thead', {}, el('tr', {},
    el('th', {}, 'call site'),
    el('th', {class: 'num'}, 'in use'),
    el('th', {class: 'num'}, 'allocated')));
  const body = el('tbody');
  const keys = siteKeys(tableId, sites);
  sites.forEach((site, i) => {
    const key = keys[i];
    body.append(el('tr', {},
      el('td', {class: 'site'}, keptDetails(key, siteSummary(site), () => stackList(site.stack))),
      el('td', {class: 'num' + (kind === 'inuse' ? ' key' : '')}, fmtBytes(site.inuse_space), el('br'), el('span', {class: 'small'}, fmtCount(site.inuse_objects) + ' obj')),
      el('td', {class: 'num' + (kind === 'alloc' ? ' key' : '')}, fmtBytes(site.alloc_space), el('br'), el('span', {class: 'small'}, fmtCount(site.alloc_objects) + ' obj'))));
  });
  const none = kind === 'inuse' ? 'No sampled allocation is live.' : 'No sampled call site yet.';
  if (sites.length === 0) body.append(el('tr', {}, el('td', {colspan: 3, class: 'empty'}, none)));
  table.replaceChildren(head, body);
  table.dataset.rows = String(sites.length);
}

// ---------------------------------------------------------------------------
// Flame graph of the sampled in-use heap

/**
 * Builds the call tree from the sites' stacks. Each stack is innermost frame
 * first; the tree is rooted at the outermost one. Nodes are keyed by
 * function and location, and carry the in-use bytes of every site below.
 */
function buildFlameTree(sites) {
  const root = {key: 'root', frame: {function: 'all sampled in-use memory', file: '', line: 0}, value: 0, children: new Map()};
  for (const site of sites) {
    const bytes = site.inuse_space;
    if (!(bytes > 0)) continue;
    root.value += bytes;
    let node = root;
    const stack = site.stack && site.stack.length ? site.stack : [site];
    for (let i = stack.length - 1; i >= 0; i--) {
      const f = stack[i];
      const key = f.function + '\u0000' + f.file + '\u0000' + f.line;
      let child = node.children.get(key);
      if (!child) {
        child = {key, frame: f, value: 0, children: new Map()};
        node.children.set(key, child);
      }
      child.value += bytes;
      node = child;
    }
  }
  return root;
}

/** A stable colour per function: warm for the program, grey-blue for std and core, green for dependencies. */
function frameClass(frame) {
  const file = frame.file || '';
  if (/^\/rustc\/|\/library\/(std|core|alloc)\//.test(file)) return 'f-std';
  if (/\.cargo\/registry|\/vendor\//.test(file)) return 'f-dep';
  if (!file) return 'f-unknown';
  return 'f-app';
}

function hashHue(text) {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
  return Math.abs(h) % 40;
}

/** Follows state.flameFocus (a path of keys) from the root; stops where the tree no longer has it. */
function flameFocusPath(root) {
  const path = [root];
  for (const key of state.flameFocus) {
    const next = path[path.length - 1].children.get(key);
    if (!next) break;
    path.push(next);
  }
  state.flameFocus = path.slice(1).map((n) => n.key);
  return path;
}

/**
 * Draws the flame graph: the zoomed node spans the full width, its ancestors
 * are full-width bars above it, and every descendant is as wide as its share
 * of the zoomed node's bytes. Frames narrower than a pixel are not drawn.
 */
function renderFlame() {
  const container = byId('flame');
  const tree = buildFlameTree(state.sitesInuse ? state.sitesInuse.sites : []);
  const path = flameFocusPath(tree);
  const focus = path[path.length - 1];
  const width = Math.max(240, Math.floor(container.clientWidth));
  const rowH = 18;
  const rects = [];

  // Ancestors of the zoomed node, including it, as full-width rows.
  path.forEach((node, depth) => rects.push({node, depth, x: 0, w: width, ancestor: node !== focus, path: path.slice(1, depth + 1)}));
  // Descendants, laid out left to right by bytes, largest first.
  const walk = (node, depth, x, w, nodePath) => {
    let cx = x;
    const kids = [...node.children.values()].sort((a, b) => b.value - a.value);
    for (const kid of kids) {
      const kw = (kid.value / node.value) * w;
      if (kw >= 1) {
        const kidPath = nodePath.concat(kid.key);
        rects.push({node: kid, depth, x: cx, w: kw, ancestor: false, path: kidPath});
        walk(kid, depth + 1, cx, kw, kidPath);
      }
      cx += kw;
    }
  };
  walk(focus, path.length, 0, width, path.slice(1).map((n) => n.key));

  const depthMax = rects.reduce((d, r) => Math.max(d, r.depth), 0);
  const height = (depthMax + 1) * rowH + 2;
  const root = svgEl('svg', {width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'flame graph of the sampled in-use heap'});
  for (const r of rects) root.append(flameRect(r, rowH, tree.value));
  container.replaceChildren(root);
  container.dataset.points = String(tree.value > 0 ? rects.length - path.length : 0);
  if (tree.value === 0) {
    container.replaceChildren(el('p', {class: 'empty'}, 'No sampled allocation is live yet.'));
  }
}

/** One frame of the flame graph: a rect, its label if it fits, hover and click. */
function flameRect(r, rowH, total) {
  const f = r.node.frame;
  const isRoot = r.node.key === 'root';
  const cls = 'flame-frame ' + (isRoot ? 'f-root' : frameClass(f)) + (r.ancestor ? ' ancestor' : '');
  const g = svgEl('g', {class: cls, transform: `translate(${r.x.toFixed(1)},${r.depth * rowH})`});
  const pct = total > 0 ? (100 * r.node.value) / total : 0;
  const info = isRoot
    ? 'all sampled in-use memory: ' + fmtBytes(r.node.value)
    : fmtFunction(f) + ' — ' + fmtLocation(f) + ' — ' + fmtBytes(r.node.value) + ' in use (' + trimNumber(pct) + '% of sampled)';
  g.append(svgEl('rect', {width: Math.max(0.5, r.w - 0.5), height: rowH - 1, rx: 2, style: isRoot ? null : `--h:${hashHue(fmtFunction(f))}`}, svgTitle(info)));
  // Labels are cut to what fits at about 6.5 pixels a character.
  const chars = Math.floor((r.w - 6) / 6.5);
  if (chars >= 3) {
    const name = isRoot ? 'all: ' + fmtBytes(r.node.value) : shortFunction(fmtFunction(f));
    g.append(svgEl('text', {x: 3, y: rowH - 5}, name.length > chars ? name.slice(0, chars - 1) + '…' : name));
  }
  const show = () => {
    byId('flame-info').textContent = info;
  };
  g.addEventListener('pointerenter', show);
  g.addEventListener('click', () => {
    show();
    state.flameFocus = r.path;
    safely('panel-flame', renderFlame);
  });
  return g;
}

/** "alloc::vec::Vec<T,A>::push" -> "Vec<T,A>::push": the last two path segments, generics kept. */
function shortFunction(name) {
  const parts = name.split('::');
  return parts.length > 2 ? parts.slice(-2).join('::') : name;
}

// ---------------------------------------------------------------------------
// Start

/** Charts follow their container's width; redraw when it changes. */
function watchResize() {
  let pending = null;
  const redraw = () => {
    pending = null;
    if (state.snapshot) renderAll({sites: state.sitesInuse !== null, hints: false});
  };
  window.addEventListener('resize', () => {
    if (pending === null) pending = setTimeout(redraw, 150);
  });
}

watchResize();
loop();
