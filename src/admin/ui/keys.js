// The API Keys page: the list (search, status and workspace filters,
// paging) and each key's actions: edit, disable or enable, rotate, revoke.
// The create, edit and rotate forms are in keyform.js.

import { api, forget, getConfig, getWorkspaces } from './api.js';
import {
  applyReadOnly, cell, confirmAction, errorText, fill, h, money, notice,
  remember, time, writeButton,
} from './dom.js';
import { createKey, editKey, rotateKey } from './keyform.js';

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 250;

const STATUS = {
  active: { label: 'Active', cls: 'active' },
  inactive: { label: 'Disabled', cls: 'inactive' },
  deleted: { label: 'Revoked', cls: 'deleted' },
};

const COLUMNS = ['Name', 'Key', 'Status', 'Workspace', 'Created', 'Last used',
  'Expires', 'Usage', 'Actions'];

export async function render(main, params) {
  const [workspaces, config] = await Promise.all([getWorkspaces(), getConfig()]);
  const filters = {
    q: params.get('q') || '',
    status: params.get('status') || '',
    workspace: params.get('workspace') || '',
  };
  const live = h('div', { class: 'live', role: 'status', 'aria-live': 'polite' });
  const body = h('tbody');
  const table = h('table', { class: 'keys responsive' },
    h('caption', { class: 'visually-hidden', text: 'API keys' }),
    h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col', text: c })))),
    body);
  const area = h('div', { class: 'table-area' });
  const more = h('button', { type: 'button', class: 'secondary', text: 'Load more', hidden: true });
  let cursor = null;
  let generation = 0;

  const search = h('input', { type: 'search', name: 'q', id: 'keys-q', value: filters.q, autocomplete: 'off' });
  const status = h('select', { name: 'status', id: 'keys-status' },
    h('option', { value: '', text: 'Active and disabled' }),
    h('option', { value: 'active', text: 'Active' }),
    h('option', { value: 'inactive', text: 'Disabled' }),
    h('option', { value: 'deleted', text: 'Revoked' }),
    h('option', { value: 'all', text: 'All' }));
  status.value = filters.status;
  const workspace = h('select', { name: 'workspace', id: 'keys-workspace' },
    h('option', { value: '', text: 'All workspaces' }),
    workspaces.map((w) => h('option', { value: w.name, text: w.name })));
  workspace.value = filters.workspace;

  const ctx = { workspaces, config, reload: () => load(false), say };

  function say(text) {
    fill(live, text);
  }

  async function load(append) {
    const mine = ++generation;
    if (!append) {
      cursor = null;
      fill(area, notice('Loading keys…'));
    }
    more.disabled = true;
    let page;
    try {
      page = await api('GET', '/admin/v1/keys', {
        query: { ...filters, limit: PAGE_SIZE, cursor: append ? cursor : null },
      });
    } catch (err) {
      if (mine === generation) {
        fill(area, notice(errorText(err), 'error'));
      }
      return;
    }
    if (mine !== generation) {
      return; // a newer search has started
    }
    if (!append) {
      body.replaceChildren();
    }
    for (const k of page.data) {
      body.append(keyRow(k, ctx));
    }
    cursor = page.nextCursor;
    more.hidden = !cursor;
    more.disabled = false;
    if (body.children.length === 0) {
      const filtered = filters.q || filters.status || filters.workspace;
      fill(area, notice(filtered
        ? 'No keys match these filters.'
        : 'No API keys yet. Create one with Create key: its token is shown once.', 'empty'));
    } else {
      fill(area, table);
      applyReadOnly(table);
    }
  }

  function refilter() {
    filters.q = search.value.trim();
    filters.status = status.value;
    filters.workspace = workspace.value;
    remember('keys', filters);
    load(false);
  }

  let timer = null;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(refilter, SEARCH_DELAY_MS);
  });
  status.addEventListener('change', refilter);
  workspace.addEventListener('change', refilter);
  more.addEventListener('click', () => load(true));

  const create = writeButton('Create key', () => createKey(ctx), { class: 'primary' });
  const filterForm = h('form', { class: 'filters', role: 'search', onsubmit: (ev) => { ev.preventDefault(); refilter(); } },
    h('div', { class: 'field' }, h('label', { for: search.id, text: 'Search' }), search),
    h('div', { class: 'field' }, h('label', { for: status.id, text: 'Status' }), status),
    h('div', { class: 'field' }, h('label', { for: workspace.id, text: 'Workspace' }), workspace));
  fill(main,
    h('div', { class: 'page-head' }, h('h1', { text: 'API Keys' }), create),
    filterForm, live, area, more);
  applyReadOnly(main);
  await load(false);
  return () => clearTimeout(timer);
}

// "$0.42 of $10.00" with a bar, and the period's line when there is one.
function usageCell(k) {
  const lines = [];
  const limit = k.usageLimit === null ? null : Number(k.usageLimit);
  lines.push(h('span', {}, money(k.usage), limit === null ? ' · no limit' : ` of ${money(k.usageLimit)}`));
  if (limit !== null && limit > 0) {
    lines.push(h('meter', {
      min: 0, max: limit, value: Math.min(Number(k.usage), limit),
      high: limit * 0.8, optimum: 0, 'aria-hidden': 'true',
    }));
  }
  if (k.period) {
    lines.push(h('span', { class: 'small' }, `${money(k.periodUsage)} of ${money(k.periodLimit)} this ${k.period}`));
  }
  const rates = [[k.rpm, 'requests/min'], [k.tpm, 'tokens/min'], [k.maxConcurrent, 'at once']]
    .filter(([v]) => v !== null && v !== undefined).map(([v, unit]) => `${v} ${unit}`);
  if (rates.length) {
    lines.push(h('span', { class: 'small', text: rates.join(' · ') }));
  }
  return lines;
}

function statusCell(k) {
  const expired = k.status === 'active' && k.expiresAt && new Date(k.expiresAt) < new Date();
  const st = expired ? { label: 'Expired', cls: 'deleted' } : STATUS[k.status] || { label: k.status, cls: '' };
  return [h('span', { class: `badge ${st.cls}`, text: st.label }),
    k.graceUntil ? h('span', { class: 'small' }, ' old secret until ', time(k.graceUntil)) : null];
}

function keyRow(k, ctx) {
  const nameId = `key-name-${k.id}`;
  const described = { 'aria-describedby': nameId };
  const actions = h('div', { class: 'row-actions' });
  if (k.status !== 'deleted') {
    actions.append(
      writeButton('Edit', () => editKey(k, ctx), { class: 'secondary', ...described }),
      k.status === 'active'
        ? writeButton('Disable', () => transition(k, 'disable', ctx), { class: 'secondary', ...described })
        : writeButton('Enable', () => transition(k, 'enable', ctx), { class: 'secondary', ...described }),
      writeButton('Rotate', () => rotateKey(k, ctx), { class: 'secondary', ...described }),
      writeButton('Revoke', () => revoke(k, ctx), { class: 'danger', ...described }));
  }
  actions.append(h('a', { href: `#/usage?key=${encodeURIComponent(k.id)}`, class: 'link', text: 'Usage', ...described }));
  return h('tr', { data: { keyId: k.id } },
    h('th', { scope: 'row', 'data-label': 'Name' }, h('div', { class: 'cell' },
      h('span', { id: nameId, class: 'key-name', text: k.name }),
      k.description ? h('span', { class: 'small', text: k.description }) : null)),
    cell('Key', h('code', { text: k.display })),
    cell('Status', ...statusCell(k)),
    cell('Workspace', k.workspace),
    cell('Created', time(k.createdAt, '—', { date: true })),
    cell('Last used', time(k.lastUsedAt, 'Never', { ago: true })),
    cell('Expires', time(k.expiresAt, 'Never', { date: true })),
    cell('Usage', ...usageCell(k)),
    cell('Actions', actions));
}

async function transition(k, action, ctx) {
  try {
    await api('POST', `/admin/v1/keys/${encodeURIComponent(k.id)}/${action}`);
    forget('keys');
    ctx.say(`${action === 'disable' ? 'Disabled' : 'Enabled'} ${k.name}.`);
  } catch (err) {
    ctx.say(errorText(err));
  }
  await ctx.reload();
}

async function revoke(k, ctx) {
  const ok = await confirmAction(`Revoke ${k.name}?`,
    'Applications using this key are refused at once. Its usage history is kept. '
    + 'This cannot be undone.', 'Revoke key');
  if (!ok) {
    return;
  }
  try {
    await api('POST', `/admin/v1/keys/${encodeURIComponent(k.id)}/revoke`);
    forget('keys');
    ctx.say(`Revoked ${k.name}.`);
  } catch (err) {
    ctx.say(errorText(err));
  }
  await ctx.reload();
}
