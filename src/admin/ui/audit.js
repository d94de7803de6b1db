// The Audit page: who changed what, and when — every administrative change
// (keys, workspaces, credentials, admin tokens), newest first, filtered by
// action, object type, actor and time, a page at a time.

import { api, getAllKeys, getWorkspaces } from './api.js';
import { cell, errorText, fill, h, notice, remember, time } from './dom.js';

const PAGE_SIZE = 50;
const ACTIONS = ['create', 'update', 'disable', 'enable', 'rotate', 'revoke', 'delete',
  'mode', 'credit', 'credential-set', 'credential-delete'];
const OBJECT_TYPES = { key: 'Key', workspace: 'Workspace', admin_token: 'Admin token' };
const RANGES = { '': 'All time', '24h': 'Last 24 hours', '7d': 'Last 7 days', '30d': 'Last 30 days' };
// Fields of a created object worth a line in the summary.
const CREATE_FIELDS = ['name', 'workspace', 'display', 'mode', 'readOnly', 'expiresAt'];
const SUMMARY_MAX = 6;

function show(v) {
  if (v === null || v === undefined) {
    return 'none';
  }
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

// Lines that say what changed: "rpm: 600 → none", "status: active → deleted".
function summary(ev) {
  const d = ev.detail || {};
  if (d.changed && typeof d.changed === 'object') {
    const lines = Object.entries(d.changed).map(([k, c]) => `${k}: ${show(c.from)} → ${show(c.to)}`);
    return lines.length ? lines : ['no field changed'];
  }
  if ('from' in d && 'to' in d && Object.keys(d).length === 2) {
    return [`status: ${show(d.from)} → ${show(d.to)}`];
  }
  const fields = ev.action === 'create' ? CREATE_FIELDS.filter((k) => k in d) : Object.keys(d);
  return fields.slice(0, SUMMARY_MAX).map((k) => `${k}: ${show(d[k])}`);
}

export async function render(main, params) {
  const [keys, workspaces] = await Promise.all([getAllKeys(), getWorkspaces()]);
  const names = new Map([...keys.map((k) => [k.id, k.name]), ...workspaces.map((w) => [w.id, w.name])]);
  const f = {
    action: params.get('action') || '',
    'object-type': params.get('object-type') || '',
    actor: params.get('actor') || '',
    range: RANGES[params.get('range')] ? params.get('range') : '',
  };
  const live = h('div', { class: 'live', role: 'status', 'aria-live': 'polite' });
  const area = h('div', { class: 'table-area' });
  const body = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', text: 'Load more', hidden: true });
  let cursor = null;
  let generation = 0;

  const action = h('select', { name: 'action', id: 'audit-action' },
    h('option', { value: '', text: 'All actions' }), ACTIONS.map((a) => h('option', { value: a, text: a })));
  action.value = f.action;
  const type = h('select', { name: 'object-type', id: 'audit-type' },
    h('option', { value: '', text: 'All objects' }),
    Object.entries(OBJECT_TYPES).map(([v, t]) => h('option', { value: v, text: t })));
  type.value = f['object-type'];
  const actor = h('input', { name: 'actor', id: 'audit-actor', value: f.actor, autocomplete: 'off', 'aria-describedby': 'audit-actor-hint' });
  const range = h('select', { name: 'range', id: 'audit-range' },
    Object.entries(RANGES).map(([v, t]) => h('option', { value: v, text: t })));
  range.value = f.range;

  async function load(append) {
    const mine = ++generation;
    if (!append) {
      cursor = null;
      fill(area, notice('Loading the audit trail…'));
    }
    more.disabled = true;
    let page;
    try {
      page = await api('GET', '/admin/v1/audit', {
        query: {
          action: f.action, 'object-type': f['object-type'], actor: f.actor,
          from: f.range || null, limit: PAGE_SIZE, cursor: append ? cursor : null,
        },
      });
    } catch (err) {
      if (mine === generation) {
        fill(area, notice(errorText(err), 'error'));
      }
      return;
    }
    if (mine !== generation) {
      return;
    }
    if (!append) {
      body.replaceChildren();
    }
    for (const ev of page.data) {
      body.append(row(ev, names));
    }
    cursor = page.nextCursor;
    more.hidden = !cursor;
    more.disabled = false;
    fill(area, body.children.length
      ? h('table', { class: 'audit responsive' },
        h('caption', { class: 'visually-hidden', text: 'Audit trail, newest first' }),
        h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Object', 'Change'].map((c) => h('th', { scope: 'col', text: c })))),
        body)
      : notice('No changes match these filters.', 'empty'));
  }

  function refilter() {
    f.action = action.value;
    f['object-type'] = type.value;
    f.actor = actor.value.trim();
    f.range = range.value;
    remember('audit', f);
    load(false);
  }
  for (const s of [action, type, range]) {
    s.addEventListener('change', refilter);
  }
  more.addEventListener('click', () => load(true));

  const labelled = (label, control, hint = null) => h('div', { class: 'field' },
    h('label', { for: control.id, text: label }), control, hint);
  fill(main,
    h('div', { class: 'page-head' }, h('h1', { text: 'Audit' })),
    h('form', { class: 'filters', role: 'search', onsubmit: (ev) => { ev.preventDefault(); refilter(); } },
      labelled('Action', action), labelled('Object', type),
      labelled('Actor', actor, h('p', { class: 'hint', id: 'audit-actor-hint', text: 'Exact, e.g. cli:root; Enter to apply' })),
      labelled('Time range', range)),
    live, area, more);
  await load(false);
}

function row(ev, names) {
  const name = (ev.detail && typeof ev.detail.name === 'string' && ev.detail.name) || names.get(ev.objectId);
  return h('tr', {},
    cell('Time', time(ev.at)),
    cell('Actor', h('code', { text: ev.actor })),
    cell('Action', h('span', { class: 'badge', text: ev.action })),
    cell('Object', `${OBJECT_TYPES[ev.objectType] || ev.objectType} `,
      name ? h('strong', { text: name }) : null, ' ', h('code', { class: 'small', text: ev.objectId })),
    cell('Change', h('ul', { class: 'changes' }, summary(ev).map((line) => h('li', { text: line })))));
}
