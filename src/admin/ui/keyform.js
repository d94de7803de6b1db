// The key forms of the API Keys page: create (name, description,
// workspace, expiry within the server's maximum, limits, access rules),
// edit, rotate — and the new token, shown once with a Copy button.

import { api, forget } from './api.js';
import {
  clearErrors, durationSeconds, errorText, field, fieldset, fill, h, modal,
  notice, uid,
} from './dom.js';

const DAY = 86400;
// Expiry choices (a key's ttl), offered when within the server's maximum.
const EXPIRY_PRESETS = [
  ['1d', '1 day'], ['7d', '7 days'], ['30d', '30 days'], ['90d', '90 days'],
  ['180d', '180 days'], ['365d', '1 year'],
];
// Grace periods offered when rotating.
const GRACE = [
  ['0s', 'Not at all: it stops now'], ['5m', '5 minutes'], ['1h', '1 hour'],
  ['24h', '24 hours'], ['7d', '7 days'],
];
// Access rules: the list rules (comma-separated in the form) and the caps.
const LIST_RULES = [
  ['allow_models', 'Allowed models', 'Glob patterns, e.g. gpt-4o*, claude-*'],
  ['deny_models', 'Denied models', null],
  ['allow_providers', 'Allowed providers', null],
  ['deny_providers', 'Denied providers', null],
  ['allow_operations', 'Allowed operations', 'chat, completions, embeddings, responses, messages, models, moderations, other'],
  ['deny_operations', 'Denied operations', null],
  ['allow_ip_cidrs', 'Allowed client addresses', 'CIDRs, e.g. 10.0.0.0/8, 2001:db8::/32'],
  ['deny_ip_cidrs', 'Denied client addresses', null],
];
const PRICE_RULES = [
  ['max_input_price', 'Max input price (USD per 1M tokens)'],
  ['max_output_price', 'Max output price (USD per 1M tokens)'],
];
const LIMITS = ['usageLimit', 'period', 'periodLimit', 'rpm', 'tpm', 'maxConcurrent'];

// The form control an API error's param belongs to: expiry fields share a
// control; a rules error names its rule ("rule allow_models: ...").
function controlFor(err) {
  if (err.param === 'ttl' || err.param === 'expiresAt') {
    return 'expiry';
  }
  if (err.param === 'rules') {
    const m = /rule (\w+)/.exec(err.message);
    return m ? m[1] : 'allow_models';
  }
  return err.param;
}

function showApiError(form, err) {
  const name = err && err.param ? controlFor(err) : null;
  const control = name ? form.querySelector(`[name="${CSS.escape(name)}"]`) : null;
  const line = control ? control.closest('.field').querySelector('.field-error') : null;
  if (line) {
    line.textContent = errorText(err);
    line.hidden = false;
    control.setAttribute('aria-invalid', 'true');
    const details = control.closest('details');
    if (details) {
      details.open = true;
    }
    control.focus();
    return;
  }
  const msg = form.querySelector('.form-error');
  msg.textContent = errorText(err);
  msg.hidden = false;
}

function input(name, props = {}) {
  return h('input', { name, autocomplete: 'off', ...props });
}

// The expiry choice: presets within maxTtl (0 = no maximum), a date, never.
function expiryField(config, key) {
  const maxTtl = durationSeconds(config.keys && config.keys.max_ttl);
  const defTtl = durationSeconds(config.keys && config.keys.default_ttl);
  const select = h('select', { name: 'expiry' });
  if (key) {
    select.append(h('option', { value: 'keep', text: key.expiresAt ? `Keep (${new Date(key.expiresAt).toLocaleDateString()})` : 'Keep (never expires)' }));
  } else {
    select.append(h('option', { value: 'default', text: defTtl ? `Server default (${config.keys.default_ttl})` : 'Server default (never)' }));
  }
  for (const [ttl, label] of EXPIRY_PRESETS) {
    if (!maxTtl || durationSeconds(ttl) <= maxTtl) {
      select.append(h('option', { value: ttl, text: `In ${label}` }));
    }
  }
  select.append(h('option', { value: 'date', text: 'On a date…' }));
  if (!maxTtl) {
    select.append(h('option', { value: 'never', text: 'Never' }));
  }
  const today = new Date().toISOString().slice(0, 10);
  const date = input('expiresAt', { type: 'date', min: today, hidden: true });
  if (maxTtl) {
    date.max = new Date(Date.now() + (maxTtl - DAY) * 1000).toISOString().slice(0, 10);
  }
  const dateLabel = h('label', { for: uid('x'), class: 'visually-hidden', text: 'Expiry date' });
  date.id = dateLabel.htmlFor;
  select.addEventListener('change', () => {
    date.hidden = select.value !== 'date';
    date.required = !date.hidden;
  });
  const hint = maxTtl
    ? `The server allows keys of at most ${config.keys.max_ttl}.`
    : 'The server sets no maximum lifetime.';
  const f = field('Expires', select, hint);
  f.insertBefore(h('span', {}, dateLabel, date), f.querySelector('.hint'));
  return f;
}

// The form's expiry as body fields (none when unchanged or the default).
function expiryBody(form) {
  const choice = form.elements.expiry.value;
  if (choice === 'keep' || choice === 'default') {
    return {};
  }
  if (choice === 'never') {
    return { expiresAt: null };
  }
  if (choice === 'date') {
    return { expiresAt: `${form.elements.expiresAt.value}T23:59:59Z` };
  }
  return { ttl: choice };
}

function limitsFieldset(key) {
  const v = (name) => (key && key[name] !== null && key[name] !== undefined ? String(key[name]) : '');
  const period = h('select', { name: 'period' },
    h('option', { value: '', text: 'No period limit' }),
    ['hour', 'day', 'week', 'month'].map((p) => h('option', { value: p, text: `Per ${p}` })));
  period.value = v('period');
  return fieldset('Limits',
    h('div', { class: 'grid' },
      field('Usage limit (USD)', input('usageLimit', { inputmode: 'decimal', placeholder: 'No limit', value: v('usageLimit') }),
        'Lifetime spend, e.g. 25.00'),
      field('Period', period, 'Calendar periods in UTC'),
      field('Period limit (USD)', input('periodLimit', { inputmode: 'decimal', placeholder: 'No limit', value: v('periodLimit') })),
      field('Requests per minute', input('rpm', { type: 'number', min: 0, placeholder: 'No limit', value: v('rpm') })),
      field('Tokens per minute', input('tpm', { type: 'number', min: 0, placeholder: 'No limit', value: v('tpm') })),
      field('Max concurrent requests', input('maxConcurrent', { type: 'number', min: 0, placeholder: 'No limit', value: v('maxConcurrent') }))));
}

function rulesFieldset(key) {
  const rules = (key && key.rules) || {};
  const listValue = (name) => (Array.isArray(rules[name]) ? rules[name].join(', ') : '');
  const details = h('details', { class: 'rules' },
    h('summary', { text: 'Access rules' }),
    h('p', { class: 'hint', text: 'Narrow what the key may use. Empty means no rule; the workspace\'s rules apply too.' }),
    h('div', { class: 'grid' },
      LIST_RULES.map(([name, label, hint]) => field(label, input(name, { value: listValue(name) }), hint)),
      PRICE_RULES.map(([name, label]) => field(label, input(name, { inputmode: 'decimal', value: rules[name] || '' })))));
  if (Object.keys(rules).length > 0) {
    details.open = true;
  }
  return details;
}

// The access rules of the form as the API's object (empty ones left out).
function rulesBody(form) {
  const rules = {};
  for (const [name] of LIST_RULES) {
    const items = form.elements[name].value.split(',').map((s) => s.trim()).filter(Boolean);
    if (items.length) {
      rules[name] = items;
    }
  }
  for (const [name] of PRICE_RULES) {
    const value = form.elements[name].value.trim();
    if (value) {
      rules[name] = value;
    }
  }
  return rules;
}

// The limits of the form: a number or string, or null when emptied.
function limitsBody(form) {
  const out = {};
  for (const name of LIMITS) {
    const raw = form.elements[name].value.trim();
    if (raw === '') {
      out[name] = null;
    } else if (['rpm', 'tpm', 'maxConcurrent'].includes(name)) {
      out[name] = /^\d+$/.test(raw) ? Number(raw) : raw;
    } else {
      out[name] = raw;
    }
  }
  return out;
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// The new token, once: a warning, the token, Copy, Done.
function revealToken(dlg, what, token) {
  const tokenInput = h('input', {
    name: 'token', readonly: true, class: 'mono token', value: token,
    autocomplete: 'off', spellcheck: 'false',
  });
  const copied = h('p', { class: 'small', role: 'status' });
  const copy = h('button', {
    type: 'button',
    class: 'primary',
    text: 'Copy',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(token);
        fill(copied, 'Copied to the clipboard.');
      } catch {
        tokenInput.select();
        fill(copied, 'Press Ctrl+C (or ⌘C) to copy the selected key.');
      }
    },
  });
  const field1 = field('API key', tokenInput);
  field1.classList.add('token-field');
  field1.append(h('div', { class: 'copy-row' }, copy, copied));
  fill(dlg.body,
    notice(what),
    h('p', { class: 'warning', role: 'alert' },
      h('strong', { text: 'Copy this key now. ' }), 'It will not be shown again: keygate keeps only a hash of it.'),
    field1,
    h('div', { class: 'actions' }, h('button', { type: 'button', text: 'Done', onclick: dlg.close })));
  copy.focus();
}

function formActions(dlg, submitLabel) {
  return [
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: dlg.close }),
      h('button', { type: 'submit', class: 'primary', text: submitLabel })),
  ];
}

// Submit form with send(); errors go next to their fields.
function onSubmit(form, send) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    if (!form.reportValidity()) {
      return;
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await send();
    } catch (err) {
      showApiError(form, err);
    } finally {
      button.disabled = false;
    }
  });
}

// The Create key dialog; ctx = {workspaces, config, reload, say}.
export function createKey(ctx) {
  const dlg = modal('Create key', { wide: true, onClose: () => ctx.reload() });
  const workspace = h('select', { name: 'workspace' },
    ctx.workspaces.map((w) => h('option', { value: w.name, text: w.name })));
  workspace.value = ctx.workspaces.some((w) => w.name === 'default') ? 'default' : workspace.value;
  const form = h('form', { novalidate: false },
    h('div', { class: 'grid' },
      field('Name', input('name', { required: true, maxlength: 64 }), 'A descriptive name, e.g. production-backend'),
      field('Workspace', workspace),
      field('Description', h('textarea', { name: 'description', maxlength: 1024, rows: 2 })),
      expiryField(ctx.config, null)),
    limitsFieldset(null),
    rulesFieldset(null),
    ...formActions(dlg, 'Create key'));
  onSubmit(form, async () => {
    const body = {
      name: form.elements.name.value.trim(),
      workspace: form.elements.workspace.value,
      ...expiryBody(form),
    };
    const description = form.elements.description.value.trim();
    if (description) {
      body.description = description;
    }
    for (const [name, value] of Object.entries(limitsBody(form))) {
      if (value !== null) {
        body[name] = value;
      }
    }
    const rules = rulesBody(form);
    if (Object.keys(rules).length) {
      body.rules = rules;
    }
    const made = await api('POST', '/admin/v1/keys', { body });
    forget('keys');
    ctx.say(`Created ${made.key.name}.`);
    revealToken(dlg, `Key ${made.key.name} created (${made.key.display}).`, made.token);
  });
  fill(dlg.body, form);
  form.elements.name.focus();
}

// The Edit dialog of key k: only the fields changed are sent.
export function editKey(k, ctx) {
  const dlg = modal(`Edit ${k.name}`, { wide: true });
  const form = h('form', {},
    h('div', { class: 'grid' },
      field('Name', input('name', { required: true, maxlength: 64, value: k.name })),
      field('Description', h('textarea', { name: 'description', maxlength: 1024, rows: 2, value: k.description || '' })),
      expiryField(ctx.config, k)),
    limitsFieldset(k),
    rulesFieldset(k),
    ...formActions(dlg, 'Save changes'));
  onSubmit(form, async () => {
    const body = { ...expiryBody(form) };
    const name = form.elements.name.value.trim();
    const description = form.elements.description.value.trim();
    if (name !== k.name) {
      body.name = name;
    }
    if (description !== (k.description || '')) {
      body.description = description;
    }
    const limits = limitsBody(form);
    for (const name1 of LIMITS) {
      if (!sameJson(limits[name1], k[name1] ?? null)) {
        body[name1] = limits[name1];
      }
    }
    // period and periodLimit go together.
    if ('period' in body || 'periodLimit' in body) {
      body.period = limits.period;
      body.periodLimit = limits.periodLimit;
    }
    const rules = rulesBody(form);
    if (!sameJson(rules, k.rules || {})) {
      body.rules = rules;
    }
    if (Object.keys(body).length === 0) {
      dlg.close();
      return;
    }
    const saved = await api('PATCH', `/admin/v1/keys/${encodeURIComponent(k.id)}`, { body });
    forget('keys');
    ctx.say(`Saved ${saved.name}.`);
    dlg.close();
    await ctx.reload();
  });
  fill(dlg.body, form);
  form.elements.name.focus();
}

// The Rotate dialog of key k: a grace period, then the new token once.
export function rotateKey(k, ctx) {
  const dlg = modal(`Rotate ${k.name}`, { onClose: () => ctx.reload() });
  const grace = h('select', { name: 'grace' },
    GRACE.map(([v, label]) => h('option', { value: v, text: label })));
  const form = h('form', {},
    h('p', { text: 'A new secret replaces the current one. The key keeps its id, name, limits, rules and history.' }),
    field('Old secret stays valid', grace, 'Time for applications to switch to the new key.'),
    ...formActions(dlg, 'Rotate'));
  onSubmit(form, async () => {
    const made = await api('POST', `/admin/v1/keys/${encodeURIComponent(k.id)}/rotate`, {
      body: { grace: grace.value },
    });
    forget('keys');
    ctx.say(`Rotated ${k.name}.`);
    revealToken(dlg, `Key ${k.name} rotated (${made.key.display}).`, made.token);
  });
  fill(dlg.body, form);
  grace.focus();
}
