// The change feed under the conditions phones live in (run by scripts/bench-sync, which
// starts two taskql instances on one database):
//
//   replay    one user makes 10,000 changes while no client listens; a client subscribes
//             with the version it had and receives all of them: the time it takes and the
//             server's memory meanwhile.
//   converge  10 users, each with a client on instance A whose network is cut for a random
//             0–5 s twenty times, while 1,000 mixed writes (creates, edits, completions,
//             deletions, bulk) go through instance B. Each client reconnects by itself
//             (graphql-ws) and resumes from the last version it saw. At the end every
//             client's tasks must equal the server's: missed and duplicated changes counted.
//
//   node sync.mjs <url A> <url B> <HS256 secret> <pid A> <replay|converge>
// Traffic goes to 127.0.0.1 only; every loop is bounded.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// The interop suite's pinned clients: graphql-ws over the ws package.
const require = createRequire(path.join(here, '../tests/interop/package.json'));
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');
const { startProxy } = await import(path.join(here, '../tests/interop/lib/proxy.mjs'));

const [urlA, urlB, secret, pidA, mode] = process.argv.slice(2);

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
function token(sub) {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, email: `${sub}@example.com`, iat: now, exp: now + 3600 })}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function gql(url, tok, query, variables = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const CREATE = 'mutation($t: String!) { createTask(input: { title: $t }) { id } }';
const CHANGES = `subscription Changes($since: String) {
  taskChanged(since: $since) { kind taskId version task { id title completed updatedAt } }
}`;
const PAGE = 'query($after: String) { tasks(first: 100, after: $after) { version pageInfo { hasNextPage endCursor } nodes { id title completed updatedAt } } }';

/** Every task of the user, and the version read before them. */
async function everything(url, tok) {
  const tasks = new Map();
  let after = null;
  let version = null;
  for (;;) {
    const { tasks: page } = await gql(url, tok, PAGE, { after });
    version ??= page.version;
    for (const t of page.nodes) tasks.set(t.id, { title: t.title, completed: t.completed, updatedAt: t.updatedAt });
    if (!page.pageInfo.hasNextPage) return { tasks, version };
    after = page.pageInfo.endCursor;
  }
}

/** A resuming subscriber (the README's client): its state, kept from events only. */
function subscriber(url, tok, since) {
  const state = { since, tasks: new Map(), seen: new Set(), duplicates: 0, resyncs: 0, events: 0, connections: 0, waiting: [] };
  const client = createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${tok}` },
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: () => sleep(100 + Math.random() * 200),
    jsonMessageReplacer(key, value) {
      if (key === 'payload' && this?.type === 'subscribe' && value.operationName === 'Changes') {
        return { ...value, variables: { ...value.variables, since: state.since } };
      }
      return value;
    },
    on: { connected: () => { state.connections += 1; } },
  });
  client.subscribe({ query: CHANGES, operationName: 'Changes', variables: { since } }, {
    next({ data }) {
      const e = data.taskChanged;
      state.events += 1;
      state.since = e.version;
      const key = `${e.taskId}@${e.version}`;
      if (e.kind !== 'RESYNC' && state.seen.has(key)) state.duplicates += 1;
      state.seen.add(key);
      if (e.kind === 'RESYNC') state.resyncs += 1;
      else if (e.kind === 'DELETED') state.tasks.delete(e.taskId);
      else state.tasks.set(e.task.id, { title: e.task.title, completed: e.task.completed, updatedAt: e.task.updatedAt });
      for (const w of state.waiting.filter((w) => w.done(e))) {
        state.waiting.splice(state.waiting.indexOf(w), 1);
        w.resolve();
      }
    },
    error(err) { console.error('subscription error', err); },
    complete() {},
  });
  const until = (done) => new Promise((resolve) => state.waiting.push({ done, resolve }));
  return { client, state, until };
}

async function replay() {
  const tok = token('replay-user');
  const { version: start } = await everything(urlB, tok);
  const changes = 10_000;
  // Eight writers at once, through instance B, while nobody listens.
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < changes) {
      const i = next++;
      await gql(urlB, tok, CREATE, { t: `replayed ${i}` });
    }
  }));
  const rssBefore = rssKiB(pidA);
  let rssPeak = rssBefore;
  const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssKiB(pidA)); }, 5);
  const began = performance.now();
  const { client, state, until } = subscriber(urlA, tok, start);
  await until(() => state.tasks.size === changes);
  const took = performance.now() - began;
  clearInterval(sampler);
  await client.dispose();
  console.log(JSON.stringify({
    mode: 'replay',
    changes,
    received: state.events,
    duplicates: state.duplicates,
    resyncs: state.resyncs,
    seconds: Number((took / 1000).toFixed(2)),
    changes_per_s: Math.round(changes / (took / 1000)),
    server_rss_before_mib: Number((rssBefore / 1024).toFixed(1)),
    server_rss_peak_during_mib: Number((rssPeak / 1024).toFixed(1)),
  }));
}

async function converge() {
  const users = 10;
  const writes = 1000;
  const cuts = 20;
  const tokens = Array.from({ length: users }, (_, i) => token(`converge-user-${i}`));
  const subscribers = [];
  const proxies = [];
  for (const tok of tokens) {
    const { version } = await everything(urlA, tok);
    const proxy = await startProxy(urlA);
    proxies.push(proxy);
    subscribers.push(subscriber(proxy.url, tok, version));
  }
  // Each client's network: up for a random 0–1 s, then cut for a random 0–5 s, twenty times.
  const cutting = Promise.all(proxies.map(async (proxy) => {
    for (let i = 0; i < cuts; i += 1) {
      await sleep(Math.random() * 1000);
      proxy.down();
      await sleep(Math.random() * 5000);
      proxy.up();
    }
  }));
  // 1,000 mixed writes through instance B, spread over the cutting.
  const kinds = { create: 0, edit: 0, complete: 0, delete: 0, bulk: 0 };
  const owned = tokens.map(() => []);
  const writing = (async () => {
    for (let i = 0; i < writes; i += 1) {
      const u = i % users;
      const tok = tokens[u];
      const mine = owned[u];
      const roll = Math.random();
      if (mine.length < 3 || roll < 0.35) {
        const { createTask } = await gql(urlB, tok, CREATE, { t: `task ${i}` });
        mine.push(createTask.id);
        kinds.create += 1;
      } else if (roll < 0.6) {
        const id = mine[Math.floor(Math.random() * mine.length)];
        await gql(urlB, tok, 'mutation($id: ID!, $t: String!) { updateTask(id: $id, input: { title: $t }) { id } }', { id, t: `edited ${i}` });
        kinds.edit += 1;
      } else if (roll < 0.75) {
        const id = mine[Math.floor(Math.random() * mine.length)];
        await gql(urlB, tok, 'mutation($id: ID!, $c: Boolean!) { updateTask(id: $id, input: { completed: $c }) { id } }', { id, c: Math.random() < 0.5 });
        kinds.complete += 1;
      } else if (roll < 0.9) {
        const id = mine.splice(Math.floor(Math.random() * mine.length), 1)[0];
        await gql(urlB, tok, 'mutation($id: ID!) { deleteTask(id: $id) }', { id });
        kinds.delete += 1;
      } else {
        const ids = mine.slice(0, 3);
        if (Math.random() < 0.5) {
          await gql(urlB, tok, 'mutation($ids: [ID!]!) { setTasksCompleted(ids: $ids, completed: true) { id } }', { ids });
        } else {
          await gql(urlB, tok, 'mutation($ids: [ID!]!) { deleteTasks(ids: $ids) }', { ids });
          mine.splice(0, 3);
        }
        kinds.bulk += 1;
      }
      await sleep(Math.random() * 110);
    }
  })();
  const began = performance.now();
  await Promise.all([cutting, writing]);
  // Everyone connected again: a marker per user shows when each client has caught up.
  await Promise.all(subscribers.map(async (s, u) => {
    const seen = s.until((e) => e.task?.title === `marker ${u}`);
    await gql(urlB, tokens[u], CREATE, { t: `marker ${u}` });
    await seen;
  }));
  const took = performance.now() - began;
  let missed = 0;
  let extra = 0;
  for (let u = 0; u < users; u += 1) {
    const { tasks } = await everything(urlB, tokens[u]);
    const mine = subscribers[u].state.tasks;
    for (const [id, task] of tasks) {
      const have = mine.get(id);
      if (!have || JSON.stringify(have) !== JSON.stringify(task)) missed += 1;
    }
    for (const id of mine.keys()) if (!tasks.has(id)) extra += 1;
  }
  const sum = (key) => subscribers.reduce((n, s) => n + s.state[key], 0);
  console.log(JSON.stringify({
    mode: 'converge',
    users,
    writes,
    kinds,
    cuts_per_client: cuts,
    seconds: Number((took / 1000).toFixed(1)),
    connections: sum('connections'),
    events: sum('events'),
    tasks_differing_from_server: missed,
    tasks_the_server_no_longer_has: extra,
    duplicated_events: sum('duplicates'),
    resyncs: sum('resyncs'),
  }));
  await Promise.all(subscribers.map((s) => s.client.dispose()));
  await Promise.all(proxies.map((p) => p.close()));
}

if (mode === 'replay') await replay();
else if (mode === 'converge') await converge();
else throw new Error(`unknown mode ${mode}`);
process.exit(0);
