// CTest browser_dashboard: the operator's flow through keygate's dashboard
// in Debian's Chromium (headless, driven by playwright-core):
//
//   sign in with an admin token → create a key (a bad limit first: the
//   server's message shows next to its field) → copy it (read back from
//   the clipboard) → edit its limits and rules (a bad rule first) → a
//   real request through the gateway with it → that request in Usage,
//   filtered by the key, in the totals, the charts, the history and the CSV
//   export → rotate (the old secret refused) → revoke (the gateway refuses
//   the key) → workspaces: credits and a credential that is never shown →
//   the audit trail → keyboard and accessible names → the phone width →
//   sign out → a read-only session that finds no enabled write control.
//
// Throughout, a Content-Security-Policy violation listener must stay
// silent, no page may throw, and no request may leave the admin listener.
// A screenshot of each page, at 1280×800 and 390 px wide, goes to --out.
//
//   node dashboard_test.mjs --keygate BIN --mock BIN --out DIR
//
// It starts keygate-mock and `keygate serve` on ephemeral loopback ports
// in a temporary directory, and makes its admin tokens with the CLI.

import { chromium } from 'playwright-core';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const WAIT_MS = 15000; // every wait for a condition
const START_MS = 10000; // a process writing its port file
const STOP_MS = 10000; // a process exiting after SIGTERM
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const MODEL = 'mock-gpt';
// The visible labels of every control that changes something.
const WRITE_LABELS = ['Create key', 'Edit', 'Disable', 'Enable', 'Rotate', 'Revoke',
  'Create workspace', 'Save mode', 'Add credits', 'Save credential', 'Remove'];

// ---- small test harness ----------------------------------------------------

let passed = 0;
let failed = 0;

class Failure extends Error {}

function check(cond, msg) {
  if (!cond) {
    throw new Failure(msg);
  }
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${err instanceof Failure ? err.message : err.stack}`);
    throw err;
  }
}

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    out[argv[i].replace(/^--/, '')] = argv[i + 1];
  }
  for (const need of ['keygate', 'mock', 'out']) {
    if (!out[need]) {
      console.error('usage: dashboard_test.mjs --keygate BIN --mock BIN --out DIR');
      process.exit(2);
    }
  }
  return out;
}

// ---- the daemon and the mock --------------------------------------------------

class World {
  constructor(opts) {
    this.opts = opts;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-browser-'));
    fs.chmodSync(this.dir, 0o700);
    this.procs = [];
  }

  spawn(name, cmd, argv) {
    const log = fs.openSync(path.join(this.dir, `${name}.log`), 'w');
    const p = spawn(cmd, argv, { cwd: this.dir, stdio: ['ignore', log, log] });
    p.exitCodeOrSignal = null;
    p.on('exit', (code, signal) => { p.exitCodeOrSignal = code ?? signal; });
    this.procs.push({ name, p });
    return p;
  }

  async port(file, proc, name) {
    const deadline = Date.now() + START_MS;
    while (Date.now() < deadline) {
      const f = path.join(this.dir, file);
      if (fs.existsSync(f) && fs.statSync(f).size > 0) {
        return Number(fs.readFileSync(f, 'utf8').trim());
      }
      check(proc.exitCodeOrSignal === null, `${name} exited (${proc.exitCodeOrSignal}): ${this.log(name)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Failure(`${name} did not write ${file} in ${START_MS} ms: ${this.log(name)}`);
  }

  log(name) {
    try {
      return fs.readFileSync(path.join(this.dir, `${name}.log`), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '';
    }
  }

  kg(...argv) {
    return execFileSync(this.opts.keygate, ['-c', path.join(this.dir, 'keygate.ini'), ...argv],
      { cwd: this.dir, encoding: 'utf8', timeout: START_MS });
  }

  async start() {
    const mock = this.spawn('mock', this.opts.mock, ['--port', '0', '--port-file', 'mock.port']);
    const mockPort = await this.port('mock.port', mock, 'mock');
    fs.writeFileSync(path.join(this.dir, 'keygate.ini'), `[server]
listen = 127.0.0.1:0
threads = 1
[admin]
listen = 127.0.0.1:0
[store]
path = state/keygate.db
[security]
hash_key_file = state/hash.key
[provider mock]
type = openai
base_url = http://127.0.0.1:${mockPort}/v1
[model ${MODEL}]
provider = mock
upstream = gpt-4o-mini
input_price = 0.15
output_price = 0.60
`);
    this.kg('init');
    this.admin = JSON.parse(this.kg('--json', 'admin-tokens', 'create', '--name', 'ops')).token;
    this.readOnly = JSON.parse(this.kg('--json', 'admin-tokens', 'create', '--name', 'viewer', '--read-only')).token;
    this.batch = JSON.parse(this.kg('--json', 'keys', 'create', '--name', 'batch-jobs')).token;
    this.gw = this.spawn('keygate', this.opts.keygate, ['-c', 'keygate.ini', 'serve',
      '--port-file', 'gw.port', '--admin-port-file', 'admin.port']);
    this.gwUrl = `http://127.0.0.1:${await this.port('gw.port', this.gw, 'keygate')}`;
    this.adminUrl = `http://127.0.0.1:${await this.port('admin.port', this.gw, 'keygate')}`;
  }

  // SIGTERM everything; keygate must exit 0 (it drains and flushes).
  async stop() {
    let keygateExit = null;
    for (const { name, p } of this.procs.reverse()) {
      if (p.exitCodeOrSignal === null) {
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        const timer = new Promise((r) => setTimeout(r, STOP_MS, 'timeout'));
        if (await Promise.race([exited, timer]) === 'timeout') {
          console.log(`${name} ignored SIGTERM for ${STOP_MS} ms; killing it`);
          p.kill('SIGKILL');
        }
      }
      if (name === 'keygate') {
        keygateExit = p.exitCodeOrSignal;
      }
    }
    return keygateExit;
  }

  // One chat completion through the gateway: {status, requestId, body}.
  async chat(token) {
    const resp = await fetch(`${this.gwUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }] }),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    return { status: resp.status, requestId: resp.headers.get('x-request-id'), body: await resp.text() };
  }
}

// ---- page helpers ---------------------------------------------------------------

async function visible(locator) {
  await locator.first().waitFor({ state: 'visible', timeout: WAIT_MS });
  return locator.first();
}

async function gone(locator) {
  await locator.first().waitFor({ state: 'hidden', timeout: WAIT_MS });
}

async function open(page, w, hash, heading) {
  await page.goto(`${w.adminUrl}/#/${hash}`);
  await visible(page.getByRole('heading', { level: 1, name: heading }));
  await settled(page);
}

// Wait until the page has rendered and loaded what it shows.
async function settled(page) {
  await page.waitForFunction(() => !document.querySelector('main[aria-busy]') &&
    ![...document.querySelectorAll('main .notice')].some((n) => n.textContent.startsWith('Loading')),
  null, { timeout: WAIT_MS });
}

async function shot(page, out, name) {
  await page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });
}

// Interactive elements without an accessible name (label, text, aria-*).
function unnamedControls(page) {
  return page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('a[href], button, input, select, textarea, summary')) {
      if (el.type === 'hidden' || !el.getClientRects().length) {
        continue;
      }
      const named = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label') ||
        el.getAttribute('aria-labelledby') || el.textContent.trim() || el.title;
      if (!named) {
        bad.push(el.outerHTML.slice(0, 120));
      }
    }
    return bad;
  });
}

// Write controls the page shows enabled: those marked data-write (or in a
// form so marked) and every visible button with a write control's label.
function enabledWriteControls(page) {
  return page.evaluate((labels) => {
    const found = [];
    const controls = new Set(document.querySelectorAll('[data-write]'));
    for (const form of document.querySelectorAll('form[data-write]')) {
      for (const c of form.elements) {
        controls.add(c);
      }
    }
    for (const b of document.querySelectorAll('button')) {
      if (labels.includes(b.textContent.trim())) {
        controls.add(b);
      }
    }
    for (const c of controls) {
      if (c.tagName !== 'FORM' && c.getClientRects().length && !c.disabled) {
        found.push(c.outerHTML.slice(0, 100));
      }
    }
    return { found, seen: controls.size };
  }, WRITE_LABELS);
}

// ---- the flow ----------------------------------------------------------------------

async function flow(w, out) {
  const profile = fs.mkdtempSync(path.join(w.dir, 'chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking'],
    viewport: DESKTOP,
    acceptDownloads: true,
    permissions: ['clipboard-read', 'clipboard-write'],
    timeout: 60000,
  });
  const violations = [];
  const pageErrors = [];
  const foreign = [];
  try {
    await context.exposeBinding('kgCspViolation', (_src, v) => violations.push(v));
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.kgCspViolation({ directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber });
      });
    });
    context.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith(`${w.adminUrl}/`)) {
        foreign.push(url);
      }
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (/Content Security Policy|Trusted Type/i.test(m.text())) {
        violations.push({ console: m.text() });
      }
    });
    await run(page, context, w, out);
    await step('no CSP violation, no page error, no request to anyone else', async () => {
      check(violations.length === 0, `CSP violations: ${JSON.stringify(violations)}`);
      check(pageErrors.length === 0, `page errors: ${JSON.stringify(pageErrors)}`);
      check(foreign.length === 0, `requests outside the admin listener: ${JSON.stringify(foreign)}`);
      // The listener does hear a violation: an inline style attribute.
      await page.evaluate(() => document.body.setAttribute('style', 'color: red'));
      const deadline = Date.now() + WAIT_MS;
      while (violations.length === 0 && Date.now() < deadline) {
        await page.waitForTimeout(50);
      }
      check(violations.some((v) => /style-src/.test(v.directive || v.console || '')),
        'an inline style attribute raised no CSP violation: the listener hears nothing');
    });
  } finally {
    await context.close();
  }
}

async function run(page, context, w, out) {
  let token = null;
  let rotated = null;
  let requestId = null;

  await step('the sign-in page: strict CSP, no framing, no referrer', async () => {
    const resp = await page.goto(`${w.adminUrl}/`);
    const hd = resp.headers();
    check(resp.status() === 200, `GET / answered ${resp.status()}`);
    const csp = hd['content-security-policy'] || '';
    for (const want of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
      check(csp.includes(want), `CSP ${csp} lacks ${want}`);
    }
    check(!csp.includes('unsafe-inline') && !csp.includes('unsafe-eval'), `CSP allows inline code: ${csp}`);
    check(hd['referrer-policy'] === 'no-referrer', `Referrer-Policy: ${hd['referrer-policy']}`);
    await visible(page.getByRole('heading', { name: 'Sign in to keygate' }));
    await shot(page, out, 'signin-desktop');
  });

  await step('sign in: a wrong token is refused, the right one opens API Keys', async () => {
    await page.getByLabel('Admin token').fill('kgadm_AAAAAAAAAAAA_notatoken');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible(page.getByText('That admin token is not valid'));
    await page.getByLabel('Admin token').fill(w.admin);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible(page.getByRole('heading', { level: 1, name: 'API Keys' }));
    await visible(page.getByRole('row', { name: /batch-jobs/ }));
  });

  await step('the session is an HttpOnly SameSite=Strict cookie; the token is kept nowhere', async () => {
    const cookies = await context.cookies(w.adminUrl);
    const c = cookies.find((x) => x.name === 'kg_session');
    check(c, `no kg_session cookie: ${JSON.stringify(cookies)}`);
    check(c.httpOnly && c.sameSite === 'Strict' && c.expires > Date.now() / 1000,
      `cookie flags: ${JSON.stringify(c)}`);
    check(!c.value.includes(w.admin.split('_')[2]), 'the cookie holds the token');
    const stored = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie, location.href]));
    check(!stored.includes('kgadm_'), `the token is stored in the page: ${stored}`);
    check(!(await page.content()).includes(w.admin), 'the token is still in the page');
  });

  await step('search with no match shows the empty state', async () => {
    await page.getByLabel('Search').fill('no-such-key');
    await visible(page.getByText('No keys match these filters.'));
    await page.getByLabel('Search').fill('');
    await visible(page.getByRole('row', { name: /batch-jobs/ }));
  });

  await step('create a key: the server\'s message next to a bad field, then the token once', async () => {
    await page.getByRole('button', { name: 'Create key' }).click();
    const dialog = await visible(page.getByRole('dialog', { name: 'Create key' }));
    await dialog.getByLabel('Name').fill('checkout-service');
    await dialog.getByLabel('Description').fill('The checkout backend');
    await dialog.getByLabel('Usage limit (USD)').fill('ten dollars');
    await dialog.getByLabel('Requests per minute').fill('600');
    await dialog.getByRole('button', { name: 'Create key' }).click();
    const limit = dialog.getByLabel('Usage limit (USD)');
    await page.waitForFunction((el) => el.getAttribute('aria-invalid') === 'true', await limit.elementHandle());
    const described = await limit.evaluate((el) => el.getAttribute('aria-describedby').split(' ')
      .map((id) => document.getElementById(id).textContent).join(' '));
    check(/usageLimit/.test(described), `no server message by the field: "${described}"`);
    await limit.fill('10.00');
    await dialog.getByRole('button', { name: 'Create key' }).click();
    await visible(dialog.getByText('It will not be shown again'));
    token = await dialog.getByLabel('API key').inputValue();
    check(/^kg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$/.test(token), `not a key: ${token}`);
    await shot(page, out, 'key-created-desktop');
  });

  await step('Copy puts the token on the clipboard; Done removes it from the page', async () => {
    const dialog = page.getByRole('dialog', { name: 'Create key' });
    await dialog.getByRole('button', { name: 'Copy' }).click();
    await visible(dialog.getByText('Copied to the clipboard.'));
    const clip = await page.evaluate(() => navigator.clipboard.readText());
    check(clip === token, `the clipboard holds ${clip}`);
    await dialog.getByRole('button', { name: 'Done' }).click();
    await gone(page.getByRole('dialog'));
    check(!(await page.content()).includes(token), 'the token is still in the page');
    const row = await visible(page.getByRole('row', { name: /checkout-service/ }));
    const text = await row.textContent();
    check(/Active/.test(text) && /\$0\.00 of \$10\.00/.test(text) && /Never/.test(text), `row: ${text}`);
    await shot(page, out, 'keys-desktop');
  });

  await step('edit limits and rules: the server\'s message next to the rule', async () => {
    const row = await visible(page.getByRole('row', { name: /checkout-service/ }));
    await row.getByRole('button', { name: 'Edit' }).click();
    const dialog = await visible(page.getByRole('dialog', { name: 'Edit checkout-service' }));
    await dialog.getByText('Access rules').click();
    const models = dialog.getByLabel('Allowed models');
    await models.fill('[unclosed');
    await dialog.getByLabel('Requests per minute').fill('300');
    await dialog.getByRole('button', { name: 'Save changes' }).click();
    await page.waitForFunction((el) => el.getAttribute('aria-invalid') === 'true', await models.elementHandle());
    const said = await models.evaluate((el) => el.getAttribute('aria-describedby').split(' ')
      .map((id) => document.getElementById(id).textContent).join(' '));
    check(/allow_models/.test(said) && /glob/.test(said), `no server message by the rule: "${said}"`);
    await models.fill(`${MODEL.split('-')[0]}-*`);
    await dialog.getByRole('button', { name: 'Save changes' }).click();
    await gone(page.getByRole('dialog'));
    await visible(page.getByRole('row', { name: /checkout-service.*300 requests\/min/ }));
  });

  await step('the copied key works through the gateway', async () => {
    const r = await w.chat(token);
    check(r.status === 200, `the gateway answered ${r.status}: ${r.body}`);
    requestId = r.requestId;
    check(requestId, 'no x-request-id');
    const other = await w.chat(w.batch);
    check(other.status === 200, `the gateway answered ${other.status} to batch-jobs`);
  });

  await step('Usage filtered by the key shows the request: totals, charts, history', async () => {
    await page.getByRole('link', { name: 'Usage', exact: true }).first().click();
    await visible(page.getByRole('heading', { level: 1, name: 'Usage' }));
    await settled(page);
    check(await page.locator('table.history tbody tr').count() === 2, 'all keys: not 2 requests');
    await page.getByLabel('Key', { exact: true }).selectOption({ label: 'checkout-service' });
    await page.waitForFunction(() => document.querySelectorAll('table.history tbody tr').length === 1,
      null, { timeout: WAIT_MS });
    await settled(page);
    await visible(page.getByRole('row', { name: new RegExp(requestId) }));
    const tile = await page.locator('.tile', { hasText: 'Requests' }).locator('.big').textContent();
    check(tile === '1', `requests tile: ${tile}`);
    const sums = await page.evaluate(() => [...document.querySelectorAll('.charts canvas')]
      .map((c) => window.Chart.getChart(c).data.datasets[0].data.reduce((a, b) => a + (b || 0), 0)));
    check(sums.length === 4, `${sums.length} charts, want 4`);
    check(sums[0] === 1 && sums[1] === 10 && sums[2] > 0 && sums[3] >= 0, `chart sums ${sums}`);
    check(page.url().includes('key='), `the filter is not in the address: ${page.url()}`);
    await shot(page, out, 'usage-desktop');
  });

  await step('the CSV export holds the request', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: WAIT_MS }),
      page.getByRole('link', { name: 'Export requests (CSV)' }).click(),
    ]);
    const csv = fs.readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    check(csv.length === 2 && csv[0].startsWith('requestId,') && csv[1].startsWith(requestId),
      `CSV: ${csv.join(' | ')}`);
  });

  await step('rotate: a new token once; the old one is refused at once', async () => {
    await page.getByRole('link', { name: 'API Keys' }).click();
    const row = await visible(page.getByRole('row', { name: /checkout-service/ }));
    await row.getByRole('button', { name: 'Rotate' }).click();
    const dialog = await visible(page.getByRole('dialog', { name: 'Rotate checkout-service' }));
    check(await dialog.getByLabel('Old secret stays valid').inputValue() === '0s', 'grace is not 0s by default');
    await dialog.getByRole('button', { name: 'Rotate', exact: true }).click();
    await visible(dialog.getByText('It will not be shown again'));
    rotated = await dialog.getByLabel('API key').inputValue();
    check(rotated !== token && rotated.slice(0, 16) === token.slice(0, 16), `rotated: ${rotated}`);
    await dialog.getByRole('button', { name: 'Copy' }).click();
    await visible(dialog.getByText('Copied to the clipboard.'));
    check(await page.evaluate(() => navigator.clipboard.readText()) === rotated, 'the clipboard lacks the new token');
    await dialog.getByRole('button', { name: 'Done' }).click();
    await gone(page.getByRole('dialog'));
    const old = await w.chat(token);
    check(old.status === 401, `the old secret answered ${old.status}`);
    const now = await w.chat(rotated);
    check(now.status === 200, `the new secret answered ${now.status}: ${now.body}`);
  });

  await step('revoke with a confirmation; the gateway refuses the key', async () => {
    const row = await visible(page.getByRole('row', { name: /checkout-service/ }));
    await row.getByRole('button', { name: 'Revoke' }).click();
    const dialog = await visible(page.getByRole('dialog', { name: 'Revoke checkout-service?' }));
    await dialog.getByRole('button', { name: 'Revoke key' }).click();
    await gone(page.getByRole('row', { name: /checkout-service/ }));
    await page.getByLabel('Status').selectOption({ label: 'All' });
    const revoked = await visible(page.getByRole('row', { name: /checkout-service/ }));
    check(/Revoked/.test(await revoked.textContent()), 'the row does not say Revoked');
    check(await revoked.getByRole('button').count() === 0, 'a revoked key still has actions');
    const r = await w.chat(rotated);
    check(r.status === 401 && /Invalid keygate API token/.test(r.body), `revoked key: ${r.status} ${r.body}`);
  });

  await step('workspaces: create, add credits, set a credential that is never shown', async () => {
    const secret = 'sk-browser-test-credential-4242';
    await open(page, w, 'workspaces', 'Workspaces');
    await page.getByRole('button', { name: 'Create workspace' }).click();
    const dialog = await visible(page.getByRole('dialog', { name: 'Create workspace' }));
    await dialog.getByLabel('Name').fill('team-b');
    await dialog.getByLabel('Mode').selectOption('credits');
    await dialog.getByRole('button', { name: 'Create workspace' }).click();
    await visible(page.getByRole('heading', { name: 'Workspace team-b' }));
    await page.getByLabel('Amount (USD)').fill('25.00');
    await page.getByRole('button', { name: 'Add credits' }).click();
    await visible(page.getByText('Balance: $25.00'));
    await page.getByLabel('Credential', { exact: true }).fill(secret);
    await page.getByRole('button', { name: 'Save credential' }).click();
    await visible(page.getByText('…4242'));
    check(await page.getByLabel('Credential', { exact: true }).inputValue() === '', 'the credential stays in its field');
    check(!(await page.content()).includes(secret), 'the credential is in the page');
    await shot(page, out, 'workspaces-desktop');
  });

  await step('the audit trail says who did what', async () => {
    await open(page, w, 'audit', 'Audit');
    for (const action of ['revoke', 'rotate', 'credential-set', 'credit']) {
      await visible(page.getByRole('row', { name: new RegExp(`admin:\\S+ \\(ops\\).*${action}`) }));
    }
    await page.getByLabel('Action').selectOption('revoke');
    await visible(page.getByRole('row', { name: /checkout-service/ }));
    check(await page.locator('table.audit tbody tr').count() === 1, 'the action filter left other rows');
    await page.getByLabel('Action').selectOption('');
    await visible(page.getByRole('row', { name: /credential-set/ }));
    await shot(page, out, 'audit-desktop');
  });

  await step('keyboard: Tab reaches Create key, Enter opens it, Escape closes it', async () => {
    await open(page, w, 'keys', 'API Keys');
    await page.locator('body').focus();
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement.textContent.trim() === 'Create key');
    }
    check(reached, 'Tab never reached Create key');
    await page.keyboard.press('Enter');
    await visible(page.getByRole('dialog', { name: 'Create key' }));
    check(await page.evaluate(() => document.activeElement.name) === 'name', 'the Name field has no focus');
    await page.keyboard.press('Escape');
    await gone(page.getByRole('dialog'));
  });

  await step('every control of every page and dialog has an accessible name', async () => {
    const pages = [['keys', 'API Keys', 'Create key'], ['usage', 'Usage', null],
      ['workspaces', 'Workspaces', 'Create workspace'], ['audit', 'Audit', null]];
    for (const [hash, heading, dialog] of pages) {
      await open(page, w, hash, heading);
      let bad = await unnamedControls(page);
      check(bad.length === 0, `${heading}: controls without a name: ${bad.join(' ')}`);
      if (dialog) {
        await page.getByRole('button', { name: dialog }).click();
        await visible(page.getByRole('dialog', { name: dialog }));
        bad = await unnamedControls(page);
        check(bad.length === 0, `${dialog}: controls without a name: ${bad.join(' ')}`);
        await page.keyboard.press('Escape');
        await gone(page.getByRole('dialog'));
      }
    }
  });

  await step('a 390 px phone: every page fits its width', async () => {
    await page.setViewportSize(PHONE);
    for (const [hash, heading] of [['keys', 'API Keys'], ['usage', 'Usage'], ['workspaces', 'Workspaces'], ['audit', 'Audit']]) {
      await open(page, w, hash, heading);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      check(width <= PHONE.width, `${heading} is ${width} px wide on a ${PHONE.width} px screen`);
      await visible(page.getByRole('link', { name: 'Audit' }));
      await shot(page, out, `${hash}-phone`);
    }
    await page.setViewportSize(DESKTOP);
  });

  await step('sign out: the session ends and its cookie is gone', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await visible(page.getByRole('heading', { name: 'Sign in to keygate' }));
    await visible(page.getByText('You are signed out.'));
    const cookies = await context.cookies(w.adminUrl);
    check(!cookies.some((c) => c.name === 'kg_session'), 'the session cookie is still there');
    const r = await context.request.get(`${w.adminUrl}/admin/v1/keys`);
    check(r.status() === 401, `after sign-out /admin/v1/keys answered ${r.status()}`);
    await page.setViewportSize(PHONE);
    await shot(page, out, 'signin-phone');
    await page.setViewportSize(DESKTOP);
  });

  await step('a read-only session sees everything and finds no enabled write control', async () => {
    await page.getByLabel('Admin token').fill(w.readOnly);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible(page.getByText('Read-only session'));
    for (const [hash, heading] of [['keys?status=all', 'API Keys'], ['usage', 'Usage'],
      ['workspaces?ws=team-b', 'Workspaces'], ['audit', 'Audit']]) {
      await open(page, w, hash, heading);
      const { found, seen } = await enabledWriteControls(page);
      check(found.length === 0, `${heading}: enabled write controls: ${found.join(' ')}`);
      if (heading === 'API Keys') {
        check(seen >= 5, `API Keys shows only ${seen} write controls (batch-jobs has four)`);
        await visible(page.getByRole('row', { name: /checkout-service/ }));
        await shot(page, out, 'keys-readonly-desktop');
      }
    }
    const status = await page.evaluate(async () => {
      const s = await (await fetch('/admin/v1/session')).json();
      const r = await fetch('/admin/v1/workspaces', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrfToken },
        body: JSON.stringify({ name: 'not-allowed' }),
      });
      return r.status;
    });
    check(status === 403, `a read-only write answered ${status}`);
  });
}

async function main() {
  const opts = args();
  const w = new World(opts);
  let code = 1;
  try {
    await step('start keygate-mock and keygate serve', () => w.start());
    await flow(w, opts.out);
    code = 0;
  } catch (err) {
    if (!(err instanceof Failure)) {
      console.log(err.stack);
    }
    console.log(`---- keygate log\n${w.log('keygate')}`);
  } finally {
    const exit = await w.stop();
    if (code === 0 && exit !== 0) {
      console.log(`keygate exited with ${exit} on SIGTERM, want 0`);
      failed += 1;
      code = 1;
    }
    fs.rmSync(w.dir, { recursive: true, force: true });
  }
  console.log(`browser_dashboard: screenshots in ${opts.out}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code);
}

main();
