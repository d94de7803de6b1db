// The Workspaces page: every workspace with its mode, credits and keys;
// for the selected one, changing its mode, adding or deducting credits,
// and setting, replacing or removing its provider credentials (which are
// never shown: only their last four characters).

import { api, configNames, forget, getConfig, listAll } from './api.js';
import {
  applyReadOnly, cell, clearErrors, confirmAction, count, errorText, field, fill, go, h,
  modal, notice, showError, time, writeButton,
} from './dom.js';

const MODES = ['api-keys', 'credits', 'hybrid'];
const MODES_HINT = 'api-keys: only its own provider credentials. credits: keygate\'s '
  + 'pool credentials, charged to its credits. hybrid: its own credential when set, '
  + 'else the pool with credits.';

function modeField(value) {
  const s = h('select', { name: 'mode' }, MODES.map((m) => h('option', { value: m, text: m })));
  s.value = value;
  return field('Mode', s, MODES_HINT);
}

// A form whose submit runs send(); errors go next to their fields.
function actionForm(submitLabel, fields, send) {
  const button = h('button', { type: 'submit', class: 'primary', text: submitLabel, 'data-write': true });
  const form = h('form', { class: 'inline-form', 'data-write': true }, ...fields,
    h('div', { class: 'actions' }, button),
    h('p', { class: 'form-error', role: 'alert', hidden: true }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    button.disabled = true;
    try {
      await send(form);
    } catch (err) {
      showError(form, err, { amount: 'amount', credential: 'credential' });
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export async function render(main, params) {
  const config = await getConfig();
  const live = h('div', { class: 'live', role: 'status', 'aria-live': 'polite' });
  const listArea = h('div', { class: 'table-area' }, notice('Loading workspaces…'));
  const detail = h('section', { class: 'workspace-detail', 'aria-live': 'polite' });
  const create = writeButton('Create workspace', () => createWorkspace(), { class: 'primary' });
  fill(main, h('div', { class: 'page-head' }, h('h1', { text: 'Workspaces' }), create),
    live, listArea, detail);
  applyReadOnly(main);

  const say = (text) => fill(live, text);
  let workspaces = [];

  async function load() {
    workspaces = await listAll('/admin/v1/workspaces');
    forget('workspaces');
    if (workspaces.length === 0) {
      fill(listArea, notice('No workspaces.', 'empty'));
      fill(detail);
      return;
    }
    const selected = workspaces.find((w) => w.name === params.get('ws')) || workspaces[0];
    fill(listArea, h('table', { class: 'responsive' },
      h('caption', { class: 'visually-hidden', text: 'Workspaces' }),
      h('thead', {}, h('tr', {}, ['Name', 'Mode', 'Credits', 'Keys', 'Created', 'Details'].map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, workspaces.map((w) => h('tr', { class: w === selected ? 'selected' : null },
        h('th', { scope: 'row', 'data-label': 'Name', id: `ws-${w.id}`, text: w.name }),
        cell('Mode', w.mode),
        cell('Credits', `$${w.creditsBalance}`),
        cell('Keys', count(w.keyCount)),
        cell('Created', time(w.createdAt, '—', { date: true })),
        cell('Details', h('a', {
          href: `#/workspaces?ws=${encodeURIComponent(w.name)}`,
          'aria-describedby': `ws-${w.id}`,
          'aria-current': w === selected ? 'true' : null,
          text: 'Manage',
        })))))));
    await renderDetail(selected);
  }

  async function renderDetail(w) {
    const creds = await listAll(`/admin/v1/workspaces/${encodeURIComponent(w.id)}/credentials`);
    const providers = configNames(config, 'provider');
    const modeForm = actionForm('Save mode', [modeField(w.mode)], async (form) => {
      await api('PATCH', `/admin/v1/workspaces/${encodeURIComponent(w.id)}`, { body: { mode: form.elements.mode.value } });
      say(`Saved the mode of ${w.name}.`);
      await load();
    });
    const creditForm = actionForm('Add credits', [
      field('Amount (USD)', h('input', { name: 'amount', inputmode: 'decimal', required: true, autocomplete: 'off' }),
        'A negative amount deducts (never below zero).'),
      field('Note', h('input', { name: 'note', autocomplete: 'off', maxlength: 200 })),
    ], async (form) => {
      const body = { amount: form.elements.amount.value.trim() };
      if (form.elements.note.value.trim()) {
        body.note = form.elements.note.value.trim();
      }
      await api('POST', `/admin/v1/workspaces/${encodeURIComponent(w.id)}/credits`, { body });
      say(`Credits of ${w.name} changed.`);
      await load();
    });
    const provider = h('select', { name: 'provider' }, providers.map((p) => h('option', { value: p, text: p })));
    const credForm = actionForm('Save credential', [
      field('Provider', provider),
      field('Credential', h('input', { type: 'password', name: 'credential', required: true, autocomplete: 'new-password', spellcheck: 'false' }),
        'Stored encrypted; replaces the provider\'s current one. It is never shown again, only its last four characters.'),
    ], async (form) => {
      const p = form.elements.provider.value;
      await api('PUT', `/admin/v1/workspaces/${encodeURIComponent(w.id)}/credentials/${encodeURIComponent(p)}`,
        { body: { credential: form.elements.credential.value } });
      form.elements.credential.value = '';
      say(`Saved the ${p} credential of ${w.name}.`);
      await load();
    });
    const credTable = creds.length === 0
      ? notice('No provider credentials of its own.', 'empty')
      : h('table', {},
        h('caption', { class: 'visually-hidden', text: 'Provider credentials' }),
        h('thead', {}, h('tr', {}, ['Provider', 'Ends with', 'Updated', 'Actions'].map((c) => h('th', { scope: 'col', text: c })))),
        h('tbody', {}, creds.map((c) => h('tr', {},
          h('th', { scope: 'row', id: `cred-${c.provider}`, text: c.provider }),
          h('td', {}, h('code', { text: `…${c.last4}` })),
          h('td', {}, time(c.updatedAt)),
          h('td', {}, writeButton('Remove', () => removeCredential(w, c.provider), { class: 'danger', 'aria-describedby': `cred-${c.provider}` }))))));
    fill(detail,
      h('h2', { text: `Workspace ${w.name}` }),
      h('div', { class: 'cards' },
        h('section', { class: 'card', 'aria-label': 'Mode' }, h('h3', { text: 'Mode' }), modeForm),
        h('section', { class: 'card', 'aria-label': 'Credits' }, h('h3', { text: 'Credits' }),
          h('p', {}, 'Balance: ', h('strong', { text: `$${w.creditsBalance}` })), creditForm),
        h('section', { class: 'card wide', 'aria-label': 'Provider credentials' }, h('h3', { text: 'Provider credentials' }),
          credTable, providers.length ? credForm : notice('No providers are configured.', 'empty')),
        h('p', {}, h('a', { href: `#/keys?workspace=${encodeURIComponent(w.name)}`, text: 'Keys of this workspace' }), ' · ',
          h('a', { href: `#/usage?workspace=${encodeURIComponent(w.name)}`, text: 'Usage of this workspace' }))));
    applyReadOnly(detail);
  }

  async function removeCredential(w, p) {
    const ok = await confirmAction(`Remove the ${p} credential?`,
      `Workspace ${w.name} will no longer use its own credential for ${p}.`, 'Remove credential');
    if (!ok) {
      return;
    }
    try {
      await api('DELETE', `/admin/v1/workspaces/${encodeURIComponent(w.id)}/credentials/${encodeURIComponent(p)}`);
      say(`Removed the ${p} credential of ${w.name}.`);
    } catch (err) {
      say(errorText(err));
    }
    await load();
  }

  function createWorkspace() {
    const dlg = modal('Create workspace');
    const form = actionForm('Create workspace', [
      field('Name', h('input', { name: 'name', required: true, maxlength: 64, autocomplete: 'off' })),
      modeField('api-keys'),
    ], async (f) => {
      const made = await api('POST', '/admin/v1/workspaces', {
        body: { name: f.elements.name.value.trim(), mode: f.elements.mode.value },
      });
      forget('workspaces');
      dlg.close();
      say(`Created workspace ${made.name}.`);
      go('workspaces', { ws: made.name });
    });
    form.querySelector('.actions').prepend(
      h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: dlg.close }));
    fill(dlg.body, form);
    form.elements.name.focus();
  }

  try {
    await load();
  } catch (err) {
    fill(listArea, notice(errorText(err), 'error'));
  }
}
