// The dashboard's shell: the sign-in form, the signed-in header with
// sign-out, and moving between the pages (#/keys, #/usage, #/workspaces,
// #/audit) as the address's fragment changes.

import { ApiError, currentSession, loadSession, onSessionLost, signIn, signOut } from './api.js';
import { errorText, fill, h, notice } from './dom.js';
import * as keys from './keys.js';
import * as usage from './usage.js';
import * as workspaces from './workspaces.js';
import * as audit from './audit.js';

const PAGES = {
  keys: { title: 'API Keys', render: keys.render },
  usage: { title: 'Usage', render: usage.render },
  workspaces: { title: 'Workspaces', render: workspaces.render },
  audit: { title: 'Audit', render: audit.render },
};
const DEFAULT_PAGE = 'keys';

const main = document.getElementById('main');
const top = document.getElementById('top');
let leave = null; // the current page's clean-up, if it has one
let signedOutMessage = null;

// "#/usage?key=abc" → {page: 'usage', params: URLSearchParams}
function parseHash() {
  const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [name, query = ''] = hash.split('?');
  return { page: PAGES[name] ? name : DEFAULT_PAGE, params: new URLSearchParams(query) };
}

function showHeader(s) {
  top.hidden = false;
  fill(document.getElementById('who'),
    h('span', { class: 'who-name', text: s.name }), ' ',
    h('span', { class: `badge ${s.readOnly ? 'inactive' : 'active'}`, text: s.readOnly ? 'Read-only' : 'Read-write' }));
  document.getElementById('read-only-banner').hidden = !s.readOnly;
}

function hideHeader() {
  top.hidden = true;
  document.getElementById('read-only-banner').hidden = true;
}

async function show() {
  if (leave) {
    leave();
    leave = null;
  }
  const s = currentSession();
  if (!s) {
    renderSignIn();
    return;
  }
  showHeader(s);
  const { page, params } = parseHash();
  for (const a of top.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === page) {
      a.setAttribute('aria-current', 'page');
    } else {
      a.removeAttribute('aria-current');
    }
  }
  document.title = `${PAGES[page].title} · keygate`;
  main.replaceChildren();
  main.setAttribute('aria-busy', 'true');
  try {
    leave = (await PAGES[page].render(main, params)) || null;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      fill(main, h('h1', { text: PAGES[page].title }), notice(errorText(err), 'error'));
    }
  } finally {
    main.removeAttribute('aria-busy');
  }
}

function renderSignIn() {
  hideHeader();
  document.title = 'Sign in · keygate';
  const token = h('input', {
    type: 'password', name: 'token', id: 'token', required: true,
    autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-hint',
  });
  const status = h('div', { class: 'signin-status' });
  const button = h('button', { type: 'submit', text: 'Sign in' });
  // method=post: should the script ever not run, the token still never
  // lands in an address.
  const form = h('form', { class: 'signin', method: 'post', action: '/admin/v1/session', novalidate: true },
    h('h1', { text: 'Sign in to keygate' }),
    h('div', { class: 'field' },
      h('label', { for: 'token', text: 'Admin token' }), token,
      h('p', { class: 'hint', id: 'token-hint' },
        'An admin token (kgadm_…), made on the server with ',
        h('code', { text: 'keygate admin-tokens create --name NAME' }),
        '. It is exchanged for a session cookie and not kept by this page.')),
    button, status);
  if (signedOutMessage) {
    status.append(notice(signedOutMessage));
    signedOutMessage = null;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = token.value.trim();
    if (!value) {
      fill(status, notice('Enter an admin token.', 'error'));
      token.focus();
      return;
    }
    button.disabled = true;
    fill(status, notice('Signing in…'));
    try {
      await signIn(value);
      token.value = '';
      if (!location.hash.startsWith('#/')) {
        history.replaceState(null, '', `#/${DEFAULT_PAGE}`);
      }
      await show();
      main.focus();
    } catch (err) {
      const msg = err instanceof ApiError && err.status === 401
        ? 'That admin token is not valid (unknown, revoked or expired).'
        : errorText(err);
      fill(status, notice(msg, 'error'));
      button.disabled = false;
      token.focus();
    }
  });
  fill(main, form);
  token.focus();
}

async function start() {
  document.getElementById('skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
  });
  document.getElementById('sign-out').addEventListener('click', async () => {
    try {
      await signOut();
    } catch {
      // Signed out here whatever the daemon said; the cookie ends anyway.
    }
    signedOutMessage = 'You are signed out.';
    history.replaceState(null, '', location.pathname);
    await show();
  });
  onSessionLost(() => {
    signedOutMessage = 'Your session has ended. Sign in again.';
    show();
  });
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#/') && currentSession()) {
      show();
    }
  });
  try {
    await loadSession();
  } catch (err) {
    fill(main, notice(errorText(err), 'error'));
    return;
  }
  await show();
}

start();
