// Schema-driven fuzzing of a running taskql.
//
// Documents and variables are generated from schema.graphql with a seeded PRNG: valid
// operations of every root field with random arguments (edge values, wrong types, NUL bytes,
// long and odd strings, nested filters), aliases, fragments, @skip/@include and variables;
// then mangled copies of them, and hostile bodies (deep nesting, duplicate keys, wrong JSON
// types, batches). They are sent by POST, GET and batch, with valid, forged, expired,
// malformed and odd-claim tokens, and without one.
//
// Every response must: not be 5xx; carry no INTERNAL_SERVER_ERROR and no error without a
// code; and, when it has data, obey the spec's null rules (checked by executing the same
// document with graphql-js over the returned data: a null in a non-null position, or a
// missing field, is an error there). The runner checks the process and its log afterwards.
//
// Then the WebSocket surface: sessions of random messages in random order (malformed JSON,
// unknown types, subscribe before init, a second init, odd ids and payloads, binary and
// oversize frames, tokens of every kind in `connection_init`). Every `error` message must
// carry a code other than INTERNAL_SERVER_ERROR, every close a code the protocol defines, and
// every session end within a bound.
//
//   node fuzz.mjs <graphql url> <schema.graphql> <secret>
//   FUZZ_CASES (default 4000), FUZZ_WS_SESSIONS (default 400), FUZZ_SEED (default 1)

import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import {
  buildSchema, execute, getNamedType, isEnumType, isInputObjectType, isLeafType, isListType,
  isNonNullType, isObjectType, parse, validate,
} from 'graphql';

const [url, schemaPath, secret] = process.argv.slice(2);
const cases = Number(process.env.FUZZ_CASES ?? 4000);
const seed = Number(process.env.FUZZ_SEED ?? 1);
const schema = buildSchema(readFileSync(schemaPath, 'utf8'));

// mulberry32: small, fast, and the same sequence for the same seed everywhere.
let state = seed >>> 0;
function random() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const chance = (p) => random() < p;
const int = (n) => Math.floor(random() * n);
const pick = (items) => items[int(items.length)];

// ---- tokens ---------------------------------------------------------------------------
const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
function sign(claims, key = secret) {
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`;
}
const now = Math.floor(Date.now() / 1000);
const claims = (sub, extra = {}) => ({ sub, email: `${sub}@example.com`, name: sub, iat: now, exp: now + 3600, ...extra });
const users = ['fuzz-a', 'fuzz-b', 'fuzz-c'];
const tokens = {
  user: () => sign(claims(pick(users))),
  anonymous: () => null,
  forged: () => sign(claims('fuzz-a'), 'not-the-secret-0123456789-abcdefghijkl'),
  expired: () => sign(claims('fuzz-a', { exp: now - 3600 })),
  garbage: () => pick(['x', 'a.b.c', '', '...', `${b64({ alg: 'none' })}.${b64(claims('fuzz-a'))}.`]),
  odd: () => sign(claims(pick(['fuzz-\u0000', 'fuzz-d']), pick([
    { name: 'n\u0000' }, { name: 'x'.repeat(5000) }, { email: '' }, { image: 'javascript:1' }, { sub: 42 },
  ]))),
};
function token() {
  const r = random();
  if (r < 0.65) return tokens.user();
  if (r < 0.8) return tokens.anonymous();
  return pick([tokens.forged, tokens.expired, tokens.garbage, tokens.odd])();
}

// ---- values -----------------------------------------------------------------------------
// A UUID from the seeded generator, so a run is the same every time.
const uuid = () => Array.from({ length: 16 }, () => int(256).toString(16).padStart(2, '0')).join('')
  .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
const knownIds = [];
const strings = [
  '', ' ', 'milk', 'Milk & eggs', '  padded  ', '%_\\', '"quoted"', 'e\u0301', '🦀🦀', 'a\u0000b',
  '\u0000', 'line\nbreak', '\uFFFF', 'x'.repeat(200), 'x'.repeat(201), 'é'.repeat(1000), 'y'.repeat(1001),
  '-word "phrase" or', '<script>', 'null', "'; drop table tasks; --",
];
const dates = [
  '2026-11-22T09:30:00Z', '2026-11-22T10:30:00+01:00', '0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999999Z',
  '9999-12-31T23:59:59-23:59', '0000-01-01T00:00:00Z', 'yesterday', '2026-13-01T00:00:00Z', '', '2026-11-22',
  '2026-11-22T09:30:00.123456789Z', '+10000-01-01T00:00:00Z',
];
const ints = [0, 1, -1, 2, 3, 5, 6, 20, 99, 100, 101, 2147483647, -2147483648];

function scalarValue(name) {
  switch (name) {
    case 'Int': return chance(0.05) ? pick([1.5, 2147483648, '1']) : pick(ints);
    case 'Float': return random() * 10;
    case 'Boolean': return chance(0.03) ? 'true' : chance(0.5);
    case 'ID': return chance(0.6) && knownIds.length ? pick(knownIds) : pick([uuid(), 'nope', '', '00000000-0000-0000-0000-000000000000', 7]);
    case 'DateTime': return pick(dates);
    default: return chance(0.05) ? int(10) : pick(strings);
  }
}

// A JS value for an input type; `depth` bounds recursive inputs (filters).
function inputValue(type, depth) {
  if (isNonNullType(type)) return chance(0.03) ? null : inputValue(type.ofType, depth);
  if (chance(0.08)) return null;
  if (isListType(type)) {
    if (chance(0.1)) return inputValue(type.ofType, depth);
    return Array.from({ length: int(4) }, () => inputValue(type.ofType, depth + 1));
  }
  if (isEnumType(type)) return chance(0.03) ? 'NOPE' : pick(type.getValues()).name;
  if (isInputObjectType(type)) {
    const out = {};
    for (const field of Object.values(type.getFields())) {
      const required = isNonNullType(field.type);
      if (required || (depth < 3 && chance(0.3))) out[field.name] = inputValue(field.type, depth + 1);
    }
    if (chance(0.03)) out.unknownField = 1;
    return out;
  }
  return scalarValue(type.name);
}

// The value as a GraphQL literal: strings as JSON strings (a valid GraphQL string), enums bare
// where the type is an enum.
function literal(value, type) {
  const named = getNamedType(type);
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    const inner = isListType(isNonNullType(type) ? type.ofType : type) ? (isNonNullType(type) ? type.ofType : type).ofType : type;
    return `[${value.map((v) => literal(v, inner)).join(', ')}]`;
  }
  if (typeof value === 'object') {
    const fields = isInputObjectType(named) ? named.getFields() : {};
    return `{${Object.entries(value).map(([k, v]) => `${k}: ${literal(v, fields[k]?.type ?? named)}`).join(', ')}}`;
  }
  if (isEnumType(named) && typeof value === 'string' && /^[_A-Za-z][_0-9A-Za-z]*$/.test(value)) return value;
  return JSON.stringify(value);
}

// ---- documents -------------------------------------------------------------------------
function directives(variables) {
  if (!chance(0.1)) return '';
  const name = pick(['skip', 'include']);
  if (chance(0.3)) {
    const v = `c${Object.keys(variables.values).length}`;
    variables.defs.push(`$${v}: Boolean!`);
    variables.values[v] = chance(0.5);
    return ` @${name}(if: $${v})`;
  }
  return ` @${name}(if: ${chance(0.5)})`;
}

function args(field, variables) {
  const parts = [];
  for (const arg of field.args) {
    if (!isNonNullType(arg.type) && !chance(0.4)) continue;
    const value = inputValue(arg.type, 0);
    if (chance(0.3)) {
      const v = `v${Object.keys(variables.values).length}`;
      variables.defs.push(`$${v}: ${arg.type.toString()}`);
      variables.values[v] = value;
      parts.push(`${arg.name}: $${v}`);
    } else {
      parts.push(`${arg.name}: ${literal(value, arg.type)}`);
    }
  }
  return parts.length ? `(${parts.join(', ')})` : '';
}

function selection(type, depth, variables, fragments) {
  const fields = Object.values(type.getFields());
  const chosen = Array.from({ length: 1 + int(3) }, () => pick(fields));
  const parts = chosen.map((field) => {
    const alias = chance(0.15) ? `a${int(1000)}: ` : '';
    const named = getNamedType(field.type);
    let sub = '';
    if (!isLeafType(named)) {
      sub = depth >= 5 ? ' { __typename }' : ` { ${selection(named, depth + 1, variables, fragments)} }`;
    }
    return `${alias}${field.name}${args(field, variables)}${directives(variables)}${sub}`;
  });
  if (chance(0.1)) parts.push('__typename');
  if (chance(0.08)) parts.push(`... on ${type.name} { ${selection(type, depth + 1, variables, fragments)} }`);
  if (chance(0.05) && depth < 4) {
    const name = `F${fragments.length}`;
    fragments.push(`fragment ${name} on ${type.name} { ${selection(type, depth + 1, variables, fragments)} }`);
    parts.push(`...${name}${directives(variables)}`);
  }
  return parts.join(' ');
}

function operation() {
  const mutation = chance(0.35);
  const root = mutation ? schema.getMutationType() : schema.getQueryType();
  const variables = { defs: [], values: {} };
  const fragments = [];
  const body = selection(root, 1, variables, fragments);
  const defs = variables.defs.length ? `(${variables.defs.join(', ')})` : '';
  const name = chance(0.3) ? ` Op${int(100)}` : '';
  const head = mutation ? `mutation${name}${defs}` : (defs || name ? `query${name}${defs}` : '');
  return { query: `${head} { ${body} } ${fragments.join(' ')}`.trim(), variables: variables.values, mutation };
}

// Edits that turn a document into a near-miss: dropped or duplicated text, stray tokens.
function mangle(text) {
  let out = text;
  for (let i = 0; i < 1 + int(3); i += 1) {
    const at = int(out.length + 1);
    switch (int(6)) {
      case 0: out = out.slice(0, at) + out.slice(at + 1 + int(5)); break;
      case 1: out = out.slice(0, at) + pick(['{', '}', '(', ')', '[', ']', '$', '@', '...', ':', '!', '"', '#', '\u0000', 'on', '=', '|']) + out.slice(at); break;
      case 2: out = out.slice(0, at) + out.slice(int(out.length), int(out.length)) + out.slice(at); break;
      case 3: out = out.slice(0, at) + out.slice(at, at + 20) + out.slice(at); break;
      case 4: out = out.replace(/first: \d+/, `first: ${pick(ints)}`); break;
      default: out = out.slice(0, at) + ' ' + out.slice(at);
    }
  }
  return out;
}

const nest = (n, open, inner, close) => open.repeat(n) + inner + close.repeat(n);
function hostileBody() {
  const depth = pick([32, 33, 100, 1800, 3000]);
  return pick([
    () => JSON.stringify({ query: `{ apiVersion(x: ${nest(depth, '[', '1', ']')}) }` }),
    () => JSON.stringify({ query: `{ tasks(filter: ${nest(Math.min(depth, 3000), '{not: ', '{completed: true}', '}')}) { totalCount } }` }),
    () => JSON.stringify({ query: `query($v: ${nest(depth, '[', 'Int', ']')}) { apiVersion }` }),
    () => JSON.stringify({ query: `{ me { ${nest(Math.min(depth, 200), 'tasks { nodes { owner { ', 'id', ' } } }')} } }` }),
    () => `{"query": "{ apiVersion }", "variables": ${nest(Math.min(depth, 200), '{"a": ', '1', '}')}}`,
    () => `{"query": "{ apiVersion }", "query": "mutation { deleteMe }"}`,
    () => JSON.stringify({ query: 42 }),
    () => JSON.stringify({ query: '{ apiVersion }', variables: [1] }),
    () => JSON.stringify({ query: '{ apiVersion }', extensions: { persistedQuery: { version: 1, sha256Hash: 'ab'.repeat(32) } } }),
    () => JSON.stringify([]),
    () => JSON.stringify(Array.from({ length: 11 }, () => ({ query: '{ apiVersion }' }))),
    () => '{"query": "{ apiVersion }"',
    () => Buffer.from(Array.from({ length: 64 }, () => int(256))).toString('latin1'),
    () => JSON.stringify({ query: `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: apiVersion`).join(' ')} }` }),
    () => JSON.stringify({ query: `{ ...F0 } ${Array.from({ length: 30 }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join(' ')} fragment F30 on Query { apiVersion }` }),
    () => JSON.stringify({ query: `{ tasks(after: "${'A'.repeat(int(3000))}") { totalCount } }` }),
    () => JSON.stringify({ query: '{ __typename(x: 1) @foo }' }),
  ])();
}

// ---- checks ----------------------------------------------------------------------------
const failures = [];
const statuses = {};
function fail(what, detail) {
  if (failures.length < 50) failures.push(`${what}: ${detail}`);
  else failures.push(what);
}

function collectIds(value) {
  if (Array.isArray(value)) value.forEach(collectIds);
  else if (value && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      if (key === 'id' && typeof inner === 'string' && /^[0-9a-f-]{36}$/.test(inner) && knownIds.length < 500) knownIds.push(inner);
      else collectIds(inner);
    }
  }
}

// The null rules: run the same operation with graphql-js over the response's own data. Every
// field resolves to what the server returned under its response key, so a null (or a missing
// field) in a non-null position raises graphql-js's "Cannot return null" error.
function checkNulls(sent, data, label) {
  let document;
  try {
    document = parse(sent.query);
  } catch {
    return fail('data for a document graphql-js cannot parse', `${label} ${sent.query.slice(0, 200)}`);
  }
  const invalid = validate(schema, document);
  if (invalid.length) {
    return fail('data for a document graphql-js finds invalid', `${label} ${invalid[0].message} in ${sent.query.slice(0, 300)}`);
  }
  const result = execute({
    schema,
    document,
    rootValue: data,
    variableValues: sent.variables ?? {},
    operationName: sent.operationName,
    fieldResolver: (source, _args, _ctx, info) => (source == null ? undefined : source[info.path.key]),
  });
  for (const error of result.errors ?? []) {
    fail('null rules broken', `${label} ${error.message} in ${sent.query.slice(0, 300)} -> ${JSON.stringify(data).slice(0, 300)}`);
  }
}

function checkBody(body, sent, label) {
  const results = Array.isArray(body) ? body : [body];
  results.forEach((result, i) => {
    for (const error of result?.errors ?? []) {
      const code = error?.extensions?.code;
      if (!code) fail('error without a code', `${label} ${JSON.stringify(error)}`);
      if (code === 'INTERNAL_SERVER_ERROR') fail('internal server error', `${label} ${JSON.stringify(error)} for ${JSON.stringify(sent).slice(0, 400)}`);
    }
    const op = Array.isArray(sent) ? sent[i] : sent;
    if (result && typeof result.data === 'object' && result.data !== null && op?.query) {
      collectIds(result.data);
      checkNulls(op, result.data, label);
    }
  });
}

async function send(n) {
  const headers = { accept: pick(['application/graphql-response+json', 'application/json', '*/*']) };
  const auth = token();
  if (auth !== null) headers.authorization = chance(0.97) ? `Bearer ${auth}` : `Basic ${auth}`;
  const r = random();
  let sent;
  let request;
  if (r < 0.1) {
    headers['content-type'] = 'application/json';
    request = { method: 'POST', body: hostileBody() };
    sent = null;
  } else {
    const op = operation();
    const query = chance(0.25) ? mangle(op.query) : op.query;
    sent = { query, variables: chance(0.05) ? pick([{ v0: [] }, { v0: 'x' }, {}]) : op.variables };
    if (r < 0.2 && !op.mutation) {
      const params = new URLSearchParams({ query: sent.query, variables: JSON.stringify(sent.variables) });
      request = { method: 'GET', url: `${url}?${params}` };
    } else if (r < 0.28) {
      const second = operation();
      sent = [sent, { query: second.query, variables: second.variables }];
      headers['content-type'] = 'application/json';
      request = { method: 'POST', body: JSON.stringify(sent) };
    } else {
      headers['content-type'] = 'application/json';
      request = { method: 'POST', body: JSON.stringify(sent) };
    }
  }
  const response = await fetch(request.url ?? url, { method: request.method, headers, body: request.body });
  statuses[response.status] = (statuses[response.status] ?? 0) + 1;
  const text = await response.text();
  const label = `case ${n} (${request.method} ${response.status})`;
  if (response.status >= 500) fail('5xx', `${label} ${text.slice(0, 300)} for ${(request.body ?? request.url).slice(0, 300)}`);
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    if (response.status !== 404) fail('a body that is not JSON', `${label} ${text.slice(0, 200)}`);
    return;
  }
  if (sent) checkBody(body, sent, label);
  else checkBody(body, {}, label);
}

// ---- WebSocket sessions ------------------------------------------------------------------
const wsSessions = Number(process.env.FUZZ_WS_SESSIONS ?? 400);
// The close codes taskql sends (README, "The protocol"); 1005: a close frame without a code.
const knownCloses = new Set([1000, 1001, 1005, 1009, 1013, 4400, 4401, 4403, 4406, 4408, 4409, 4429]);
const closes = {};

function wsMessage(initialised) {
  const id = pick(['1', '2', '', 'x'.repeat(300), 42, null, '\u0000', '🦀']);
  const op = operation();
  const payloads = [
    { query: op.query, variables: op.variables },
    { query: mangle(op.query) },
    { query: 'subscription { taskChanged { kind taskId version } }' },
    { query: 'subscription($s: String) { taskChanged(since: $s) { kind version } }', variables: { s: pick(strings) } },
    { query: 42 }, { variables: 'x' }, {}, null, [], 'query',
    { query: '{ apiVersion }', extensions: { persistedQuery: { version: 1, sha256Hash: 'x' } } },
  ];
  const auth = token();
  const messages = [
    () => ({ type: 'connection_init', payload: pick([{}, null, 'x', [], { authorization: auth === null ? null : `Bearer ${auth}` }, { Authorization: 42 }]) }),
    () => ({ type: 'subscribe', id, payload: pick(payloads) }),
    () => ({ type: 'start', id, payload: pick(payloads) }),
    () => ({ type: 'complete', id }),
    () => ({ type: 'stop', id }),
    () => ({ type: 'ping', payload: pick([undefined, {}, 'x', { a: 'b'.repeat(100) }]) }),
    () => ({ type: 'pong' }),
    () => ({ type: 'connection_terminate' }),
    () => ({ type: pick(['next', 'error', 'ka', 'data', 'unknown', '', null, 7]), id }),
    () => pick([[], 'text', 42, null, { payload: {} }]),
  ];
  const raw = [
    () => '{',
    () => 'not json',
    () => '{"type":"subscribe","type":"ping"}',
    () => JSON.stringify({ type: 'subscribe', id: '1', payload: { query: `{ ${'a { '.repeat(200)}` } }),
    () => Buffer.from([1, 2, 3]),
    () => 'x'.repeat(70 * 1024),
  ];
  if (chance(0.15)) return pick(raw)();
  if (!initialised && chance(0.5)) return JSON.stringify(messages[0]());
  return JSON.stringify(pick(messages)());
}

/** One session: open, send a few random messages, then end it; resolves with how it ended. */
function session(n) {
  const protocol = pick(['graphql-transport-ws', 'graphql-transport-ws', 'graphql-ws', 'nonsense', undefined]);
  return new Promise((resolve) => {
    const socket = new WebSocket(url.replace(/^http/, 'ws'), protocol === undefined ? [] : [protocol]);
    let initialised = false;
    let sent = 0;
    const total = 1 + int(8);
    // A bound on the session, not a synchronisation: every session ends by itself.
    const timer = setTimeout(() => { socket.terminate(); resolve('timeout'); }, 3000);
    const next = () => {
      if (sent >= total || socket.readyState !== WebSocket.OPEN) {
        socket.close(1000);
        return;
      }
      sent += 1;
      const message = wsMessage(initialised);
      if (typeof message === 'string' && message.includes('"connection_init"')) initialised = true;
      socket.send(message, () => setImmediate(next));
    };
    socket.on('open', next);
    socket.on('message', (data) => {
      let message;
      try {
        message = JSON.parse(String(data));
      } catch {
        fail('a WebSocket message that is not JSON', `session ${n}: ${String(data).slice(0, 200)}`);
        return;
      }
      const errors = message.type === 'error' ? message.payload : message.payload?.errors;
      for (const error of Array.isArray(errors) ? errors : []) {
        const code = error?.extensions?.code;
        if (!code) fail('a WebSocket error without a code', `session ${n}: ${JSON.stringify(message).slice(0, 300)}`);
        if (code === 'INTERNAL_SERVER_ERROR') fail('an internal error over WebSocket', `session ${n}: ${JSON.stringify(message).slice(0, 300)}`);
      }
    });
    socket.on('unexpected-response', (_request, response) => {
      clearTimeout(timer);
      if (response.statusCode >= 500 && response.statusCode !== 503) fail('5xx at the WebSocket upgrade', `session ${n}: ${response.statusCode}`);
      resolve(`http ${response.statusCode}`);
    });
    socket.on('error', () => {});
    socket.on('close', (code) => {
      clearTimeout(timer);
      closes[code] = (closes[code] ?? 0) + 1;
      // 1006: the connection ended without a close frame: after `connection_terminate` (the
      // legacy protocol's goodbye), or when both sides close at once.
      if (!knownCloses.has(code) && code !== 1006) fail('an unknown close code', `session ${n}: ${code}`);
      resolve(code);
    });
  });
}

const started = Date.now();
for (let n = 1; n <= cases; n += 1) {
  try {
    await send(n);
  } catch (error) {
    fail('request failed', `case ${n}: ${error.message}`);
  }
}
const timeouts = [];
for (let n = 1; n <= wsSessions; n += 1) {
  const ended = await session(n);
  if (ended === 'timeout') timeouts.push(n);
}
// The server still answers after it all.
const alive = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ apiVersion }"}' });
if (alive.status !== 200) fail('the server no longer answers', String(alive.status));
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`fuzz: ${cases} cases and ${wsSessions} WebSocket sessions (seed ${seed}) in ${seconds} s; statuses ${JSON.stringify(statuses)}; closes ${JSON.stringify(closes)}; sessions cut at 3 s: ${timeouts.length}`);
if (failures.length) {
  console.log(failures.slice(0, 50).join('\n'));
  console.log(`fuzz: ${failures.length} failures`);
  process.exit(1);
}
console.log('fuzz: 0 failures');
