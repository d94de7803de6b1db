// Small DOM helpers the pages share: elements, labelled form fields with
// their error messages, dialogs, notices, formatting of times, money and
// counts. Text always goes in as text (never as HTML).

import { canWrite } from './api.js';

let ids = 0;

// A fresh element id with a prefix.
export function uid(prefix = 'kg') {
  ids += 1;
  return `${prefix}-${ids}`;
}

// h('button', {type: 'button', onclick: fn, class: 'x'}, 'Text', child...)
// Properties starting with "on" add listeners; "text" sets the text;
// "data" an object of data-* values; true/false toggle boolean attributes.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'text') {
      el.textContent = String(value);
    } else if (name === 'data') {
      Object.assign(el.dataset, value);
    } else if (name === 'value') {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) {
      continue;
    }
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replace el's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A table cell with its column's name (shown beside the value when a
// table turns into cards on a narrow screen); content in one box.
export function cell(label, ...content) {
  return h('td', { 'data-label': label }, h('div', { class: 'cell' }, ...content));
}

// A notice (status, error, empty state) in a live region.
export function notice(text, kind = 'info') {
  const role = kind === 'error' ? 'alert' : 'status';
  return h('p', { class: `notice ${kind}`, role, text });
}

// An error for the user: the API's message without its generic prefix.
export function errorText(err) {
  const msg = err && err.message ? err.message : String(err);
  return msg.replace(/^Invalid request: /, '');
}

// A labelled control: {label, input, hint}. The control gets an id, the
// label points at it, and the hint and the error line describe it.
export function field(label, input, hint = null) {
  input.id = input.id || uid('f');
  const described = [];
  let hintEl = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: uid('hint'), text: hint });
    described.push(hintEl.id);
  }
  const errEl = h('p', { class: 'field-error', id: uid('err'), hidden: true });
  described.push(errEl.id);
  input.setAttribute('aria-describedby', described.join(' '));
  return h('div', { class: 'field', data: { field: input.name || '' } },
    h('label', { for: input.id, text: label }), input, hintEl, errEl);
}

// A group of fields with a legend.
export function fieldset(legend, ...fields) {
  return h('fieldset', {}, h('legend', { text: legend }), ...fields);
}

// Clear the error lines of a form.
export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error, .form-error')) {
    el.hidden = true;
    el.textContent = '';
  }
  for (const el of form.querySelectorAll('[aria-invalid]')) {
    el.removeAttribute('aria-invalid');
  }
}

// Show an API error next to the field it names (error.param, mapped by
// aliases {param: control name}), else at the form's end; focus it.
export function showError(form, err, aliases = {}) {
  const text = errorText(err);
  const name = err && err.param ? (aliases[err.param] || err.param) : null;
  const control = name ? form.querySelector(`[name="${CSS.escape(name)}"]`) : null;
  if (control) {
    const box = control.closest('.field');
    const line = box ? box.querySelector('.field-error') : null;
    if (line) {
      line.textContent = text;
      line.hidden = false;
      control.setAttribute('aria-invalid', 'true');
      control.focus();
      return;
    }
  }
  let line = form.querySelector('.form-error');
  if (!line) {
    line = h('p', { class: 'form-error', role: 'alert' });
    form.append(line);
  }
  line.textContent = text;
  line.hidden = false;
}

// A modal dialog with a title; returns {dialog, body, close}. It is
// removed from the page when closed (Escape, a Cancel button, close()).
export function modal(title, { onClose = null, wide = false } = {}) {
  const titleId = uid('dlg');
  const body = h('div', { class: 'dialog-body' });
  const dialog = h('dialog', { class: wide ? 'wide' : null, 'aria-labelledby': titleId },
    h('h2', { id: titleId, text: title }), body);
  const close = () => {
    if (dialog.open) {
      dialog.close();
    }
  };
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (onClose) {
      onClose();
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, body, close };
}

// Ask to confirm: resolves true when the confirm button was pressed.
export function confirmAction(title, message, confirmLabel) {
  return new Promise((resolve) => {
    let confirmed = false;
    const dlg = modal(title, { onClose: () => resolve(confirmed) });
    fill(dlg.body,
      h('p', { text: message }),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: dlg.close }),
        h('button', {
          type: 'button',
          class: 'danger',
          text: confirmLabel,
          onclick: () => {
            confirmed = true;
            dlg.close();
          },
        })));
    dlg.body.querySelector('button.secondary').focus();
  });
}

// Disable every control marked data-write (and every control of a form so
// marked) when the session is read-only.
export function applyReadOnly(root) {
  if (canWrite()) {
    return;
  }
  for (const el of root.querySelectorAll('[data-write]')) {
    for (const c of el.tagName === 'FORM' ? el.elements : [el]) {
      c.disabled = true;
      c.title = 'Read-only session';
    }
  }
}

// A button that changes something (disabled in read-only sessions).
export function writeButton(label, onclick, props = {}) {
  return h('button', { type: 'button', text: label, onclick, 'data-write': true, ...props });
}

// ---- the address ----------------------------------------------------------

function pageHash(page, params) {
  const q = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== '' && v !== null && v !== undefined));
  return `#/${page}${q.toString() ? `?${q}` : ''}`;
}

// Show another page (or the same one with other filters).
export function go(page, params = {}) {
  const hash = pageHash(page, params);
  if (location.hash === hash) {
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}

// Record a page's filters in the address without showing it again.
export function remember(page, params) {
  history.replaceState(null, '', pageHash(page, params));
}

// ---- formatting -----------------------------------------------------------

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const integer = new Intl.NumberFormat();

// <time> for an RFC 3339 value; empty is the text given (e.g. "Never").
export function time(iso, empty = '—', { date = false, ago = false } = {}) {
  if (!iso) {
    return h('span', { class: 'muted', text: empty });
  }
  const d = new Date(iso);
  const text = ago ? timeAgo(d) : (date ? dateOnly : dateTime).format(d);
  return h('time', { datetime: iso, title: iso, text });
}

function timeAgo(d) {
  const s = Math.round((d.getTime() - Date.now()) / 1000);
  const units = [['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [unit, size] of units) {
    if (Math.abs(s) >= size) {
      return relative.format(Math.round(s / size), unit);
    }
  }
  return relative.format(s, 'second');
}

// "$1.50" from the API's decimal string; null is the text given.
export function money(value, empty = 'No limit') {
  return value === null || value === undefined ? empty : `$${value}`;
}

// A whole number with thousands separators; null is "—".
export function count(n) {
  return n === null || n === undefined ? '—' : integer.format(n);
}

// Milliseconds as "12 ms" or "1.2 s"; null is "—".
export function millis(ms) {
  if (ms === null || ms === undefined) {
    return '—';
  }
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// Seconds of a keygate duration ("90d", "1h30m", "0s").
export function durationSeconds(text) {
  const units = { w: 604800, d: 86400, h: 3600, m: 60, s: 1 };
  let total = 0;
  for (const [, n, u] of String(text || '').matchAll(/(\d+)([wdhms])/g)) {
    total += Number(n) * units[u];
  }
  return total;
}
