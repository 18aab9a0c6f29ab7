/**
 * The dashboard's two static files, as string constants: they ship inside the compiled module, so
 * there is no copy step in the build and no file read at run time (the same rule as the
 * migrations), and nothing comes from a CDN. The Content-Security-Policy allows scripts and styles
 * from the dashboard's own origin only, so these are the only script and stylesheet a page runs.
 */

/**
 * Live updates as progressive enhancement: every refreshIntervalMs, re-fetch the page the browser
 * shows and swap each element marked `data-live` for its namesake (same id) in the fresh copy.
 * Without JavaScript the pages are complete and a reload shows the same. A region holding the focus,
 * an opened <details> (a row being read) or a field typed into (a pause reason) is left alone —
 * unless its `data-live-key` changed: the queue was paused or resumed elsewhere, so the form it
 * holds offers the wrong action. A hidden tab does not poll (each refresh is a status read on the
 * server); it refreshes at once when shown again. Times are UTC `HH:MM:SSZ`, as on every page.
 */
export const LIVE_JS = `'use strict';
(function () {
  var body = document.body;
  var interval = Number(body.getAttribute('data-refresh-ms')) || 5000;
  var status = document.getElementById('live-status');
  var timer = null;
  var fetching = false;
  function regions() { return document.querySelectorAll('[data-live][id]'); }
  if (regions().length === 0) return;
  if (status) status.textContent = 'live';
  function hidden() { return document.visibilityState === 'hidden'; }
  function edited(region) {
    return Array.prototype.some.call(region.querySelectorAll('input, textarea'), function (field) {
      return field.value !== field.defaultValue || field.checked !== field.defaultChecked;
    });
  }
  function held(region) {
    return region.contains(document.activeElement) || region.querySelector('details[open]') !== null || edited(region);
  }
  function swap(fresh) {
    regions().forEach(function (region) {
      var next = fresh.getElementById(region.id);
      if (!next) return;
      if (held(region) && next.getAttribute('data-live-key') === region.getAttribute('data-live-key')) return;
      region.replaceWith(document.adoptNode(next));
    });
  }
  function refresh() {
    timer = null;
    fetching = true;
    if (status) status.setAttribute('aria-busy', 'true');
    fetch(location.href, { credentials: 'same-origin', cache: 'no-store', headers: { 'X-Txoutbox-Live': '1' } })
      .then(function (response) {
        var type = response.headers.get('content-type') || '';
        if (!response.ok || type.indexOf('text/html') !== 0) throw new Error('HTTP ' + response.status);
        return response.text();
      })
      .then(function (text) {
        swap(new DOMParser().parseFromString(text, 'text/html'));
        if (status) status.textContent = 'live, updated ' + new Date().toISOString().slice(11, 19) + 'Z';
        body.setAttribute('data-live-updated', String(Date.now()));
      })
      .catch(function () {
        if (status) status.textContent = 'live updates paused: the dashboard did not answer';
      })
      .then(function () {
        fetching = false;
        if (status) status.removeAttribute('aria-busy');
        schedule();
      });
  }
  function schedule() {
    if (timer === null && !fetching && !hidden()) timer = setTimeout(refresh, interval);
  }
  document.addEventListener('visibilitychange', function () {
    if (hidden()) {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    } else if (timer === null && !fetching) {
      refresh();
    }
  });
  schedule();
})();
`;

export const DASHBOARD_CSS = `:root {
  --fg: #1d232a; --muted: #5b6570; --line: #d8dde3; --bg: #ffffff; --panel: #f5f7f9;
  --accent: #1f5fbf; --ok: #1c7c3a; --warn: #a15c00; --bad: #b3261e;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
}
body { margin: 0; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header .brand { font-weight: 700; }
header nav a { margin-right: 1rem; }
header nav a[aria-current="page"] { font-weight: 700; text-decoration: none; color: var(--fg); }
header .meta { margin-left: auto; color: var(--muted); font-size: 12px; }
main { padding: 1rem 1.2rem 3rem; max-width: 1400px; }
a { color: var(--accent); }
h1 { font-size: 20px; margin: .2rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 16px; margin: 1.6rem 0 .6rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
/* Words break only when they must. A name (queue, consumer, exception type, header name) is as wide
   as it is, up to 16em: its box's width is also the column's minimum, so a wide body column cannot
   squeeze it ("webhook" / "s", "order-" / "events"); past 16em (a hostile 300-character name) it
   wraps, mid-word only where it has no other break. Times never wrap. The body column takes the
   width the others leave. */
.name { display: inline-block; width: max-content; max-width: 16em; white-space: normal; overflow-wrap: anywhere; }
td.time { white-space: nowrap; }
td.fill { width: 100%; overflow-wrap: anywhere; }
.clamp { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2; line-clamp: 2; overflow: hidden; }
pre { background: var(--panel); border: 1px solid var(--line); padding: .6rem; overflow: auto; max-height: 32rem; white-space: pre-wrap; overflow-wrap: anywhere; margin: .3rem 0; }
code { overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 3px; font-size: 12px; border: 1px solid currentColor; }
.badge.paused, .badge.bad { color: var(--bad); }
.badge.ok { color: var(--ok); }
.badge.muted { color: var(--muted); }
.notice { padding: .5rem .8rem; border: 1px solid var(--ok); color: var(--ok); margin-bottom: 1rem; }
.error { padding: .5rem .8rem; border: 1px solid var(--bad); color: var(--bad); margin-bottom: 1rem; }
.note { color: var(--muted); }
.warn { color: var(--warn); }
form.inline { display: inline; }
.actions { display: flex; gap: .6rem; flex-wrap: wrap; align-items: center; margin: .8rem 0; }
button, .button { font: inherit; padding: .25rem .7rem; border: 1px solid var(--accent); background: var(--bg); color: var(--accent); border-radius: 3px; cursor: pointer; text-decoration: none; }
button.danger, .button.danger { border-color: var(--bad); color: var(--bad); }
input, select { font: inherit; padding: .2rem .4rem; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.fields dt { color: var(--muted); }
dl.fields dd { margin: 0; overflow-wrap: anywhere; }
/* On the text's line, not under it: the bars hang from the line's top, the number beside its label. */
svg.spark { vertical-align: top; }
.spark-rate { margin-right: .5rem; }
svg.spark rect.handled { fill: var(--accent); }
svg.spark rect.failed { fill: var(--bad); }
svg.spark line { stroke: var(--line); }
.pager { margin-top: .8rem; display: flex; gap: 1rem; }
`;
