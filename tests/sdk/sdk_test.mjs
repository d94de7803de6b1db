// keygate driven by the official OpenAI and Anthropic JavaScript SDKs, used
// the way an application uses them: base URL + keygate key, nothing else.
//
// Environment (set by run.sh):
//   KG_URL          the gateway root, e.g. http://127.0.0.1:41709
//   KG_KEY          a keygate key (kg_<id>_<secret><check>)
//   KG_RESULT_FILE  optional: where to write {"passed","failed","forwarded"}
//                   so run.sh can check the usage rows keygate recorded
//
// The gateway is expected to serve the configuration of scripts/run-dev
// (models mock-gpt and mock-claude on the bundled mock provider, which
// answers with 10 prompt / 20 completion tokens and 5 stream events).
//
// Prints one "ok - …" / "not ok - …" line per check and, last,
// "N passed, M failed"; exits 1 when anything failed.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import OpenAI from 'openai';
import { VERSION as OPENAI_VERSION } from 'openai/version';
import Anthropic from '@anthropic-ai/sdk';
import { VERSION as ANTHROPIC_VERSION } from '@anthropic-ai/sdk/version';

const gw = process.env.KG_URL;
const key = process.env.KG_KEY;
if (!gw || !key) {
  console.error('sdk_test: set KG_URL and KG_KEY');
  process.exit(2);
}

// The mock's canned answers.
const STREAM_TEXT = 'tok0 tok1 tok2 tok3 tok4 ';
const JSON_TEXT = 'Hello from keygate-mock.';
const MSG = [{ role: 'user', content: 'Hello' }];
const INVALID_KEY_MESSAGE =
  'Unauthorized: Invalid keygate API token. Please make sure the token is not deleted or disabled.';
const notFoundMessage = (m) => `The model '${m}' does not exist or you do not have access to it.`;

// Retries would hide a gateway 5xx behind a later success (the SDKs retry
// 408/409/429/5xx twice by default); a short timeout turns a hang into a
// failure well inside CTest's limit.
const common = { maxRetries: 0, timeout: 20_000 };

// A fetch that remembers the credential headers of the last request, to
// show which header each Anthropic client form really sends.
let lastAuth = null;
const recordingFetch = (url, init = {}) => {
  const h = new Headers(init.headers);
  lastAuth = { authorization: h.get('authorization'), xApiKey: h.get('x-api-key') };
  return fetch(url, init);
};

const openai = new OpenAI({ apiKey: key, baseURL: `${gw}/v1`, ...common });
const anthropic = new Anthropic({ apiKey: key, baseURL: gw, fetch: recordingFetch, ...common });

// Requests the gateway forwarded and answered with 200, per usage-event
// operation; run.sh compares these with the store's usage_events.
const forwarded = { chat: 0, embeddings: 0, messages: 0, streamed: 0 };
const fwd = (op, streamed = false) => {
  forwarded[op] += 1;
  if (streamed) forwarded.streamed += 1;
};

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    const note = await fn();
    passed += 1;
    console.log(`ok - ${name}${note ? ` (${note})` : ''}`);
  } catch (err) {
    failed += 1;
    console.log(`not ok - ${name}`);
    const detail = err?.stack ?? String(err);
    console.log(detail.split('\n').map((l) => `    ${l}`).join('\n'));
  }
}

// The error an awaited SDK call throws; fails when it does not throw.
async function thrown(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected the call to throw');
}

// A key of the right shape that keygate does not know, and the real key
// with its last characters changed: both must get the same 401.
const fakeKey = key.replace(/^([a-z0-9]+)_[^_]+_(.*)$/, (_, prefix, rest) => `${prefix}_AAAAAAAAAAAA_${'B'.repeat(rest.length)}`);
const tampered = key.slice(0, -4) + (key.endsWith('AAAA') ? 'BBBB' : 'AAAA');

console.log(`# openai ${OPENAI_VERSION}, @anthropic-ai/sdk ${ANTHROPIC_VERSION}, node ${process.version}`);
console.log(`# gateway ${gw}`);

// ---------------------------------------------------------------- OpenAI

await check('openai: models.list() lists the configured models', async () => {
  const ids = [];
  for await (const m of openai.models.list()) {
    assert.equal(m.object, 'model');
    ids.push(m.id);
  }
  assert.ok(ids.includes('mock-gpt'), `mock-gpt missing from ${ids}`);
  assert.ok(ids.includes('mock-claude'), `mock-claude missing from ${ids}`);
  return ids.join(', ');
});

await check('openai: chat.completions.create() returns content and usage', async () => {
  const { data, response, request_id } = await openai.chat.completions
    .create({ model: 'mock-gpt', messages: MSG })
    .withResponse();
  fwd('chat');
  assert.equal(response.status, 200);
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(data.choices[0].message.content, JSON_TEXT);
  assert.deepEqual(data.usage, { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 });
  assert.match(request_id ?? '', /^req_/, 'x-request-id');
  return `request ${request_id}`;
});

await check('openai: create({stream: true}) yields chunks and the text', async () => {
  const stream = await openai.chat.completions.create({ model: 'mock-gpt', messages: MSG, stream: true });
  let text = '';
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    assert.equal(chunk.object, 'chat.completion.chunk');
    // keygate asks the provider for usage and removes that chunk again: the
    // client, which did not ask, gets no usage chunk.
    assert.ok(chunk.choices.length > 0, 'a chunk without choices (the usage chunk) leaked');
    assert.ok(!chunk.usage, 'usage in a stream that did not ask for it');
    text += chunk.choices[0].delta.content ?? '';
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  fwd('chat', true);
  assert.equal(chunks, 5);
  assert.equal(text, STREAM_TEXT);
  assert.equal(finish, 'stop');
  return `${chunks} chunks`;
});

await check('openai: stream_options.include_usage puts usage in the last chunk', async () => {
  const stream = await openai.chat.completions.create({
    model: 'mock-gpt',
    messages: MSG,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  fwd('chat', true);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 });
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, STREAM_TEXT);
  return `${chunks.length} chunks, last has usage`;
});

await check('openai: chat.completions.stream() helper gives the final completion', async () => {
  const stream = openai.chat.completions.stream({ model: 'mock-gpt', messages: MSG });
  let deltas = '';
  stream.on('content', (delta) => {
    deltas += delta;
  });
  const final = await stream.finalChatCompletion();
  fwd('chat', true);
  assert.equal(deltas, STREAM_TEXT);
  assert.equal(final.choices[0].message.content, STREAM_TEXT);
});

await check('openai: embeddings.create() returns one vector per input', async () => {
  // Without encoding_format the SDK asks for base64 and decodes it itself.
  // keygate-mock ignores encoding_format and answers floats, which the SDK
  // then decodes into garbage, so only the shape is checked here.
  const res = await openai.embeddings.create({ model: 'mock-gpt', input: ['first', 'second'] });
  fwd('embeddings');
  assert.equal(res.object, 'list');
  assert.equal(res.data.length, 2);
  assert.deepEqual(res.data.map((d) => d.index), [0, 1]);
  assert.equal(res.usage.prompt_tokens, 10);
  const floats = await openai.embeddings.create({
    model: 'mock-gpt',
    input: 'third',
    encoding_format: 'float',
  });
  fwd('embeddings');
  assert.equal(floats.data.length, 1);
  const vec = floats.data[0].embedding;
  assert.ok(Array.isArray(vec) && vec.length > 1 && vec.every((x) => typeof x === 'number'), `${vec}`);
  return `${vec.length} floats`;
});

await check('openai: a wrong key raises AuthenticationError (401)', async () => {
  for (const bad of [fakeKey, tampered]) {
    const client = new OpenAI({ apiKey: bad, baseURL: `${gw}/v1`, ...common });
    const err = await thrown(client.chat.completions.create({ model: 'mock-gpt', messages: MSG }));
    assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_api_key');
    assert.equal(err.message, `401 ${INVALID_KEY_MESSAGE}`);
    assert.equal(err.headers.get('www-authenticate'), 'Bearer realm="keygate"');
  }
});

await check('openai: an unknown model raises NotFoundError (404)', async () => {
  for (const model of ['no-such-model', 'mock-claude']) {
    // mock-claude exists, but on the Anthropic API only.
    const err = await thrown(openai.chat.completions.create({ model, messages: MSG }));
    assert.ok(err instanceof OpenAI.NotFoundError, `got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, 404);
    assert.equal(err.code, 'model_not_found');
    assert.equal(err.message, `404 ${notFoundMessage(model)}`);
  }
});

await check('openai: OPENAI_BASE_URL / OPENAI_API_KEY from the environment', async () => {
  const saved = { url: process.env.OPENAI_BASE_URL, key: process.env.OPENAI_API_KEY };
  process.env.OPENAI_BASE_URL = `${gw}/v1`;
  process.env.OPENAI_API_KEY = key;
  try {
    const client = new OpenAI(common);
    const res = await client.chat.completions.create({ model: 'mock-gpt', messages: MSG });
    fwd('chat');
    assert.equal(res.choices[0].message.content, JSON_TEXT);
  } finally {
    for (const [name, value] of [['OPENAI_BASE_URL', saved.url], ['OPENAI_API_KEY', saved.key]]) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});

// ------------------------------------------------------------- Anthropic

const messageBody = { model: 'mock-claude', max_tokens: 64, messages: MSG };

await check('anthropic: messages.create() returns content and usage', async () => {
  const msg = await anthropic.messages.create(messageBody);
  fwd('messages');
  assert.equal(msg.type, 'message');
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.content[0].type, 'text');
  assert.equal(msg.content[0].text, JSON_TEXT);
  assert.equal(msg.usage.input_tokens, 10);
  assert.equal(msg.usage.output_tokens, 20);
  return `apiKey sent as ${lastAuth.authorization ? 'Authorization: Bearer' : 'x-api-key'}`;
});

await check('anthropic: create({stream: true}) yields the events', async () => {
  const stream = await anthropic.messages.create({ ...messageBody, stream: true });
  const types = [];
  let text = '';
  let usage = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    if (ev.type === 'message_delta') usage = ev.usage;
  }
  fwd('messages', true);
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  for (const t of ['content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta']) {
    assert.ok(types.includes(t), `no ${t} in ${types}`);
  }
  assert.equal(text, STREAM_TEXT);
  assert.equal(usage.output_tokens, 20);
  return `${types.length} events`;
});

await check('anthropic: messages.stream() helper gives text events and the final message', async () => {
  const stream = anthropic.messages.stream(messageBody);
  let text = '';
  stream.on('text', (t) => {
    text += t;
  });
  const final = await stream.finalMessage();
  fwd('messages', true);
  assert.equal(text, STREAM_TEXT);
  assert.equal(final.content[0].text, STREAM_TEXT);
  assert.equal(final.usage.input_tokens, 10);
  assert.equal(final.usage.output_tokens, 20);
});

await check('anthropic: the key as Bearer (authToken)', async () => {
  const client = new Anthropic({ authToken: key, baseURL: gw, fetch: recordingFetch, ...common });
  const msg = await client.messages.create(messageBody);
  fwd('messages');
  assert.equal(lastAuth.authorization, `Bearer ${key}`);
  assert.equal(lastAuth.xApiKey, null);
  assert.equal(msg.content[0].text, JSON_TEXT);
});

await check('anthropic: the key as x-api-key', async () => {
  // The SDK sends apiKey as a Bearer token; an x-api-key header is set by
  // hand, with Authorization omitted (null) so that nothing else is sent.
  const client = new Anthropic({
    apiKey: null,
    baseURL: gw,
    defaultHeaders: { 'X-Api-Key': key, Authorization: null },
    fetch: recordingFetch,
    ...common,
  });
  const msg = await client.messages.create(messageBody);
  fwd('messages');
  assert.equal(lastAuth.xApiKey, key);
  assert.equal(lastAuth.authorization, null);
  assert.equal(msg.content[0].text, JSON_TEXT);
});

await check('anthropic: x-api-key and Bearer with the same key are accepted', async () => {
  const client = new Anthropic({ apiKey: key, baseURL: gw, defaultHeaders: { 'X-Api-Key': key }, ...common });
  const msg = await client.messages.create(messageBody);
  fwd('messages');
  assert.equal(msg.content[0].text, JSON_TEXT);
});

await check('anthropic: x-api-key and Bearer with different keys get 401', async () => {
  const client = new Anthropic({ apiKey: key, baseURL: gw, defaultHeaders: { 'X-Api-Key': fakeKey }, ...common });
  const err = await thrown(client.messages.create(messageBody));
  assert.ok(err instanceof Anthropic.AuthenticationError, `got ${err?.constructor?.name}: ${err?.message}`);
  assert.equal(err.status, 401);
});

await check('anthropic: a wrong key raises AuthenticationError (401)', async () => {
  for (const opts of [{ apiKey: fakeKey }, { authToken: tampered }]) {
    const client = new Anthropic({ ...opts, baseURL: gw, ...common });
    const err = await thrown(client.messages.create(messageBody));
    assert.ok(err instanceof Anthropic.AuthenticationError, `got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, 401);
    assert.equal(err.message, `401 ${INVALID_KEY_MESSAGE}`);
  }
});

await check('anthropic: an unknown model raises NotFoundError (404)', async () => {
  for (const model of ['no-such-model', 'mock-gpt']) {
    const err = await thrown(anthropic.messages.create({ ...messageBody, model }));
    assert.ok(err instanceof Anthropic.NotFoundError, `got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, 404);
    assert.equal(err.message, `404 ${notFoundMessage(model)}`);
  }
});

await check('anthropic: messages.countTokens()', async () => {
  const res = await anthropic.messages.countTokens({ model: 'mock-claude', messages: MSG });
  fwd('messages');
  assert.equal(res.input_tokens, 10);
});

await check('anthropic: ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY from the environment', async () => {
  const names = ['ANTHROPIC_BASE_URL', 'ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN'];
  const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
  process.env.ANTHROPIC_BASE_URL = gw;
  process.env.ANTHROPIC_API_KEY = key;
  delete process.env.ANTHROPIC_AUTH_TOKEN;
  try {
    const client = new Anthropic(common);
    const msg = await client.messages.create(messageBody);
    fwd('messages');
    assert.equal(msg.content[0].text, JSON_TEXT);
  } finally {
    for (const n of names) {
      if (saved[n] === undefined) delete process.env[n];
      else process.env[n] = saved[n];
    }
  }
});

console.log(`# forwarded: ${JSON.stringify(forwarded)}`);
if (process.env.KG_RESULT_FILE) {
  writeFileSync(process.env.KG_RESULT_FILE, JSON.stringify({ passed, failed, forwarded }) + '\n');
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
