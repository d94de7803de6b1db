// The Usage page: filters (key by name, workspace, model, time range),
// totals, charts over time (requests, tokens, cost, latency p50/p95) with
// Debian's Chart.js, the request history with paging, and CSV exports.

import { api, apiUrl, configNames, getAllKeys, getConfig, getWorkspaces } from './api.js';
import {
  cell, count, errorText, fill, h, millis, notice, remember, time,
} from './dom.js';

const HISTORY_PAGE = 25;
// Time ranges: the usage query's bucket and start (relative to now).
const RANGES = {
  '24h': { label: 'Last 24 hours', by: 'hour', from: '24h' },
  '7d': { label: 'Last 7 days', by: 'day', from: '7d' },
  '30d': { label: 'Last 30 days', by: 'day', from: '30d' },
  '12m': { label: 'Last 12 months', by: 'month', from: '365d' },
  custom: { label: 'Custom dates…' },
};
const COLORS = {
  blue: '#1d4ed8', red: '#dc2626', teal: '#0f766e', amber: '#b45309', violet: '#7c3aed',
};
const HISTORY_COLUMNS = ['Time', 'Key', 'Model', 'Operation', 'Status', 'Tokens',
  'Cost', 'Latency', 'First token', 'Request id'];

// The range's query arguments: {by, from, to}.
function rangeQuery(f) {
  if (f.range !== 'custom') {
    const r = RANGES[f.range] || RANGES['24h'];
    return { by: r.by, from: r.from };
  }
  const from = f.from || new Date().toISOString().slice(0, 10);
  const end = new Date(`${f.to || from}T00:00:00Z`);
  end.setUTCDate(end.getUTCDate() + 1); // "to" includes its whole day
  const days = (end - new Date(`${from}T00:00:00Z`)) / 86400000;
  return { by: days <= 2 ? 'hour' : 'day', from, to: end.toISOString().slice(0, 10) };
}

// A short label for a bucket: "14:00" (with the date at midnight),
// "Dec 7", "Dec 2026".
function bucketLabel(iso, by) {
  const d = new Date(iso);
  if (by === 'hour') {
    const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    return d.getHours() === 0 ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) : hm;
  }
  if (by === 'month') {
    return d.toLocaleDateString(undefined, { month: 'short', year: 'numeric', timeZone: 'UTC' });
  }
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

// A dollar amount for an axis: "$0.000025", "$1.5".
function dollars(v) {
  return `$${Number(v).toFixed(6).replace(/\.?0+$/, '')}`;
}

// The key options: names, with a hint when a name is not unique or the
// key no longer works.
function keyOptions(keys) {
  const seen = new Map();
  for (const k of keys) {
    seen.set(k.name, (seen.get(k.name) || 0) + 1);
  }
  return [...keys].sort((a, b) => a.name.localeCompare(b.name)).map((k) => {
    const notes = [];
    if (seen.get(k.name) > 1) {
      notes.push(k.display);
    }
    if (k.status === 'deleted') {
      notes.push('revoked');
    } else if (k.status === 'inactive') {
      notes.push('disabled');
    }
    const text = notes.length ? `${k.name} (${notes.join(', ')})` : k.name;
    return h('option', { value: k.id, text });
  });
}

function select(name, id, options, value) {
  const s = h('select', { name, id }, options);
  s.value = value;
  if (s.value !== value) {
    s.value = '';
  }
  return s;
}

function labelled(label, control) {
  return h('div', { class: 'field' }, h('label', { for: control.id, text: label }), control);
}

export async function render(main, params) {
  const [keys, workspaces, config] = await Promise.all([getAllKeys(), getWorkspaces(), getConfig()]);
  const keyNames = new Map(keys.map((k) => [k.id, k.name]));
  const f = {
    key: params.get('key') || '',
    workspace: params.get('workspace') || '',
    model: params.get('model') || '',
    range: RANGES[params.get('range')] ? params.get('range') : '24h',
    from: params.get('from') || '',
    to: params.get('to') || '',
  };
  const charts = [];
  let cursors = [null]; // the cursor of each page seen; the last is the current
  let generation = 0;

  const keySel = select('key', 'usage-key', [h('option', { value: '', text: 'All keys' }), keyOptions(keys)], f.key);
  const wsSel = select('workspace', 'usage-workspace', [h('option', { value: '', text: 'All workspaces' }),
    workspaces.map((w) => h('option', { value: w.name, text: w.name }))], f.workspace);
  const modelSel = h('select', { name: 'model', id: 'usage-model' });
  const rangeSel = select('range', 'usage-range',
    Object.entries(RANGES).map(([v, r]) => h('option', { value: v, text: r.label })), f.range);
  const fromIn = h('input', { type: 'date', name: 'from', id: 'usage-from', value: f.from });
  const toIn = h('input', { type: 'date', name: 'to', id: 'usage-to', value: f.to });
  const custom = h('div', { class: 'custom-range', hidden: f.range !== 'custom' },
    labelled('From', fromIn), labelled('To', toIn));

  const totalsBox = h('section', { class: 'totals', 'aria-label': 'Totals' });
  const chartsBox = h('section', { class: 'charts', 'aria-label': 'Charts' });
  const historyBox = h('div', { class: 'table-area' });
  const pager = h('div', { class: 'pager' });
  const exports = h('div', { class: 'exports' });

  function fillModels(models) {
    const names = new Set([...configNames(config, 'model'), ...models]);
    if (f.model) {
      names.add(f.model);
    }
    fill(modelSel, h('option', { value: '', text: 'All models' }),
      [...names].sort().map((m) => h('option', { value: m, text: m })));
    modelSel.value = f.model;
  }
  fillModels([]);

  function filterQuery() {
    const r = rangeQuery(f);
    return { key: f.key, workspace: f.workspace, model: f.model, from: r.from, to: r.to };
  }

  async function loadAll() {
    const mine = ++generation;
    remember('usage', f);
    const r = rangeQuery(f);
    const q = filterQuery();
    fill(totalsBox, notice('Loading usage…'));
    cursors = [null];
    const historyDone = loadHistory();
    let usage;
    let byModel;
    try {
      [usage, byModel] = await Promise.all([
        api('GET', '/admin/v1/usage', { query: { ...q, by: r.by } }),
        api('GET', '/admin/v1/usage', { query: { ...q, model: null, by: r.by, group: 'model' } }),
      ]);
    } catch (err) {
      if (mine === generation) {
        fill(totalsBox, notice(errorText(err), 'error'));
        fill(chartsBox);
      }
      await historyDone;
      return;
    }
    if (mine !== generation) {
      return;
    }
    fillModels(byModel.groups.map((g) => g.group).filter(Boolean));
    renderTotals(usage.totals);
    renderCharts(usage, r.by);
    fill(exports,
      h('a', { class: 'button secondary', download: 'keygate-requests.csv', href: apiUrl('/admin/v1/usage/events', { ...q, format: 'csv' }) }, 'Export requests (CSV)'),
      h('a', { class: 'button secondary', download: 'keygate-usage.csv', href: apiUrl('/admin/v1/usage', { ...q, by: r.by, format: 'csv' }) }, 'Export totals over time (CSV)'));
    await historyDone;
  }

  function renderTotals(t) {
    const tile = (label, value, sub = null) => h('div', { class: 'tile' },
      h('dt', { text: label }), h('dd', {}, h('span', { class: 'big', text: value }), sub ? h('span', { class: 'small', text: sub }) : null));
    fill(totalsBox, h('dl', {},
      tile('Requests', count(t.requests), `${count(t.errors)} errors`),
      tile('Tokens', count(t.totalTokens), `${count(t.promptTokens)} in · ${count(t.completionTokens)} out`),
      tile('Cost', `$${t.cost}`),
      tile('Latency p50', millis(t.latencyMsP50)),
      tile('Latency p95', millis(t.latencyMsP95), t.latencyMsMax === null ? null : `max ${millis(t.latencyMsMax)}`)));
    if (t.requests === 0) {
      totalsBox.append(notice('No requests in this range for these filters.', 'empty'));
    }
  }

  function destroyCharts() {
    while (charts.length) {
      charts.pop().destroy();
    }
  }

  function renderCharts(usage, by) {
    destroyCharts();
    if (!window.Chart) {
      fill(chartsBox, notice('The charts could not be loaded.', 'error'));
      return;
    }
    const series = usage.groups.length ? usage.groups[0].series : [];
    const labels = series.map((p) => bucketLabel(p.start, by));
    const col = (name) => series.map((p) => p[name]);
    const unit = by === 'hour' ? 'hour' : by;
    const whole = { precision: 0 };
    const specs = [
      ['Requests', 'bar', [['Requests', col('requests'), COLORS.blue], ['Errors', col('errors'), COLORS.red]],
        `Requests per ${unit}: ${count(usage.totals.requests)} in all, ${count(usage.totals.errors)} errors.`, false, whole],
      ['Tokens', 'bar', [['Input', col('promptTokens'), COLORS.teal], ['Output', col('completionTokens'), COLORS.amber]],
        `Tokens per ${unit}: ${count(usage.totals.totalTokens)} in all.`, true, whole],
      ['Cost (USD)', 'bar', [['Cost', series.map((p) => Number(p.cost)), COLORS.violet]],
        `Cost per ${unit}: $${usage.totals.cost} in all.`, false, { callback: dollars }],
      ['Latency (ms)', 'line', [['p50', col('latencyMsP50'), COLORS.blue], ['p95', col('latencyMsP95'), COLORS.red]],
        `Latency per ${unit}: p50 ${millis(usage.totals.latencyMsP50)}, p95 ${millis(usage.totals.latencyMsP95)}.`, false, whole],
    ];
    chartsBox.replaceChildren();
    // Fewer labels on a narrow screen, so they never overlap.
    const xTicks = { maxRotation: 0, autoSkip: true, autoSkipPadding: 12, maxTicksLimit: window.innerWidth < 600 ? 4 : 8 };
    for (const [title, type, sets, summary, stacked, yTicks] of specs) {
      const canvas = h('canvas', { role: 'img', 'aria-label': summary }, summary);
      chartsBox.append(h('figure', { class: 'chart' },
        h('figcaption', { text: title }), h('div', { class: 'canvas-box' }, canvas)));
      charts.push(new window.Chart(canvas, {
        type,
        data: {
          labels,
          datasets: sets.map(([label, data, color]) => ({
            label, data, backgroundColor: color, borderColor: color, spanGaps: true, pointRadius: 2,
          })),
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: 'index', intersect: false },
          scales: {
            x: { stacked, ticks: xTicks },
            y: { stacked, beginAtZero: true, ticks: yTicks },
          },
          plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
        },
      }));
    }
  }

  async function loadHistory() {
    const mine = generation;
    fill(historyBox, notice('Loading requests…'));
    fill(pager);
    let page;
    try {
      page = await api('GET', '/admin/v1/usage/events', {
        query: { ...filterQuery(), limit: HISTORY_PAGE, cursor: cursors[cursors.length - 1] },
      });
    } catch (err) {
      if (mine === generation) {
        fill(historyBox, notice(errorText(err), 'error'));
      }
      return;
    }
    if (mine !== generation) {
      return;
    }
    if (page.data.length === 0) {
      fill(historyBox, notice('No requests match these filters.', 'empty'));
    } else {
      fill(historyBox, historyTable(page.data, keyNames));
    }
    const n = cursors.length;
    const prev = h('button', { type: 'button', class: 'secondary', text: 'Previous page', disabled: n === 1 });
    const next = h('button', { type: 'button', class: 'secondary', text: 'Next page', disabled: !page.nextCursor });
    prev.addEventListener('click', () => {
      cursors.pop();
      loadHistory();
    });
    next.addEventListener('click', () => {
      cursors.push(page.nextCursor);
      loadHistory();
    });
    fill(pager, prev, h('span', { class: 'small', text: `Page ${n}` }), next);
  }

  function onFilter() {
    f.key = keySel.value;
    f.workspace = wsSel.value;
    f.model = modelSel.value;
    f.range = rangeSel.value;
    f.from = fromIn.value;
    f.to = toIn.value;
    custom.hidden = f.range !== 'custom';
    if (f.range === 'custom' && !f.from) {
      fromIn.focus();
      return;
    }
    loadAll();
  }
  for (const control of [keySel, wsSel, modelSel, rangeSel, fromIn, toIn]) {
    control.addEventListener('change', onFilter);
  }

  fill(main,
    h('div', { class: 'page-head' }, h('h1', { text: 'Usage' }), exports),
    h('form', { class: 'filters', role: 'search', onsubmit: (ev) => ev.preventDefault() },
      labelled('Key', keySel), labelled('Workspace', wsSel), labelled('Model', modelSel),
      labelled('Time range', rangeSel), custom),
    totalsBox, chartsBox,
    h('h2', { text: 'Request history' }), historyBox, pager);
  await loadAll();
  return destroyCharts;
}

function historyTable(events, keyNames) {
  const rows = events.map((e) => h('tr', {},
    cell('Time', time(e.at)),
    cell('Key', keyNames.get(e.keyId) || e.keyId),
    cell('Model', e.model || '—'),
    cell('Operation', e.operation, e.streamed ? ' (stream)' : ''),
    cell('Status', h('span', { class: `status s${String(e.status)[0]}xx`, text: e.status }),
      e.errorCode ? ` ${e.errorCode}` : ''),
    cell('Tokens', count(e.totalTokens),
      h('span', { class: 'small', text: `${count(e.promptTokens)} in · ${count(e.completionTokens)} out` })),
    cell('Cost', `$${e.cost}`),
    cell('Latency', millis(e.latencyMs)),
    cell('First token', millis(e.ttftMs)),
    cell('Request id', h('code', { text: e.requestId }))));
  return h('table', { class: 'history responsive' },
    h('caption', { class: 'visually-hidden', text: 'Request history, newest first' }),
    h('thead', {}, h('tr', {}, HISTORY_COLUMNS.map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, rows));
}
