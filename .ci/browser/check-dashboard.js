// Drives Debian's Chromium, headless, against the demo's live page and checks
// what a person would see. Run by .ci/check-dashboard.sh, which builds and
// starts the demo and passes:
//
//   DASHBOARD_URL   the demo's page, e.g. http://127.0.0.1:40123/
//   DEMO_PID        the demo's pid (this script kills it once to check that
//                   the page survives an exporter restart)
//   DEMO_CMD        a JSON array: the command that starts the demo again on
//                   the same address
//   DEMO_PIDFILE    where to write the pid of the restarted demo, so that the
//                   shell script's trap kills it too
//   ARTIFACTS       where the screenshots go
//   SPIKE_FUNCTION  the demo's allocating function, expected among a spike's
//                   top sites and in the Hints panel
//
// Every check prints one line; the first failed one ends the run with exit 1.

'use strict';

const fs = require('fs');
const path = require('path');
const {spawn} = require('child_process');
const {chromium} = require('playwright-core');

const url = process.env.DASHBOARD_URL;
const artifacts = process.env.ARTIFACTS || 'target/dashboard-artifacts';
const spikeFunction = process.env.SPIKE_FUNCTION || 'build_report';
const RUN_SECS = Number(process.env.RUN_SECS || 40); // watched for console errors
const SPIKE_SECS = Number(process.env.SPIKE_SECS || 60); // for a spike to show, from page load
// For a hint on the demo's code to show, from page load: the engine needs
// about 20 s of the demo's traffic and the page asks every 10 s.
const HINTS_SECS = Number(process.env.HINTS_SECS || 90);
const TECHNIQUES = ['preallocate', 'reuse', 'pool', 'stream', 'format'];

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const t0 = Date.now();
let passed = 0;

function log(msg) {
  console.log(`check-dashboard: [${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
}

function ok(msg) {
  passed++;
  log('ok: ' + msg);
}

class CheckFailed extends Error {}

function fail(msg) {
  throw new CheckFailed(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` (in node) until it returns a truthy value or `secs` pass. */
async function waitFor(what, secs, fn) {
  const deadline = Date.now() + secs * 1000;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) fail(`${what}: not within ${secs} s (last seen: ${JSON.stringify(last)})`);
    await sleep(250);
  }
}

/**
 * Answers the page's requests for `paths` with the exporter's JSON as
 * `edit` rewrites it. A request the exporter does not answer fails for the
 * page as it would have without the rewrite.
 */
function rewriteJSON(page, paths, edit) {
  return page.route((u) => paths.includes(u.pathname), async (route) => {
    let response;
    try {
      response = await route.fetch();
    } catch (e) {
      log(`  ${new URL(route.request().url()).pathname}: the exporter did not answer (${e.message.split('\n')[0]})`);
      await route.abort('connectionrefused');
      return;
    }
    const body = await response.json();
    edit(body);
    await route.fulfill({response, json: body});
  });
}

/** Every chart on the page: id -> its data-points. */
function chartPoints(page) {
  return page.$$eval('[data-chart]', (nodes) => Object.fromEntries(nodes.map((n) => [n.id, Number(n.dataset.points)])));
}

/** Records console errors and page errors; `phase` says which list they go to. */
function watchErrors(page, label) {
  const seen = {phase: 'load', errors: {load: [], failure: []}, pageErrors: []};
  page.on('console', (m) => {
    if (m.type() === 'error') seen.errors[seen.phase].push(`${label}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => seen.pageErrors.push(`${label}: page error: ${e.message}`));
  return seen;
}

function assertNoErrors(seen, what) {
  const errors = seen.errors.load.concat(seen.pageErrors);
  if (errors.length) fail(`${what}:\n  ${errors.join('\n  ')}`);
  ok(`${what}: no console errors, no page errors`);
}

/** The page shows something besides the reconnecting banner: tiles and charts with data. */
async function assertNotBlank(page, what) {
  const text = await page.evaluate(() => document.querySelector('main').innerText.trim());
  const visible = await page.isVisible('#chart-rate svg');
  if (text.length < 200 || !visible) fail(`${what}: the page looks blank (${text.length} characters of text, rate chart visible: ${visible})`);
}

/**
 * The first card of the Hints panel on the demo's own code, once it shows:
 * its technique, site, confidence, saving and memory cost as the page
 * writes them, each checked to be visible.
 */
async function hintCard(page, what, secs) {
  return waitFor(what, secs, async () => {
    const card = page.locator('#hints li.hint-card', {hasText: spikeFunction}).first();
    if ((await card.count()) === 0) {
      const state = await page.$eval('#panel-hints', (n) => n.dataset.state + ': ' + n.innerText.slice(0, 300)).catch((e) => e.message);
      throw new Error(state);
    }
    const part = async (sel) => {
      const node = card.locator(sel).first();
      return (await node.isVisible()) ? (await node.innerText()).replace(/\s+/g, ' ').trim() : null;
    };
    return {
      card,
      technique: await part('.technique'),
      site: await part('.hint-site'),
      confidence: await part('.confidence'),
      basis: await card.locator('.confidence').first().getAttribute('title'),
      saving: await part('.saving'),
      cost: await part('.cost'),
      advice: await part('.advice'),
    };
  });
}

/** The Hints panel: a hint on the demo's code with technique, site and saving, and its details on demand. */
async function checkHints(page, loadedAt) {
  const left = Math.max(5, HINTS_SECS - (Date.now() - loadedAt) / 1000);
  const hint = await hintCard(page, `the Hints panel shows a hint on ${spikeFunction}`, left);
  const problems = [];
  if (!TECHNIQUES.includes(hint.technique)) problems.push(`technique label ${JSON.stringify(hint.technique)} is none of ${TECHNIQUES.join(', ')}`);
  if (!hint.site || !hint.site.includes(spikeFunction) || !/demo\.rs:\d+/.test(hint.site)) problems.push(`site ${JSON.stringify(hint.site)} does not name ${spikeFunction} at demo.rs:LINE`);
  // "~312k allocations/s (247k–377k), 2.54 MiB/s; 91 % of all allocations"
  if (!hint.saving || !/~[\d.]+[kMG]? allocations\/s \([\d.]+[kMG]?–[\d.]+[kMG]?\)/.test(hint.saving) || !/[\d.]+ (B|KiB|MiB|GiB)\/s/.test(hint.saving) || !/% of all allocations/.test(hint.saving)) {
    problems.push(`saving ${JSON.stringify(hint.saving)} lacks "~N allocations/s (low–high)", a byte rate or a share of all allocations`);
  }
  if (!/^(high|medium) confidence$/.test(hint.confidence || '') || (hint.basis || '').length < 10) problems.push(`confidence ${JSON.stringify(hint.confidence)} with basis ${JSON.stringify(hint.basis)}`);
  if (!hint.cost || !/^Memory cost: /.test(hint.cost)) problems.push(`memory cost ${JSON.stringify(hint.cost)}`);
  if (!hint.advice || hint.advice.length < 20) problems.push(`advice ${JSON.stringify(hint.advice)}`);
  if (problems.length) fail('the Hints panel\'s card is incomplete: ' + problems.join('; '));
  const count = await page.$eval('#hints', (n) => Number(n.dataset.count));
  ok(`the Hints panel shows ${count} hint(s); on the demo's code: [${hint.technique}] ${hint.site} · ${hint.confidence} · ${hint.saving} · ${hint.cost}`);
  log('  advice: ' + hint.advice);
  // The collapsible part: why not, the check, the stack.
  await hint.card.locator('details.hint-more > summary').click();
  const more = await waitFor('a hint\'s details open on demand', 5, async () => {
    const body = hint.card.locator('details.hint-more[open]');
    if ((await body.count()) === 0) return null;
    const text = await body.innerText();
    const frames = await body.locator('.stack li').count();
    return /Why it might not fit/.test(text) && /How to check/.test(text) && /allocmeter::/.test(text) && frames > 0 ? {frames} : null;
  });
  ok(`a hint's details open on demand: why not, the check and a stack of ${more.frames} frames`);
  const extra = await page.evaluate(() => ({
    collecting: document.querySelectorAll('#hints-collecting li').length,
    declined: document.querySelectorAll('#hints-declined li').length,
    collectingShown: !document.querySelector('#hints-collecting-box').hidden,
    declinedShown: !document.querySelector('#hints-declined-box').hidden,
  }));
  if (extra.collectingShown !== extra.collecting > 0 || extra.declinedShown !== extra.declined > 0) fail('"Collecting evidence" and "Declined" show when, and only when, they have rows: ' + JSON.stringify(extra));
  ok(`"Collecting evidence" (${extra.collecting} row(s)) and "Declined" (${extra.declined} row(s)) show only when non-empty`);
}

async function checkDesktop(browser) {
  const context = await browser.newContext({viewport: {width: 1440, height: 900}});
  const page = await context.newPage();
  const seen = watchErrors(page, 'desktop');
  await page.goto(url, {waitUntil: 'load'});
  const loadedAt = Date.now();
  ok(`page loaded: ${await page.title()} at ${url}`);

  // Every chart draws data.
  const charts = await waitFor('every chart draws data', 30, async () => {
    const points = await chartPoints(page);
    // Two points at least: one point draws no line.
    return Object.values(points).every((n) => n >= 2) && Object.keys(points).length >= 7 ? points : null;
  });
  ok('every chart has drawn data: ' + Object.entries(charts).map(([id, n]) => `${id}=${n}`).join(' '));
  // The live heap's peak is marked on its chart, at the value /api/snapshot
  // gives (the line and its label; the dot too while the peak is in view).
  const peak = await page.$eval('#chart-live', (n) => ({
    value: Number(n.dataset.peak || 0),
    label: (n.querySelector('.peak-label') || {}).textContent || '',
  }));
  const snapPeak = await page.evaluate(async () => (await (await fetch('api/snapshot')).json()).peak);
  if (!(peak.value > 0) || peak.value > snapPeak.live_bytes || !peak.label.startsWith('peak ')) {
    fail(`the live heap's peak is not marked on its chart: ${JSON.stringify(peak)}, snapshot ${JSON.stringify(snapPeak)}`);
  }
  ok(`the live heap's peak is marked on its chart: "${peak.label}" (${peak.value} bytes; the snapshot says ${snapPeak.live_bytes})`);
  const rows = await page.$$eval('table.sites', (ts) => ts.map((t) => `${t.id}=${t.dataset.rows}`));
  if (!rows.every((r) => Number(r.split('=')[1]) > 0)) fail('top-sites tables are empty: ' + rows.join(' '));
  ok('top-sites tables have rows: ' + rows.join(' '));

  // Values change between two moments.
  const read = () => page.$eval('#v-alloc-bytes', (n) => ({text: n.textContent, value: Number(n.dataset.value)}));
  const a = await read();
  await sleep(3000);
  const b = await read();
  if (!(b.value > a.value)) fail(`"Allocated in all" did not grow in 3 s: ${JSON.stringify(a)} then ${JSON.stringify(b)}`);
  ok(`"Allocated in all" grew in 3 s: ${a.text} (${a.value}) -> ${b.text} (${b.value})`);
  const ratePoints = [await page.$eval('#chart-rate', (n) => Number(n.dataset.points))];
  await sleep(2000);
  ratePoints.push(await page.$eval('#chart-rate', (n) => Number(n.dataset.points)));
  if (!(ratePoints[1] > ratePoints[0])) fail(`the rate chart did not gain points in 2 s: ${ratePoints.join(' -> ')}`);
  ok(`the rate chart gains points live: ${ratePoints.join(' -> ')}`);

  // A spike is marked on the rate chart and listed with its top sites.
  const spike = await waitFor(`a spike marked on the rate chart and listed with ${spikeFunction}`, Math.max(5, SPIKE_SECS - (Date.now() - loadedAt) / 1000), async () => {
    const bands = await page.$eval('#chart-rate', (n) => Number(n.dataset.spikes));
    const band = await page.$('#chart-rate rect.spike-band');
    const items = await page.$$eval('#spikes li.spike', (ls) => ls.map((l) => ({id: l.dataset.spikeId, text: l.textContent})));
    const named = items.find((i) => i.text.includes(spikeFunction));
    return bands > 0 && band && named ? {bands, named, count: items.length} : null;
  });
  ok(`spike #${spike.named.id} marked on the rate chart (${spike.bands} band(s)) and listed (${spike.count} in the list) with top site ${spikeFunction}`);
  const spikeFigures = await page.$eval(`#spikes li.spike[data-spike-id="${spike.named.id}"] .spike-figures`, (n) => n.textContent);
  log('  ' + spikeFigures);
  // The stack of a spike's top site opens on demand.
  await page.click(`#spikes li.spike[data-spike-id="${spike.named.id}"] details summary`);
  const frames = await waitFor('a spike site\'s stack opens on demand', 5, () =>
    page.$$eval(`#spikes li.spike[data-spike-id="${spike.named.id}"] details[open] .stack li`, (ls) => ls.length));
  ok(`a spike site's stack opens on demand: ${frames} frames`);

  // The flame graph tells what is under the pointer.
  await page.hover('#flame g.flame-frame:not(.f-root) >> nth=0');
  const flameInfo = await page.textContent('#flame-info');
  if (!/ in use \(/.test(flameInfo)) fail('hovering a flame-graph frame shows no details: ' + flameInfo);
  ok('hovering a flame-graph frame shows: ' + flameInfo);
  // Clicking a frame zooms to it (its ancestors become full-width bars above); clicking the top bar zooms out.
  await page.click('#flame g.flame-frame:has-text("worker") >> nth=0');
  const zoomed = await page.$$eval('#flame g.ancestor', (gs) => gs.length);
  await page.click('#flame g.f-root');
  const unzoomed = await page.$$eval('#flame g.ancestor', (gs) => gs.length);
  if (!(zoomed > 0) || unzoomed !== 0) fail(`flame-graph zoom: ${zoomed} ancestor bars after clicking a frame, ${unzoomed} after clicking the top bar`);
  ok(`clicking a flame-graph frame zooms to it (${zoomed} ancestor bars), clicking the top bar zooms out`);

  await checkHints(page, loadedAt);

  // A run of RUN_SECS with no errors.
  const left = RUN_SECS * 1000 - (Date.now() - loadedAt);
  if (left > 0) {
    log(`watching the page for another ${Math.ceil(left / 1000)} s`);
    await sleep(left);
  }
  assertNoErrors(seen, `${Math.round((Date.now() - loadedAt) / 1000)} s of the live page`);
  const pageError = await page.isVisible('#page-error');
  if (pageError) fail('the page shows a script error: ' + (await page.textContent('#page-error')));

  fs.mkdirSync(artifacts, {recursive: true});
  await page.screenshot({path: path.join(artifacts, 'desktop.png'), fullPage: true});
  ok(`screenshot ${path.join(artifacts, 'desktop.png')} (1440x900, full page)`);
  return {context, page, seen};
}

async function checkPhone(browser) {
  const context = await browser.newContext({viewport: {width: 390, height: 844}, deviceScaleFactor: 2, isMobile: true, hasTouch: true});
  const page = await context.newPage();
  const seen = watchErrors(page, 'phone');
  await page.goto(url, {waitUntil: 'load'});
  await waitFor('every chart draws data at phone width', 30, async () => Object.values(await chartPoints(page)).every((n) => n > 0));
  // Give the spike list and history a moment to fill, and open a hint's
  // details (long paths and a stack), then check the width.
  const hint = await hintCard(page, 'a hint shows at phone width', 20);
  await hint.card.locator('details.hint-more > summary').click();
  await sleep(2000);
  const widths = await page.evaluate(() => ({doc: document.documentElement.scrollWidth, view: window.innerWidth}));
  if (widths.doc > widths.view) fail(`at phone width the page scrolls sideways: ${widths.doc} px wide in a ${widths.view} px viewport`);
  ok(`at 390x844 the page fits the width (${widths.doc} px, a hint's details open) and every chart draws`);
  assertNoErrors(seen, 'phone-width page');
  await page.screenshot({path: path.join(artifacts, 'phone.png'), fullPage: true});
  ok(`screenshot ${path.join(artifacts, 'phone.png')} (390x844, full page)`);
  await context.close();
}

/** Failing /api requests: the page says it is reconnecting, keeps its data, and recovers. */
async function checkFailingRequests(page, seen) {
  seen.phase = 'failure'; // console errors for the failed requests are expected from here on
  await page.route('**/api/**', (route) => route.abort('connectionrefused'));
  const banner = await waitFor('the reconnecting banner appears while /api fails', 10, async () =>
    (await page.isVisible('#banner')) ? page.textContent('#banner') : null);
  ok('with /api/* failing the page shows: ' + banner.replace(/\s+/g, ' ').trim());
  await assertNotBlank(page, 'while /api fails');
  ok('the page keeps its last data while /api fails (not blank)');
  await page.unroute('**/api/**');
  await waitFor('the banner goes away once /api answers again', 15, async () => !(await page.isVisible('#banner')));
  ok('once /api answers again the banner is gone and the status reads: ' + (await page.textContent('#status-text')));
}

/** A page opened while the exporter's API fails shows a message, not a blank page. */
async function checkFailingFromStart(browser) {
  const context = await browser.newContext({viewport: {width: 1440, height: 900}});
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.route('**/api/**', (route) => route.fulfill({status: 503, contentType: 'text/plain', body: 'unavailable'}));
  await page.goto(url, {waitUntil: 'load'});
  const banner = await waitFor('a message when the first requests fail', 10, async () =>
    (await page.isVisible('#banner')) ? page.textContent('#banner') : null);
  if (!/Reconnecting/.test(banner) || !/503/.test(banner)) fail('the banner does not say what failed: ' + banner);
  if (pageErrors.length) fail('page errors: ' + pageErrors.join('; '));
  ok('a page opened while /api answers 503 says so: ' + banner.replace(/\s+/g, ' ').trim());
  await page.unroute('**/api/**');
  await waitFor('that page draws once /api answers', 15, async () => Object.values(await chartPoints(page)).every((n) => n > 0));
  ok('and draws every chart once /api answers');
  await context.close();
}

/**
 * Names from the program are text, never markup: function names and file
 * paths in /api/sites and /api/spikes are rewritten to carry HTML, and the
 * page must show them literally and run none of it.
 */
async function checkEscaping(browser) {
  const context = await browser.newContext({viewport: {width: 1440, height: 900}});
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const evil = '<img src=x onerror="window.__injected=1">';
  const taint = (frame) => {
    frame.function = evil + frame.function;
    frame.file = '<b>' + frame.file;
  };
  // The hints' words too: advice, reasons, costs, the check.
  const taintHint = (hint) => {
    taint(hint);
    for (const k of ['technique', 'confidence_basis', 'advice', 'why_not', 'check', 'reason']) {
      if (typeof hint[k] === 'string') hint[k] = evil + hint[k];
    }
    if (hint.saving) hint.saving.memory_cost = evil + hint.saving.memory_cost;
    (hint.stack || []).forEach(taint);
  };
  await rewriteJSON(page, ['/api/sites', '/api/spikes', '/api/hints'], (body) => {
    if (body.hints) {
      [...body.hints, ...body.collecting, ...body.declined].forEach(taintHint);
    } else {
      for (const site of body.sites || body.spikes.flatMap((s) => s.top_sites)) {
        taint(site);
        site.stack.forEach(taint);
      }
    }
  });
  await page.goto(url, {waitUntil: 'load'});
  await waitFor('the tainted sites are drawn', 15, async () => Number(await page.$eval('#sites-alloc', (t) => t.dataset.rows)) > 0);
  await page.click('#sites-alloc details summary >> nth=0');
  await waitFor('the tainted hints are drawn', 15, async () => (await page.$$('#hints li.hint-card')).length > 0);
  await page.click('#hints details.hint-more > summary >> nth=0');
  await sleep(1500);
  const seen = await page.evaluate(() => ({
    injected: window.__injected,
    imgs: document.querySelectorAll('main img, main b').length,
    literal: document.querySelector('#sites-alloc').textContent.includes('<img src=x onerror='),
    flame: document.querySelector('#flame').textContent.includes('<img'),
    // function, technique, advice, memory cost, why not, check: six at least in one opened card
    hints: document.querySelector('#hints li.hint-card').textContent.split('<img src=x onerror=').length - 1,
  }));
  if (seen.injected !== undefined || seen.imgs > 0 || !seen.literal || !seen.flame || seen.hints < 6 || pageErrors.length) {
    fail('HTML in function names was not shown as text: ' + JSON.stringify(seen) + ' ' + pageErrors.join('; '));
  }
  ok(`HTML in function names, file paths and hints' words shows as text and runs nothing (tables, stacks, flame graph, ${seen.hints} places in a hint)`);
  await context.close();
}

/**
 * Hints need call sites: with an exporter that does not expose them, the
 * Hints panel says so, and nothing is an error. Both ways an exporter can
 * say it: /api/hints answering 404 (as it does with expose_profiles(false)),
 * and api/snapshot's profiles_exposed: false (then the page does not ask).
 */
async function checkHintsNotExposed(browser) {
  const setups = {
    'api/hints answers 404': async (page) => page.route((u) => u.pathname === '/api/hints', (route) => route.fulfill({status: 404, contentType: 'text/plain', body: 'not found'})),
    'profiles_exposed is false': async (page, asked) => {
      await rewriteJSON(page, ['/api/snapshot'], (body) => {
        body.profiles_exposed = false;
      });
      page.on('request', (r) => {
        if (new URL(r.url()).pathname === '/api/hints') asked.push(r.url());
      });
    },
  };
  for (const [how, setup] of Object.entries(setups)) {
    const context = await browser.newContext({viewport: {width: 1440, height: 900}});
    const page = await context.newPage();
    const pageErrors = [];
    const asked = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await setup(page, asked);
    await page.goto(url, {waitUntil: 'load'});
    const note = await waitFor(`with ${how}, the Hints panel says call sites are not exposed`, 15, async () => {
      const panel = await page.$eval('#panel-hints', (n) => ({state: n.dataset.state, text: n.querySelector('#hints-note').innerText.replace(/\s+/g, ' ').trim()}));
      return panel.state === 'not-exposed' ? panel.text : null;
    });
    // (The flame graph draws nothing here: it too needs call sites.)
    await waitFor('the time charts draw meanwhile', 15, async () => (await chartPoints(page))['chart-rate'] > 1);
    await sleep(1500); // a few more polls
    const seen = await page.evaluate(() => ({
      banner: !document.querySelector('#banner').hidden,
      pageError: !document.querySelector('#page-error').hidden,
      panelError: document.querySelectorAll('#panel-hints .panel-error').length,
      cards: document.querySelectorAll('#hints li.hint-card').length,
    }));
    if (!/not exposed/.test(note) || seen.banner || seen.pageError || seen.panelError || seen.cards || pageErrors.length || asked.length) {
      fail(`with ${how}: the Hints panel reads ${JSON.stringify(note)}; ${JSON.stringify(seen)}; page errors: ${pageErrors.join('; ')}; requests for /api/hints: ${asked.length}`);
    }
    ok(`with ${how}, the Hints panel reads "${note}", with no banner and no error`);
    await context.close();
  }
}

/**
 * The Hints panel's other states, from the exporter's own /api/hints
 * rewritten: no hints at all (the empty state says what the panel is for
 * and that it needs traffic), and a declined technique (a "Declined" row
 * with its technique, site and reason), which the demo's traffic does not
 * produce.
 */
async function checkHintsStates(browser) {
  const cases = {
    empty: (body) => {
      body.hints = [];
      body.collecting = [];
      body.declined = [];
    },
    declined: (body) => {
      body.declined = [{technique: 'pool', function: 'demo::declined_here', file: '/src/demo.rs', line: 7, reason: 'freed by the thread that allocated them: a kept buffer would do', evidence: body.hints.length ? body.hints[0].evidence : null}];
    },
  };
  for (const [name, edit] of Object.entries(cases)) {
    const context = await browser.newContext({viewport: {width: 1440, height: 900}});
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await rewriteJSON(page, ['/api/hints'], edit);
    await page.goto(url, {waitUntil: 'load'});
    const seen = await waitFor(`the Hints panel with ${name} hints`, 15, async () => {
      const panel = await page.evaluate(() => ({
        state: document.querySelector('#panel-hints').dataset.state,
        note: document.querySelector('#hints-note').innerText,
        cards: document.querySelectorAll('#hints li.hint-card').length,
        collecting: !document.querySelector('#hints-collecting-box').hidden,
        declined: document.querySelector('#hints-declined-box').hidden ? null : document.querySelector('#hints-declined').innerText.replace(/\s+/g, ' ').trim(),
      }));
      return panel.state === 'ok' || panel.state === 'empty' ? panel : null;
    });
    if (pageErrors.length) fail(`the Hints panel with ${name} hints: page errors: ${pageErrors.join('; ')}`);
    if (name === 'empty') {
      if (seen.state !== 'empty' || seen.cards || seen.collecting || seen.declined !== null || !/need traffic/.test(seen.note) || !/preallocate, reuse, pool, stream/.test(seen.note)) {
        fail('the Hints panel\'s empty state: ' + JSON.stringify(seen));
      }
      ok('with no hints, the Hints panel says what it is for and that it needs traffic: ' + seen.note);
    } else {
      if (!seen.declined || !/^pool demo::declined_here \/src\/demo\.rs:7: freed by the thread/.test(seen.declined)) fail('the "Declined" row: ' + JSON.stringify(seen));
      ok('a declined technique shows as a "Declined" row: ' + seen.declined);
    }
    await context.close();
  }
}

/**
 * The inner allocator's figures, which the demo (on System) does not have:
 * /api/snapshot is given jemalloc-like figures and the page must list them
 * in human units.
 */
async function checkInnerFigures(browser) {
  const context = await browser.newContext({viewport: {width: 1440, height: 900}});
  const page = await context.newPage();
  await rewriteJSON(page, ['/api/snapshot'], (body) => {
    body.inner = {
      allocator: 'jemalloc',
      figures: [
        {name: 'allocmeter_inner_resident_bytes', help: 'Bytes in physically resident data pages', value: 1610612736},
        {name: 'allocmeter_inner_allocated_bytes', help: 'Bytes allocated by the application', value: 52428800},
      ],
    };
  });
  await page.goto(url, {waitUntil: 'load'});
  const shown = await waitFor('the inner allocator\'s figures are listed', 10, async () => {
    const title = await page.textContent('#inner-title');
    const text = await page.textContent('#inner');
    return /jemalloc/.test(title) && /1\.5 GiB/.test(text) && /50 MiB/.test(text) ? title + ': ' + text : null;
  });
  ok('the inner allocator\'s figures are listed: ' + shown);
  await context.close();
}

/** The demo is killed and started again on the same address: the page reconnects and starts new series. */
async function checkRestart(page) {
  const pid = Number(process.env.DEMO_PID);
  const cmd = JSON.parse(process.env.DEMO_CMD || 'null');
  if (!pid || !cmd) {
    log('skipped the restart check: DEMO_PID or DEMO_CMD not set');
    return;
  }
  const before = await page.$eval('#chart-rate', (n) => Number(n.dataset.points));
  process.kill(pid, 'SIGTERM');
  await waitFor('the reconnecting banner appears when the demo is killed', 15, () => page.isVisible('#banner'));
  ok('demo killed: the page shows ' + (await page.textContent('#banner')).replace(/\s+/g, ' ').trim());
  await assertNotBlank(page, 'while the demo is down');
  await sleep(1500);
  const child = spawn(cmd[0], cmd.slice(1), {stdio: ['ignore', 'ignore', 'ignore']});
  child.unref(); // the shell script's trap stops it; node must not wait for it
  if (process.env.DEMO_PIDFILE) fs.appendFileSync(process.env.DEMO_PIDFILE, child.pid + '\n');
  log(`demo started again (pid ${child.pid})`);
  await waitFor('the page reconnects to the restarted demo', 20, async () => !(await page.isVisible('#banner')));
  const status = await page.textContent('#status-text');
  if (!/restarted/.test(status)) fail('the page did not notice the restart: ' + status);
  const after = await page.$eval('#chart-rate', (n) => Number(n.dataset.points));
  if (!(after < before)) fail(`the rate chart kept the old process's points: ${before} before, ${after} after`);
  ok(`the page reconnected to the restarted demo ("${status}"), rate chart restarted with ${after} point(s) (had ${before})`);
  await waitFor('charts draw again after the restart', 15, async () => Object.values(await chartPoints(page)).every((n) => n > 0));
  ok('every chart draws again after the restart');
}

async function main() {
  if (!url) fail('DASHBOARD_URL is not set');
  // launch() starts Chromium with a new, empty --user-data-dir of its own
  // (a temporary directory, removed on close); every context below is a
  // fresh profile inside it.
  const browser = await chromium.launch({executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS});
  log(`Chromium ${browser.version()} (headless, /usr/bin/chromium)`);
  try {
    const desktop = await checkDesktop(browser);
    await checkPhone(browser);
    await checkFailingRequests(desktop.page, desktop.seen);
    await checkFailingFromStart(browser);
    await checkEscaping(browser);
    await checkHintsNotExposed(browser);
    await checkHintsStates(browser);
    await checkInnerFigures(browser);
    await checkRestart(desktop.page);
    if (desktop.seen.pageErrors.length) fail(desktop.seen.pageErrors.join('; '));
    const pageError = await desktop.page.isVisible('#page-error');
    if (pageError) fail('the page shows a script error: ' + (await desktop.page.textContent('#page-error')));
    ok('no page errors in the whole run');
    await desktop.context.close();
  } finally {
    await browser.close();
  }
  console.log(`check-dashboard: ${passed} passed, 0 failed`);
}

main().then(() => process.exit(0), (e) => {
  log('FAILED: ' + (e instanceof CheckFailed ? e.message : e.stack));
  console.log(`check-dashboard: ${passed} passed, 1 failed`);
  process.exit(1);
});
