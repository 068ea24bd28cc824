// taskql against the clients it exists for, all real and unmodified: Better Auth issuing the
// tokens, Apollo Client 4 and urql as frontends, graphql-js's introspection tooling, and the
// GraphiQL page in Debian's Chromium. Nothing is mocked: the release binary, a real
// PostgreSQL, real HTTP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { relayStylePagination } from '@apollo/client/utilities';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import {
  buildClientSchema,
  buildSchema,
  findBreakingChanges,
  findDangerousChanges,
  getIntrospectionQuery,
  lexicographicSortSchema,
  parse,
  printSchema,
} from 'graphql';
import { chromium } from 'playwright-core';

import { header, jwtFor, signUp, startBetterAuth } from './lib/better-auth.mjs';
import { createDatabase, dropDatabase } from './lib/postgres.mjs';
import { startProxy } from './lib/proxy.mjs';
import { schemaPath, startTaskql } from './lib/taskql.mjs';

const artifacts = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');

let authDb;
let apiDb;
let auth;
let taskql;
const users = {};

// Whatever happens, the processes this suite started do not outlive it.
process.on('exit', () => taskql?.kill());

before(async () => {
  authDb = await createDatabase('interop_betterauth');
  apiDb = await createDatabase('interop_taskql');
  // Better Auth's default algorithm first: EdDSA (Ed25519).
  auth = await startBetterAuth({ dbUrl: authDb.url });
  taskql = await startTaskql({
    DATABASE_URL: apiDb.url,
    AUTH_JWKS_URL: auth.jwksUrl,
    // Better Auth puts its base URL in both iss and aud.
    AUTH_ISSUER: auth.baseURL,
    AUTH_AUDIENCE: auth.baseURL,
  });
  for (const name of ['alice', 'bob']) {
    const session = await signUp(auth.baseURL, {
      email: `${name}@example.com`,
      password: `${name}-password-1234`,
      name,
    });
    users[name] = { ...session, token: await jwtFor(auth.baseURL, session.cookie) };
  }
});

after(async () => {
  await taskql?.stop();
  await auth?.close();
  if (apiDb) await dropDatabase(apiDb.name);
  if (authDb) await dropDatabase(authDb.name);
});

/** A fetch that counts the requests it makes, and how (GET or POST). */
function countingFetch() {
  const calls = [];
  const fn = (input, init = {}) => {
    calls.push({ method: init.method ?? 'GET', url: String(input) });
    return fetch(input, init);
  };
  return { fn, calls };
}

function apollo(token, fetchFn = fetch) {
  return new ApolloClient({
    link: new HttpLink({ uri: taskql.url, fetch: fetchFn, headers: { authorization: `Bearer ${token}` } }),
    cache: new InMemoryCache({
      typePolicies: { Query: { fields: { tasks: relayStylePagination(['filter', 'orderBy']) } } },
    }),
  });
}

const CREATE = gql`
  mutation Create($input: CreateTaskInput!) {
    createTask(input: $input) { id title priority completed dueAt updatedAt }
  }
`;
const LIST = gql`
  query List($filter: TaskFilter, $orderBy: [TaskOrder!], $first: Int, $after: String) {
    tasks(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {
      edges { cursor node { id title priority completed } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      totalCount
    }
  }
`;
const UPDATE = gql`
  mutation Update($id: ID!, $input: UpdateTaskInput!) {
    updateTask(id: $id, input: $input) { id title priority completed updatedAt }
  }
`;
const DELETE = gql`
  mutation Delete($id: ID!) { deleteTask(id: $id) }
`;

test('Better Auth tokens (EdDSA, its default) are accepted and name the Better Auth user', async () => {
  const alice = users.alice;
  assert.equal(header(alice.token).alg, 'EdDSA');
  const client = apollo(alice.token);
  const { data } = await client.query({ query: gql`{ me { id email name } }` });
  assert.deepEqual(data.me, { __typename: 'User', id: alice.userId, email: 'alice@example.com', name: 'alice' });
});

test('Apollo Client: create, filter and order, cursor pages, update in the cache, delete, error codes', async () => {
  const counting = countingFetch();
  const client = apollo(users.alice.token, counting.fn);
  const created = [];
  for (const [title, priority] of [['wash car', 2], ['buy milk', 5], ['call mom', 4], ['pay rent', 5], ['read book', 1]]) {
    const { data } = await client.mutate({ mutation: CREATE, variables: { input: { title, priority } } });
    created.push(data.createTask);
  }
  await client.mutate({ mutation: CREATE, variables: { input: { title: 'done already', priority: 5, completed: true } } });

  // Open tasks, highest priority first, two at a time; relayStylePagination merges the pages.
  const variables = {
    filter: { completed: false },
    orderBy: [{ field: 'PRIORITY', direction: 'DESC' }, { field: 'TITLE', direction: 'ASC' }],
    first: 2,
  };
  const first = await client.query({ query: LIST, variables });
  assert.equal(first.data.tasks.totalCount, 5);
  assert.deepEqual(first.data.tasks.edges.map((e) => e.node.title), ['buy milk', 'pay rent']);
  assert.equal(first.data.tasks.pageInfo.hasNextPage, true);
  const watched = client.watchQuery({ query: LIST, variables });
  const updates = [];
  const subscription = watched.subscribe({ next: (result) => updates.push(result) });
  await watched.fetchMore({ variables: { after: first.data.tasks.pageInfo.endCursor } });
  const merged = client.readQuery({ query: LIST, variables });
  assert.deepEqual(merged.tasks.edges.map((e) => e.node.title), ['buy milk', 'pay rent', 'call mom', 'wash car']);

  // An update returns the task with its id: the normalized cache updates the list in place,
  // with no refetch of the list.
  const before = counting.calls.length;
  const target = created.find((t) => t.title === 'call mom');
  await client.mutate({ mutation: UPDATE, variables: { id: target.id, input: { title: 'call mom today' } } });
  assert.equal(counting.calls.length, before + 1, 'only the mutation went to the server');
  const cached = client.readQuery({ query: LIST, variables });
  assert.ok(cached.tasks.edges.some((e) => e.node.title === 'call mom today'), 'the cached list shows the change');
  assert.ok(updates.some((u) => u.data?.tasks.edges.some((e) => e.node.title === 'call mom today')), 'watchers saw it');
  subscription.unsubscribe();

  // Delete, then evict by the cache id Apollo derives from __typename + id.
  const { data: deleted } = await client.mutate({ mutation: DELETE, variables: { id: created[0].id } });
  assert.equal(deleted.deleteTask, created[0].id);
  client.cache.evict({ id: client.cache.identify({ __typename: 'Task', id: created[0].id }) });
  client.cache.gc();
  const afterDelete = await client.query({ query: LIST, variables: { ...variables, first: 10 }, fetchPolicy: 'network-only' });
  assert.equal(afterDelete.data.tasks.totalCount, 4);

  // Errors arrive as Apollo errors carrying taskql's code.
  await assert.rejects(
    client.mutate({ mutation: UPDATE, variables: { id: target.id, input: { title: '' } } }),
    (err) => CombinedGraphQLErrors.is(err) && err.errors[0].extensions.code === 'BAD_USER_INPUT' && err.errors[0].extensions.field === 'input.title',
  );
  await assert.rejects(
    client.query({ query: gql`{ noSuchField }` }),
    (err) => CombinedGraphQLErrors.is(err) && err.errors[0].extensions.code === 'GRAPHQL_VALIDATION_FAILED',
  );
  await assert.rejects(
    apollo('not-a-token').query({ query: gql`{ me { id } }` }),
    (err) => CombinedGraphQLErrors.is(err) && err.errors[0].extensions.code === 'UNAUTHENTICATED',
  );
  await assert.rejects(
    client.mutate({ mutation: DELETE, variables: { id: created[0].id } }),
    (err) => CombinedGraphQLErrors.is(err) && err.errors[0].extensions.code === 'NOT_FOUND',
  );
});

test('urql with its cache exchange: the same flow, queries sent as GET with operationName', async () => {
  const counting = countingFetch();
  const client = new Client({
    url: taskql.url,
    exchanges: [cacheExchange, fetchExchange],
    fetch: counting.fn,
    fetchOptions: () => ({ headers: { authorization: `Bearer ${users.bob.token}` } }),
  });
  const ids = [];
  for (const title of ['urql one', 'urql two', 'urql three']) {
    const result = await client.mutation(CREATE, { input: { title, priority: 3 } }).toPromise();
    assert.equal(result.error, undefined, String(result.error));
    ids.push(result.data.createTask.id);
  }
  const variables = { orderBy: [{ field: 'TITLE', direction: 'DESC' }], first: 2 };
  const page1 = await client.query(LIST, variables).toPromise();
  assert.equal(page1.error, undefined, String(page1.error));
  assert.deepEqual(page1.data.tasks.edges.map((e) => e.node.title), ['urql two', 'urql three']);
  const page2 = await client.query(LIST, { ...variables, after: page1.data.tasks.pageInfo.endCursor }).toPromise();
  assert.deepEqual(page2.data.tasks.edges.map((e) => e.node.title), ['urql one']);
  assert.equal(page2.data.tasks.pageInfo.hasPreviousPage, true);
  const gets = counting.calls.filter((c) => c.method === 'GET');
  assert.ok(gets.length >= 2 && gets.every((c) => c.url.includes('operationName=List')), 'urql queried by GET');

  const updated = await client.mutation(UPDATE, { id: ids[0], input: { completed: true } }).toPromise();
  assert.equal(updated.data.updateTask.completed, true);
  const deleted = await client.mutation(DELETE, { id: ids[1] }).toPromise();
  assert.equal(deleted.data.deleteTask, ids[1]);
  const rest = await client.query(LIST, { first: 10 }, { requestPolicy: 'network-only' }).toPromise();
  assert.deepEqual(rest.data.tasks.edges.map((e) => e.node.title).sort(), ['urql one', 'urql three']);

  const failed = await client.mutation(UPDATE, { id: ids[1], input: { title: 'gone' } }).toPromise();
  assert.equal(failed.error.graphQLErrors[0].extensions.code, 'NOT_FOUND');
});

test("two users, one client each: Bob's client never sees Alice's tasks", async () => {
  const aliceClient = apollo(users.alice.token);
  const bobClient = apollo(users.bob.token);
  const { data } = await aliceClient.mutate({ mutation: CREATE, variables: { input: { title: 'alice private' } } });
  const aliceTask = data.createTask.id;
  const bobList = await bobClient.query({ query: LIST, variables: { first: 100 } });
  const bobIds = bobList.data.tasks.edges.map((e) => e.node.id);
  assert.ok(!bobIds.includes(aliceTask));
  assert.ok(bobList.data.tasks.edges.every((e) => e.node.title.startsWith('urql')), 'only Bob\'s own tasks');
  const direct = await bobClient.query({ query: gql`query($id: ID!) { task(id: $id) { id } }`, variables: { id: aliceTask } });
  assert.equal(direct.data.task, null);
  await assert.rejects(
    bobClient.mutate({ mutation: UPDATE, variables: { id: aliceTask, input: { title: 'mine now' } } }),
    (err) => CombinedGraphQLErrors.is(err) && err.errors[0].extensions.code === 'NOT_FOUND',
  );
});

test('introspection without a token gives exactly the schema in schema.graphql', async () => {
  const response = await fetch(taskql.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({ query: getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, inputValueDeprecation: true }) }),
  });
  assert.equal(response.status, 200);
  const { data, errors } = await response.json();
  assert.equal(errors, undefined);
  const served = buildClientSchema(data);
  const checkedIn = buildSchema(fs.readFileSync(schemaPath, 'utf8'));
  // The exact comparison: the served schema printed as SDL is the checked-in file's SDL.
  assert.equal(printSchema(lexicographicSortSchema(served)), printSchema(lexicographicSortSchema(checkedIn)));
  // And no change a client could notice, in either direction. async-graphql lists all five
  // built-in scalars in introspection, while graphql-js keeps only those referenced; the
  // spec makes built-in scalars part of every schema, so their absence is not a change.
  const builtIn = /^Standard scalar \w+ was removed because it is not referenced anymore\.$/;
  const changes = (from, to) =>
    [...findBreakingChanges(from, to), ...findDangerousChanges(from, to)].filter((c) => !builtIn.test(c.description));
  assert.deepEqual(changes(checkedIn, served), []);
  assert.deepEqual(changes(served, checkedIn), []);
});

const TASK_CHANGED = gql`
  subscription Changes($filter: TaskFilter) {
    taskChanged(filter: $filter) { kind taskId at task { id title completed updatedAt } }
  }
`;

/**
 * A graphql-ws client for `token` whose socket answers one question: is the subscription
 * live yet? After each `subscribe` it sends a `ping`; taskql reads no message after
 * `subscribe` before the subscription is registered, so the `pong` means it is. `live(n)`
 * resolves once n subscriptions are.
 */
function liveClient(token) {
  let settled = 0;
  const waiters = [];
  class Traced extends WebSocket {
    send(data, ...rest) {
      super.send(data, ...rest);
      if (JSON.parse(data).type !== 'subscribe') return;
      const onPong = (message) => {
        if (JSON.parse(String(message)).type !== 'pong') return;
        this.off('message', onPong);
        settled += 1;
        for (const waiter of waiters.filter((w) => settled >= w.n)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      };
      this.on('message', onPong);
      super.send(JSON.stringify({ type: 'ping' }));
    }
  }
  const client = createWsClient({
    url: taskql.url.replace(/^http/, 'ws'),
    webSocketImpl: Traced,
    connectionParams: { authorization: `Bearer ${token}` },
  });
  const live = (n) => new Promise((resolve) => (settled >= n ? resolve() : waiters.push({ n, resolve })));
  return { client, live };
}

/** The next `count` values an observable emits. */
function take(observable, count) {
  const values = [];
  let subscription;
  const done = new Promise((resolve, reject) => {
    subscription = observable.subscribe({
      next(value) {
        values.push(value);
        if (values.length === count) resolve(values);
      },
      error: reject,
    });
  });
  return { done: done.finally(() => subscription.unsubscribe()), subscription };
}

test('Apollo Client GraphQLWsLink: live events from another client update the normalized cache', async () => {
  const { client: ws, live } = liveClient(users.alice.token);
  const client = new ApolloClient({ link: new GraphQLWsLink(ws), cache: new InMemoryCache() });
  const writer = apollo(users.alice.token);
  try {
    const { data } = await writer.mutate({ mutation: CREATE, variables: { input: { title: 'live: before' } } });
    const id = data.createTask.id;
    // The list as this client shows it, in its cache.
    await client.cache.writeFragment({
      id: client.cache.identify({ __typename: 'Task', id }),
      fragment: gql`fragment T on Task { id title completed updatedAt }`,
      data: { __typename: 'Task', id, title: 'live: before', completed: false, updatedAt: data.createTask.updatedAt },
    });
    const events = take(client.subscribe({ query: TASK_CHANGED }), 3);
    await live(1);
    await writer.mutate({ mutation: UPDATE, variables: { id, input: { title: 'live: after' } } });
    await writer.mutate({ mutation: UPDATE, variables: { id, input: { completed: true } } });
    await writer.mutate({ mutation: DELETE, variables: { id } });
    const [updated, completed, deleted] = (await events.done).map((r) => r.data.taskChanged);
    assert.equal(updated.kind, 'UPDATED');
    assert.equal(completed.kind, 'COMPLETED');
    assert.equal(deleted.kind, 'DELETED');
    assert.equal(deleted.taskId, id);
    // The events' tasks were normalized into the cache: no refetch needed.
    const cached = client.cache.readFragment({
      id: client.cache.identify({ __typename: 'Task', id }),
      fragment: gql`fragment T on Task { id title completed }`,
    });
    assert.equal(cached.title, 'live: after');
    assert.equal(cached.completed, true);
  } finally {
    await ws.dispose();
  }
});

test('urql subscriptionExchange with graphql-ws: a filtered subscription sees only its tasks', async () => {
  const { client: ws, live } = liveClient(users.bob.token);
  const client = new Client({
    url: taskql.url,
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
    fetchOptions: { headers: { authorization: `Bearer ${users.bob.token}` } },
  });
  try {
    const seen = [];
    let resolveTwo;
    const two = new Promise((resolve) => (resolveTwo = resolve));
    const { unsubscribe } = client
      .subscription(TASK_CHANGED, { filter: { title: { startsWith: 'stream:' } } })
      .subscribe((result) => {
        assert.equal(result.error, undefined);
        seen.push(result.data.taskChanged);
        if (seen.length === 2) resolveTwo();
      });
    await live(1);
    // Alice's task (another user) and Bob's unrelated task must not arrive.
    const alice = apollo(users.alice.token);
    await alice.mutate({ mutation: CREATE, variables: { input: { title: 'stream: alice' } } });
    const create = (title) => client.mutation(CREATE, { input: { title } }).toPromise();
    await create('something else');
    const first = await create('stream: one');
    await create('stream: two');
    await two;
    unsubscribe();
    assert.deepEqual(seen.map((e) => e.task.title), ['stream: one', 'stream: two']);
    assert.equal(seen[0].taskId, first.data.createTask.id);
    assert.ok(seen.every((e) => e.kind === 'CREATED'));
  } finally {
    await ws.dispose();
  }
});

/** A user of its own for a test, signed up with Better Auth. */
async function newUser(name) {
  const session = await signUp(auth.baseURL, {
    email: `${name}@example.com`,
    password: `${name}-password-1234`,
    name,
  });
  return { ...session, token: await jwtFor(auth.baseURL, session.cookie) };
}

const PAGE = gql`
  query Page { tasks(first: 100) { version nodes { id title completed updatedAt } } }
`;
const CHANGES = gql`
  subscription Changes($since: String) {
    taskChanged(since: $since) { kind taskId version task { id title completed updatedAt } }
  }
`;

/**
 * The README's resuming client: a graphql-ws client that reconnects by itself and whose
 * every `subscribe` for the operation `Changes`, the first and each one after a reconnect,
 * carries the last version the application saw (`state.since`) as `since`. graphql-ws
 * serialises the message anew on each reconnect, through this replacer.
 */
function resumingWsClient({ url, token, since, onConnected }) {
  const state = { since };
  const client = createWsClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: Infinity,
    shouldRetry: () => true,
    // The test cuts the network on purpose; its clients come back at once rather than after
    // graphql-ws's default back-off of seconds.
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 50)),
    jsonMessageReplacer(key, value) {
      if (key === 'payload' && this?.type === 'subscribe' && value.operationName === 'Changes') {
        return { ...value, variables: { ...value.variables, since: state.since } };
      }
      return value;
    },
    on: { connected: () => onConnected?.() },
  });
  return { client, state };
}

/**
 * Changes another client of the same user makes while `proxy` keeps cutting the
 * subscriber's network: creates, edits, completions, deletions and bulk mutations, some
 * while connected and the rest while cut. Each round ends with a marker task the subscriber
 * must see (`seen(title)` resolves once it has).
 */
async function churn(writer, proxy, seen) {
  const create = async (title, extra = {}) =>
    (await writer.mutate({ mutation: CREATE, variables: { input: { title, ...extra } } })).data.createTask.id;
  const update = (id, input) => writer.mutate({ mutation: UPDATE, variables: { id, input } });
  const bulk = gql`mutation Bulk($ids: [ID!]!) { setTasksCompleted(ids: $ids, completed: true) { id } }`;
  const wipe = gql`mutation Wipe($ids: [ID!]!) { deleteTasks(ids: $ids) }`;
  const kept = [await create('kept 1'), await create('kept 2', { priority: 5 })];
  await seen('kept 2');
  for (let round = 0; round < 3; round += 1) {
    proxy.down();
    const made = [await create(`away ${round} a`), await create(`away ${round} b`), await create(`away ${round} c`)];
    await update(kept[round % 2], { title: `kept, renamed in round ${round}` });
    await writer.mutate({ mutation: bulk, variables: { ids: [made[0], made[1]] } });
    await writer.mutate({ mutation: DELETE, variables: { id: made[2] } });
    if (round === 1) await writer.mutate({ mutation: wipe, variables: { ids: [made[0]] } });
    proxy.up();
    await create(`marker ${round}`);
    await seen(`marker ${round}`);
  }
}

/** The user's tasks as the server has them, read afresh. */
async function serverTasks(token) {
  const fresh = apollo(token);
  const { data } = await fresh.query({ query: PAGE, fetchPolicy: 'network-only' });
  return data.tasks.nodes.map(({ id, title, completed }) => ({ id, title, completed })).sort((a, b) => a.id.localeCompare(b.id));
}

test('Apollo Client reconnects by itself, resumes from its last version, and its cache ends equal to the server', async () => {
  const user = await newUser('reconnecting-apollo');
  const proxy = await startProxy(taskql.url);
  const { fn: countedFetch, calls } = countingFetch();
  let connections = 0;
  const http = new HttpLink({ uri: taskql.url, fetch: countedFetch, headers: { authorization: `Bearer ${user.token}` } });
  const ws = resumingWsClient({ url: proxy.url, token: user.token, since: null, onConnected: () => (connections += 1) });
  const link = ApolloLink.split(
    ({ query }) => query.definitions.some((d) => d.kind === 'OperationDefinition' && d.operation === 'subscription'),
    new GraphQLWsLink(ws.client),
    http,
  );
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  const waiting = [];
  const seenTitles = new Set();
  const seen = (title) => new Promise((resolve) => (seenTitles.has(title) ? resolve() : waiting.push({ title, resolve })));
  let resyncs = 0;
  try {
    // The list, once, with the version it was read at.
    const { data } = await client.query({ query: PAGE });
    ws.state.since = data.tasks.version;
    const subscription = client.subscribe({ query: CHANGES, variables: { since: data.tasks.version } }).subscribe({
      next({ data: { taskChanged: event } }) {
        ws.state.since = event.version;
        // Edits and completions need nothing: the event's task is normalised into the cache.
        if (event.kind === 'CREATED') {
          client.cache.updateQuery({ query: PAGE }, (page) =>
            page.tasks.nodes.some((n) => n.id === event.task.id) ? page : { tasks: { ...page.tasks, nodes: [...page.tasks.nodes, event.task] } });
        } else if (event.kind === 'DELETED') {
          client.cache.updateQuery({ query: PAGE }, (page) => ({ tasks: { ...page.tasks, nodes: page.tasks.nodes.filter((n) => n.id !== event.taskId) } }));
          client.cache.evict({ id: client.cache.identify({ __typename: 'Task', id: event.taskId }) });
        } else if (event.kind === 'RESYNC') {
          resyncs += 1;
          client.refetchQueries({ include: [PAGE] });
        }
        if (event.task) {
          seenTitles.add(event.task.title);
          for (const w of waiting.filter((w) => w.title === event.task.title)) {
            waiting.splice(waiting.indexOf(w), 1);
            w.resolve();
          }
        }
      },
      error(err) { assert.fail(`the subscription failed: ${err}`); },
    });
    await churn(apollo(user.token), proxy, seen);
    subscription.unsubscribe();

    const cached = client.cache.readQuery({ query: PAGE }).tasks.nodes
      .map(({ id, title, completed }) => ({ id, title, completed }))
      .sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(cached, await serverTasks(user.token));
    assert.equal(resyncs, 0, 'every reconnect resumed exactly');
    assert.ok(connections >= 4, `reconnected after each cut (${connections} connections)`);
    assert.equal(calls.length, 1, 'the list was read once, never refetched');
  } finally {
    await ws.client.dispose();
    await proxy.close();
  }
});

test('urql with graphql-ws reconnects by itself, resumes from its last version, and ends equal to the server', async () => {
  const user = await newUser('reconnecting-urql');
  const proxy = await startProxy(taskql.url);
  let connections = 0;
  const ws = resumingWsClient({ url: proxy.url, token: user.token, since: null, onConnected: () => (connections += 1) });
  const { fn: countedFetch, calls } = countingFetch();
  const client = new Client({
    url: taskql.url,
    fetch: countedFetch,
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return { subscribe: (sink) => ({ unsubscribe: ws.client.subscribe(input, sink) }) };
        },
      }),
    ],
    fetchOptions: { headers: { authorization: `Bearer ${user.token}` } },
  });
  // The application's own list, as an urql app without a normalised cache keeps it.
  const tasks = new Map();
  const waiting = [];
  const seenTitles = new Set();
  const seen = (title) => new Promise((resolve) => (seenTitles.has(title) ? resolve() : waiting.push({ title, resolve })));
  let resyncs = 0;
  try {
    const page = await client.query(PAGE, {}).toPromise();
    for (const { id, title, completed } of page.data.tasks.nodes) tasks.set(id, { id, title, completed });
    ws.state.since = page.data.tasks.version;
    const { unsubscribe } = client.subscription(CHANGES, { since: page.data.tasks.version }).subscribe((result) => {
      assert.equal(result.error, undefined);
      const event = result.data.taskChanged;
      ws.state.since = event.version;
      if (event.kind === 'DELETED') tasks.delete(event.taskId);
      else if (event.kind === 'RESYNC') resyncs += 1;
      else tasks.set(event.task.id, { id: event.task.id, title: event.task.title, completed: event.task.completed });
      if (event.task) {
        seenTitles.add(event.task.title);
        for (const w of waiting.filter((w) => w.title === event.task.title)) {
          waiting.splice(waiting.indexOf(w), 1);
          w.resolve();
        }
      }
    });
    await churn(apollo(user.token), proxy, seen);
    unsubscribe();
    assert.deepEqual([...tasks.values()].sort((a, b) => a.id.localeCompare(b.id)), await serverTasks(user.token));
    assert.equal(resyncs, 0, 'every reconnect resumed exactly');
    assert.ok(connections >= 4, `reconnected after each cut (${connections} connections)`);
    assert.equal(calls.length, 1, 'the list was read once, never refetched');
  } finally {
    await ws.client.dispose();
    await proxy.close();
  }
});

/** Runs `fn(page)` on a new page of Debian's Chromium, closing the browser after. */
async function withPage(fn) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    await fn(await browser.newPage({ viewport: { width: 1400, height: 900 } }));
  } finally {
    await browser.close();
  }
}

/** Loads the playground and waits until GraphiQL has fetched the schema. */
async function openGraphiQL(page) {
  await page.goto(taskql.url);
  await page.waitForSelector('.graphiql-container', { timeout: 30000 });
  await page.locator('.graphiql-doc-explorer-search, [aria-label="Show Documentation Explorer"]').first().waitFor();
  await page.waitForLoadState('networkidle');
}

/**
 * Puts `token` in the Headers tab and `document` in the query editor as a person would
 * (click, select all, paste: setting CodeMirror's value through its API would bypass
 * GraphiQL's edit handlers), then runs the operation named `name`.
 */
async function runInGraphiQL(page, token, document, name) {
  const paste = async (editor, text) => {
    await editor.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.insertText(text);
  };
  const headerEditor = page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror');
  await paste(headerEditor, JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2));
  await paste(page.locator('.graphiql-query-editor .CodeMirror'), document);
  // GraphiQL picks up the edited operation after a short debounce; it records the name it
  // will send, so wait for that rather than for a fixed time.
  await page.waitForFunction((expected) => localStorage.getItem('graphiql:operationName') === expected, name);
  await page.click('.graphiql-execute-button');
}

/**
 * The result pane's JSON once it contains `text`, with a screenshot either way. The pane is
 * a CodeMirror editor, which renders only the lines in view: its whole value is read rather
 * than the DOM text.
 */
async function resultContaining(page, text, screenshot) {
  fs.mkdirSync(artifacts, { recursive: true });
  try {
    await page.waitForFunction(
      (expected) => (document.querySelector('.result-window .CodeMirror')?.CodeMirror.getValue() ?? '').includes(expected),
      text,
      { timeout: 30000 },
    );
  } finally {
    await page.screenshot({ path: path.join(artifacts, screenshot), fullPage: true });
  }
  return JSON.parse(await page.evaluate(() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()));
}

test('GraphiQL in Chromium: a subscription from the playground shows a live event', async () => {
  await withPage(async (page) => {
    // The page's own WebSocket asks, after `subscribe`, whether the subscription is live
    // (see liveClient); the test mutates only then.
    await page.addInitScript(() => {
      window.__live = 0;
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (data) {
        send.call(this, data);
        if (JSON.parse(data).type !== 'subscribe') return;
        const onMessage = (event) => {
          if (JSON.parse(event.data).type !== 'pong') return;
          this.removeEventListener('message', onMessage);
          window.__live += 1;
        };
        this.addEventListener('message', onMessage);
        send.call(this, JSON.stringify({ type: 'ping' }));
      };
    });
    await openGraphiQL(page);
    await runInGraphiQL(page, users.alice.token, 'subscription Live {\n  taskChanged { kind taskId task { title } }\n}', 'Live');
    await page.waitForFunction(() => window.__live >= 1, undefined, { timeout: 30000 });
    await apollo(users.alice.token).mutate({ mutation: CREATE, variables: { input: { title: 'seen in GraphiQL' } } });
    const result = await resultContaining(page, 'seen in GraphiQL', 'graphiql-subscription.png');
    assert.equal(result.data.taskChanged.kind, 'CREATED');
  });
});

test('GraphiQL in Chromium: set the Authorization header, run a query, see the tasks', async () => {
  await withPage(async (page) => {
    const outside = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(taskql.origin) && !request.url().startsWith('data:')) outside.push(request.url());
    });
    const failures = [];
    page.on('response', (response) => {
      if (response.status() >= 400) failures.push(`${response.status()} ${response.url()}`);
    });
    // GraphiQL fetches the schema on load, before any token is entered: the placeholder in
    // the header editor must not be sent as a (refused) token.
    await openGraphiQL(page);
    assert.deepEqual(failures, [], 'loading the playground caused no failed request');
    await runInGraphiQL(
      page,
      users.alice.token,
      'query MyTasks {\n  me { email }\n  tasks(first: 50) { totalCount nodes { title } }\n}',
      'MyTasks',
    );
    const result = await resultContaining(page, 'alice private', 'graphiql.png');
    assert.equal(result.data.me.email, 'alice@example.com');
    const titles = result.data.tasks.nodes.map((n) => n.title);
    assert.ok(titles.includes('call mom today'), titles.join(', '));
    assert.ok(!titles.some((t) => t.startsWith('urql')), "Bob's tasks are not Alice's");
    assert.deepEqual(outside, [], 'the page loaded nothing from outside taskql');
  });
});

test('key rotation: a token from a new ES256 key is accepted without restarting taskql', async () => {
  const before = await apollo(users.alice.token).query({ query: gql`{ me { id } }` });
  assert.equal(before.data.me.id, users.alice.userId);
  const oldKid = header(users.alice.token).kid;

  // Rotate: mint an ES256 key and restart Better Auth (same URL) configured to sign with it.
  await auth.mintKey('ES256');
  const port = auth.port;
  await auth.close();
  auth = await startBetterAuth({ dbUrl: authDb.url, alg: 'ES256', port });
  const rotated = await jwtFor(auth.baseURL, users.alice.cookie);
  assert.equal(header(rotated).alg, 'ES256');
  assert.notEqual(header(rotated).kid, oldKid);

  const { data } = await apollo(rotated).query({ query: gql`{ me { id email } }` });
  assert.equal(data.me.id, users.alice.userId);
  // The old key is still published, so tokens issued before the rotation keep working.
  const old = await apollo(users.alice.token).query({ query: gql`{ me { id } }`, fetchPolicy: 'network-only' });
  assert.equal(old.data.me.id, users.alice.userId);
});

// The manifest graphql-codegen's client preset wrote from trusted/documents.graphql (the run
// script generates it before the suite starts): ids are "sha256:<hex>" of each document.
const trustedDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'trusted');

test('trusted documents: Apollo Client and urql send only the ids of the manifest codegen wrote; nothing else runs', async () => {
  const manifestPath = path.join(trustedDir, 'gql/persisted-documents.json');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  // What a client build does with codegen's output: each operation knows its id.
  const idByName = new Map(
    Object.entries(manifest).map(([id, body]) => [
      parse(body).definitions.find((d) => d.kind === 'OperationDefinition').name.value,
      id.replace(/^sha256:/, ''),
    ]),
  );
  const operations = parse(fs.readFileSync(path.join(trustedDir, 'documents.graphql'), 'utf8'));
  const doc = (name) => ({
    kind: 'Document',
    definitions: operations.definitions.filter((d) => d.name.value === name),
  });
  const idOf = (document) => {
    const id = idByName.get(document.definitions.find((d) => d.kind === 'OperationDefinition').name.value);
    assert.ok(id, 'every document sent is in the manifest');
    return id;
  };

  const trusted = await startTaskql({
    DATABASE_URL: apiDb.url,
    AUTH_JWKS_URL: auth.jwksUrl,
    AUTH_ISSUER: auth.baseURL,
    AUTH_AUDIENCE: auth.baseURL,
    TRUSTED_DOCUMENTS: manifestPath,
    TRUSTED_DOCUMENTS_ONLY: 'true',
  });
  try {
    assert.ok(trusted.lines.some((line) => line.includes('trusted documents planned')), 'the manifest was read');
    const sent = [];
    const recording = (input, init = {}) => {
      sent.push({ method: init.method ?? 'GET', url: String(input), body: init.body ? JSON.parse(init.body) : undefined });
      return fetch(input, init);
    };
    const headers = { authorization: `Bearer ${users.alice.token}` };
    const apolloTrusted = new ApolloClient({
      link: ApolloLink.from([
        createPersistedQueryLink({ generateHash: idOf }),
        new HttpLink({ uri: trusted.url, fetch: recording, headers }),
      ]),
      cache: new InMemoryCache(),
    });
    const created = await apolloTrusted.mutate({
      mutation: doc('TrustedCreate'),
      variables: { input: { title: 'trusted by id', priority: 2 } },
    });
    assert.equal(created.data.createTask.title, 'trusted by id');
    const listed = await apolloTrusted.query({ query: doc('TrustedList'), variables: { first: 50 } });
    assert.ok(listed.data.tasks.edges.some((e) => e.node.title === 'trusted by id'));
    const me = await apolloTrusted.query({ query: doc('TrustedMe') });
    assert.equal(me.data.me.email, 'alice@example.com');
    assert.equal(sent.length, 3);
    for (const request of sent) {
      assert.equal(request.body.query, undefined, 'Apollo sent the id alone');
      assert.match(request.body.extensions.persistedQuery.sha256Hash, /^[0-9a-f]{64}$/);
    }

    // Any other document is refused, however it is sent.
    const plain = new ApolloClient({ link: new HttpLink({ uri: trusted.url, headers }), cache: new InMemoryCache() });
    const refused = await plain.query({ query: gql`{ me { id } }` }).then(
      () => assert.fail('an untrusted document ran'),
      (error) => error,
    );
    assert.ok(CombinedGraphQLErrors.is(refused), String(refused));
    assert.equal(refused.errors[0].extensions.code, 'DOCUMENT_NOT_TRUSTED');

    sent.length = 0;
    const urql = new Client({
      url: trusted.url,
      exchanges: [
        cacheExchange,
        persistedExchange({
          enforcePersistedQueries: true,
          enableForMutation: true,
          generateHash: async (_query, document) => idOf(document),
        }),
        fetchExchange,
      ],
      fetch: recording,
      fetchOptions: () => ({ headers }),
    });
    const page = await urql.query(doc('TrustedList'), { first: 50 }).toPromise();
    assert.equal(page.error, undefined, String(page.error));
    assert.ok(page.data.tasks.edges.some((e) => e.node.title === 'trusted by id'));
    const urqlCreated = await urql
      .mutation(doc('TrustedCreate'), { input: { title: 'urql trusted', priority: 1 } })
      .toPromise();
    assert.equal(urqlCreated.error, undefined, String(urqlCreated.error));
    assert.equal(urqlCreated.data.createTask.title, 'urql trusted');
    assert.equal(sent.length, 2);
    for (const request of sent) {
      const params = request.body ?? Object.fromEntries(new URL(request.url).searchParams);
      assert.equal(params.query, undefined, 'urql sent the id alone');
    }
  } finally {
    await trusted.stop();
  }
});
