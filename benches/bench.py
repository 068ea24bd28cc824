"""How close to the database is taskql? The release binary and the same SQL, side by side.

Run it with `scripts/bench` (which installs wrk when missing). In one run, on one machine:

1. seeds (once; reused while the seed version matches) 10,000 users with 100 tasks each and
   one user with 10,000 tasks, deterministically, and a copy of the tasks in
   `bench_plain_tasks`: the table as it would be without the change feed (no version columns,
   no version index, no feed triggers), which the raw-SQL twins of the write workloads use;
2. runs `vacuum analyze` (earlier write workloads leave the planner's statistics stale),
   starts the release binary and warms it (every user and token seen once, as in steady
   state);
3. for each repetition and each workload, interleaved: drives taskql over HTTP with wrk at
   32 connections, then the equivalent SQL with `pgbench -M prepared` at the same concurrency;
4. prints, per workload: req/s, p50 and p99 of both, the ratio to raw SQL, statements per
   request (counted exactly in a second server's statement log), server and database CPU
   per request, and the server's peak RSS; then a constant-rate run of Q1 at 500 req/s;
5. with `--writes`, the database alone: inserts per second into `bench_plain_tasks` (plain)
   and into `tasks` with the change feed (the statement taskql sends, version bump included),
   interleaved, at 1 to 64 clients.

Options: --seconds (per run, default 8), --reps (default 3), --clients (32), --only Q1,Q3,
--writes (run part 5 too), --writes-only. Traffic goes only to 127.0.0.1; every run ends by
itself.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432")
DB = os.environ.get("BENCH_DATABASE", "taskql_bench")
SECRET = "bench-secret-0123456789-abcdefghijklmnop"
SEED_VERSION = "4"
USERS = 10_000
TASKS_PER_USER = 100
HEAVY_TASKS = 10_000
WALK_USERS = 1_000

Q1 = "{ tasks(first: 20, orderBy: [{field: CREATED_AT, direction: DESC}]) { nodes { id title completed priority dueAt createdAt } } }"
Q2 = "{ tasks(first: 20, filter: {completed: false, priority: {gte: 4}}, orderBy: [{field: DUE_AT, direction: ASC}]) { totalCount nodes { id title priority dueAt } } }"
Q3 = "{ tasks(first: 20, orderBy: [{field: CREATED_AT, direction: DESC}]) { nodes { id title completed priority dueAt createdAt owner { name email } } } }"
Q4 = "{ tasks(first: 50, filter: {completed: false}, orderBy: [{field: PRIORITY, direction: DESC}, {field: CREATED_AT, direction: DESC}]) { totalCount nodes { id title priority createdAt } } }"
M1 = "mutation { createTask(input: {title: \"bench\", description: \"a task\", priority: 4}) { id title description priority completed createdAt } }"
U1 = "mutation($id: ID!, $title: String!) { updateTask(id: $id, input: {title: $title}) { id title updatedAt } }"
D1 = "mutation($id: ID!) { deleteTask(id: $id) }"
# Tasks stocked for each delete run (more than a run deletes: raw SQL deletes several times
# faster than it inserts), then removed again.
SPARES = {"tasks": 40_000, "bench_plain_tasks": 250_000}
Q5 = "query($after: String) { tasks(first: 20, after: $after, orderBy: [{field: CREATED_AT, direction: DESC}]) { pageInfo { endCursor } nodes { id title completed priority dueAt createdAt } } }"

USER = "'u' || :u"
SQL = {
    "Q1": f"""\\set u random(1, {USERS})
SELECT id, title, completed, priority, due_at, created_at FROM tasks WHERE user_id = {USER} ORDER BY created_at DESC, id DESC LIMIT 20;
""",
    "Q2": f"""\\set u random(1, {USERS})
SELECT id, title, priority, due_at FROM tasks WHERE user_id = {USER} AND completed = false AND priority >= 4 ORDER BY due_at ASC NULLS LAST, id LIMIT 20;
SELECT count(*) FROM tasks WHERE user_id = {USER} AND completed = false AND priority >= 4;
""",
    "Q3": f"""\\set u random(1, {USERS})
SELECT t.id, t.title, t.completed, t.priority, t.due_at, t.created_at, u.name, u.email FROM tasks t JOIN users u ON u.id = t.user_id WHERE t.user_id = {USER} ORDER BY t.created_at DESC, t.id DESC LIMIT 20;
""",
    "Q4": """SELECT id, title, priority, created_at FROM tasks WHERE user_id = 'heavy' AND completed = false ORDER BY priority DESC, created_at DESC, id DESC LIMIT 50;
SELECT count(*) FROM tasks WHERE user_id = 'heavy' AND completed = false;
""",
    # The write twins use bench_plain_tasks: a plain insert, update and delete, with none of
    # the change feed's machinery, which is what taskql's writes are measured against.
    "M1": f"""\\set u random(1, {USERS})
INSERT INTO bench_plain_tasks (id, user_id, title, description, priority) VALUES (gen_random_uuid(), {USER}, 'bench', 'a task', 4) RETURNING id, title, description, priority, completed, created_at;
""",
    "U1": f"""\\set u random(1, {USERS})
\\set j random(1, {TASKS_PER_USER})
\\set r random(1, 1000000000)
UPDATE bench_plain_tasks SET title = 'edited ' || :r WHERE id = md5('t' || :u || '-' || :j)::uuid AND user_id = {USER} RETURNING id, title, updated_at;
""",
    # Each delete takes the next of the stocked spare tasks (taskql is handed their ids).
    "D1": """DELETE FROM bench_plain_tasks t USING bench_spares s WHERE s.n = (SELECT nextval('bench_spares_n_seq')) AND t.id = s.id AND t.user_id = s.user_id RETURNING t.id;
""",
    # The keyset step after page p (1-4) of user u: the seed gives task j of user u the time
    # base + (u * 100 + j) s and the id md5('t' || u || '-' || j), so the cursor's values are
    # computed in the statement, as taskql reads them from its cursor.
    "Q5": f"""\\set u random(1, {WALK_USERS})
\\set p random(1, 4)
SELECT id, title, completed, priority, due_at, created_at FROM tasks WHERE user_id = {USER} AND (created_at, id) < (timestamptz '2025-01-01 00:00:00+00' + (:u * 100 + 101 - 20 * :p) * interval '1 second', md5('t' || :u || '-' || (101 - 20 * :p))::uuid) ORDER BY created_at DESC, id DESC LIMIT 20;
""",
}

WORKLOADS = ["Q1", "Q2", "Q3", "Q4", "M1", "Q5", "U1", "D1"]
WRITES = {"M1", "U1", "D1"}
LABELS = {
    "Q1": "Q1 page of 20 newest",
    "Q2": "Q2 filtered + sorted + totalCount",
    "Q3": "Q3 page + owner",
    "Q4": "Q4 10k-task user, filter + sort + totalCount",
    "M1": "M1 create",
    "Q5": "Q5 pages 2-5 through after",
    "U1": "U1 edit a title",
    "D1": "D1 delete",
}

# The database alone (--writes): a plain insert against the statement taskql sends, which
# advances the user's version in the same statement.
PLAIN_INSERT = f"""\\set u random(1, {USERS})
INSERT INTO bench_plain_tasks (id, user_id, title, description, priority, due_at, completed) VALUES (gen_random_uuid(), {USER}, 'bench', 'a task', 4, NULL, false) RETURNING id, user_id, title, description, completed, priority, due_at, completed_at, created_at, updated_at;
"""
FEED_INSERT = f"""\\set u random(1, {USERS})
WITH v AS (UPDATE users SET version = version + 1 WHERE id = {USER} RETURNING version, sync_epoch) INSERT INTO tasks (id, user_id, title, description, priority, due_at, completed, version, created_version, completed_version) SELECT gen_random_uuid(), {USER}, 'bench', 'a task', 4::smallint, NULL::timestamptz, false, v.version, v.version, v.version FROM v RETURNING id, user_id, title, description, completed, priority, due_at, completed_at, created_at, updated_at, version, (SELECT sync_epoch FROM v);
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def psql(sql, db=DB, quiet=True):
    args = ["psql", f"{SERVER}/{db}", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-t", "-A", "-c", sql]
    return (subprocess.run(args, check=True, capture_output=quiet, text=True).stdout or "").strip()


def seed(binary):
    try:
        if psql("select value from bench_meta where key = 'seed'") == SEED_VERSION:
            log(f"using the seeded database {DB}")
            return
    except subprocess.CalledProcessError:
        pass
    log(f"seeding {DB}: {USERS} users x {TASKS_PER_USER} tasks + one user with {HEAVY_TASKS} (once)")
    started = time.time()
    psql(f"drop database if exists {DB} with (force)", db="postgres")
    env = dict(os.environ, DATABASE_URL=f"{SERVER}/{DB}", LOG_FORMAT="json", RUST_LOG="warn",
               AUTH_JWT_SECRET=SECRET)
    subprocess.run([binary, "migrate"], check=True, env=env)
    # claims_digest as taskql computes it (SHA-256 of [email, name, image] as JSON), so a
    # warm server has nothing to write.
    psql(f"""
set synchronous_commit = off;
set maintenance_work_mem = '512MB';
insert into users (id, email, name, claims_digest)
select id, id || '@example.com', 'User ' || id,
       sha256(convert_to(format('["%s@example.com","User %s",null]', id, id), 'UTF8'))
from (select 'u' || i as id from generate_series(1, {USERS}) i
      union all select 'heavy') ids;
-- Each task is its user's change number j, as taskql's writes would have numbered them.
insert into tasks (id, user_id, title, description, completed, priority, due_at, created_at, updated_at,
                   version, created_version, completed_version)
select md5('t' || u || '-' || j)::uuid, 'u' || u, 'Task ' || j || ' of user ' || u,
       case when j % 3 = 0 then 'Some notes about task ' || j end,
       j % 4 = 0, 1 + (j * 7 + u) % 5,
       case when j % 5 <> 0 then timestamptz '2026-01-01 00:00:00+00' + ((u * 31 + j * 17) % 400) * interval '1 day' end,
       timestamptz '2025-01-01 00:00:00+00' + (u * 100 + j) * interval '1 second',
       timestamptz '2025-01-01 00:00:00+00' + (u * 100 + j) * interval '1 second',
       j, j, j
from generate_series(1, {USERS}) u, generate_series(1, {TASKS_PER_USER}) j;
insert into tasks (id, user_id, title, description, completed, priority, due_at, created_at, updated_at,
                   version, created_version, completed_version)
select md5('heavy-' || j)::uuid, 'heavy', 'Heavy task ' || j, null, j % 3 = 0, 1 + (j * 7) % 5,
       case when j % 5 <> 0 then timestamptz '2026-01-01 00:00:00+00' + (j % 400) * interval '1 day' end,
       timestamptz '2024-01-01 00:00:00+00' + j * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + j * interval '1 second',
       j, j, j
from generate_series(1, {HEAVY_TASKS}) j;
update users set version = case when id = 'heavy' then {HEAVY_TASKS} else {TASKS_PER_USER} end;
-- The tasks table without the change feed: the same columns, constraints, indexes and the
-- triggers it had before (completion time, update time), none of the feed's.
create table bench_plain_tasks (like tasks including all);
alter table bench_plain_tasks drop column version, drop column created_version, drop column completed_version;
alter table bench_plain_tasks add constraint bench_plain_tasks_user_id_fkey foreign key (user_id) references users (id) on delete cascade;
create trigger set_completed_at before insert or update of completed, completed_at on bench_plain_tasks
    for each row execute function set_completed_at();
create trigger set_updated_at before update on bench_plain_tasks
    for each row execute function set_updated_at('search');
insert into bench_plain_tasks (id, user_id, title, description, completed, priority, due_at, completed_at, created_at, updated_at)
select id, user_id, title, description, completed, priority, due_at, completed_at, created_at, updated_at from tasks;
create table bench_meta (key text primary key, value text);
insert into bench_meta values ('seed', '{SEED_VERSION}');
""", quiet=False)
    psql("vacuum analyze")
    log(f"seeded in {time.time() - started:.0f} s")


def token(sub):
    def b64(value):
        return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()
    now = int(time.time())
    head = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': sub, 'email': f'{sub}@example.com', 'name': f'User {sub}', 'iat': now, 'exp': now + 7200})}"
    signature = hmac.new(SECRET.encode(), head.encode(), hashlib.sha256).digest()
    return f"{head}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


# With --trusted, every workload's document is a trusted document (TRUSTED_DOCUMENTS, only
# those run) and requests carry its id instead of its text: no parse and no document check.
TRUSTED = False
DOCUMENTS = [Q1, Q2, Q3, Q4, M1, U1, D1, Q5, "{ me { id } }"]


def body(query, variables=None):
    """A request's JSON body: the document's text, or with --trusted only its id."""
    if TRUSTED:
        document_id = "sha256:" + hashlib.sha256(query.encode()).hexdigest()
        return json.dumps({"documentId": document_id, "variables": variables or {}})
    return json.dumps({"query": query, "variables": variables or {}})


def server_env(workdir, **extra):
    env = dict(os.environ, DATABASE_URL=f"{SERVER}/{DB}", PORT="0", LOG_FORMAT="json",
               RUST_LOG="warn,taskql::app=info", AUTH_JWT_SECRET=SECRET,
               RATE_LIMIT_PER_MINUTE="0", CURSOR_SECRET=SECRET + "-cursors")
    env.update(extra)
    if TRUSTED:
        manifest = os.path.join(workdir, "trusted-documents.json")
        with open(manifest, "w") as f:
            json.dump({hashlib.sha256(q.encode()).hexdigest(): q for q in DOCUMENTS}, f)
        env.update(TRUSTED_DOCUMENTS=manifest, TRUSTED_DOCUMENTS_ONLY="true")
    return env


def start_server(binary, workdir):
    log_path = os.path.join(workdir, "server.log")
    env = server_env(workdir)
    server = subprocess.Popen([binary, "serve"], env=env, stderr=open(log_path, "w"),
                              stdout=subprocess.DEVNULL)
    for _ in range(600):
        with open(log_path) as f:
            found = re.search(r'"addr":"([^"]+)"', f.read())
        if found:
            return server, f"http://{found.group(1)}/graphql"
        if server.poll() is not None:
            sys.exit(f"taskql did not start:\n{open(log_path).read()}")
        time.sleep(0.1)
    sys.exit("taskql did not start")


def post(url, tok, query, variables=None):
    return post_body(url, tok, body(query, variables))


def post_body(url, tok, text):
    request = urllib.request.Request(url, text.encode(), {"content-type": "application/json",
                                                 "authorization": f"Bearer {tok}"})
    with urllib.request.urlopen(request) as response:
        result = json.load(response)
    if "errors" in result:
        sys.exit(f"the workload query failed: {result['errors']}")
    return result["data"]


def wrk_script(workdir, name, lines, sequential=False, once=False):
    """A wrk script sending, per request, a random line's token and body (or each line in
    turn, when `sequential`; with `once`, wrk's threads take alternate lines, so no line is
    sent twice while there are lines left)."""
    data = os.path.join(workdir, f"{name}.requests")
    with open(data, "w") as f:
        for tok, text in lines:
            f.write(f"{tok}\t{text}\n")
    script = os.path.join(workdir, f"{name}.lua")
    with open(script, "w") as f:
        f.write(f"""
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local lines = {{}}
for line in io.lines("{data}") do
  local tab = string.find(line, "\\t", 1, true)
  table.insert(lines, {{ string.sub(line, 1, tab - 1), string.sub(line, tab + 1) }})
end
local n = 0
local sequential = {"true" if sequential else "false"}
local once = {"true" if once else "false"}
math.randomseed(os.time() + tonumber(tostring({{}}):sub(8), 16))
local start = math.random(#lines)
request = function()
  n = n + 1
  local pick
  if once then
    -- Thread i takes lines i, i + 2, i + 4, ... (wrk runs two threads here).
    pick = lines[((id or 0) + 2 * (n - 1)) % #lines + 1]
  elseif sequential then
    -- Sequential (warm-up): every line in turn from a random start.
    pick = lines[(start + n) % #lines + 1]
  else
    pick = lines[math.random(#lines)]
  end
  return wrk.format("POST", nil, {{
    ["content-type"] = "application/json",
    ["authorization"] = "Bearer " .. pick[1],
  }}, pick[2])
end
""")
    return script


def requests_for(name, url, tokens):
    """(token, body) lines for a workload; Q5's carry real cursors fetched from the server."""
    if name == "Q4":
        return [(token("heavy"), body(Q4))]
    if name == "Q5":
        lines = []
        for u in range(1, WALK_USERS + 1):
            tok = tokens[u - 1]
            after = None
            for page in range(1, 5):
                data = post(url, tok, Q5, {"after": after})
                after = data["tasks"]["pageInfo"]["endCursor"]
                lines.append((tok, body(Q5, {"after": after})))
        return lines
    if name == "U1":
        rng = random.Random(1)
        lines = []
        for _ in range(50_000):
            u = rng.randint(1, USERS)
            j = rng.randint(1, TASKS_PER_USER)
            task = hashlib.md5(f"t{u}-{j}".encode()).hexdigest()
            task = f"{task[:8]}-{task[8:12]}-{task[12:16]}-{task[16:20]}-{task[20:]}"
            lines.append((tokens[u - 1], body(U1, {"id": task, "title": f"edited {rng.randrange(10**9)}"})))
        return lines
    if name == "D1":
        # Made before each run (see stock_spares); one line now so the query can be checked.
        return []
    query = {"Q1": Q1, "Q2": Q2, "Q3": Q3, "M1": M1}[name]
    return [(tok, body(query)) for tok in tokens]


def stock_spares(table):
    """Puts SPARES[table] tasks titled 'spare' into `table`, spread over the users (in `tasks` with
    versions as taskql would give them), and returns (user, id) of each."""
    if table == "tasks":
        psql(f"""
with s as (select 'u' || (1 + i % {USERS}) as user_id, gen_random_uuid() as id, i from generate_series(1, {SPARES["tasks"]}) i),
n as (select s.*, row_number() over (partition by user_id order by i) as rn from s),
bumped as (update users u set version = u.version + c.k
           from (select user_id, count(*) as k from n group by user_id) c
           where u.id = c.user_id returning u.id, u.version - c.k as base)
insert into tasks (id, user_id, title, priority, created_at, version, created_version, completed_version)
select n.id, n.user_id, 'spare', 1, timestamptz '2020-01-01 00:00:00+00', b.base + n.rn, b.base + n.rn, b.base + n.rn
from n join bumped b on b.id = n.user_id""")
        rows = psql("select user_id || ' ' || id from tasks where title = 'spare'")
        return [tuple(line.split()) for line in rows.splitlines()]
    psql(f"""
drop table if exists bench_spares;
create table bench_spares (n bigserial primary key, id uuid not null, user_id text not null);
insert into bench_spares (id, user_id)
select gen_random_uuid(), 'u' || (1 + i % {USERS}) from generate_series(1, {SPARES["bench_plain_tasks"]}) i order by random();
insert into bench_plain_tasks (id, user_id, title, priority, created_at)
select id, user_id, 'spare', 1, timestamptz '2020-01-01 00:00:00+00' from bench_spares;
select setval('bench_spares_n_seq', 1, false);
analyze bench_spares""")
    return []


def clear_spares():
    """Removes what a delete run left of the spares (as taskql would, leaving tombstones)."""
    psql("""
with own as (select set_config('taskql.writer', 'on', true)),
gone as (delete from tasks t using own where t.title = 'spare' returning t.user_id, t.id),
n as (select user_id, id, row_number() over (partition by user_id order by id) as rn from gone),
bumped as (update users u set version = u.version + c.k
           from (select user_id, count(*) as k from gone group by user_id) c
           where u.id = c.user_id returning u.id, u.version - c.k as base)
insert into task_tombstones (user_id, version, task_id)
select n.user_id, b.base + n.rn, n.id from n join bumped b on b.id = n.user_id""")
    psql("delete from bench_plain_tasks where title = 'spare'")


def delete_script(workdir, spares, tokens_by_user):
    lines = [(tokens_by_user[user], body(D1, {"id": task}))
             for user, task in spares]
    random.Random(2).shuffle(lines)
    return wrk_script(workdir, "D1", lines, once=True)


def parse_wrk(output):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    def ms(label):
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(\w+)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    total = int(re.search(r"(\d+) requests in", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "requests": total,
            "non2xx": int(bad.group(1)) if bad else 0}


def parse_pgbench(output, logs):
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", output).group(1))
    latencies = []
    for path in logs:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))]
    return {"rps": tps, "p50": pct(0.5), "p99": pct(0.99), "requests": len(latencies), "non2xx": 0}


def cpu_seconds(pids, children=False):
    """User and system CPU of `pids`; with `children`, also that of their exited children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            if children:
                total += int(fields[13]) + int(fields[14])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / ticks


def postgres_pids():
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def db_cpu():
    # The cluster's live processes, plus what the postmaster has collected from backends that
    # exited (pgbench's, at the end of each run).
    return cpu_seconds(postgres_pids(), children=True)


def run_wrk(script, url, seconds, clients):
    output = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", script, url],
                            check=True, capture_output=True, text=True).stdout
    return parse_wrk(output)


def run_pgbench(name, workdir, seconds, clients, sql=None):
    script = os.path.join(workdir, f"{name}.sql")
    with open(script, "w") as f:
        f.write(sql or SQL[name])
    prefix = os.path.join(workdir, f"pgbench-{name}")
    for old in os.listdir(workdir):
        if old.startswith(f"pgbench-{name}"):
            os.remove(os.path.join(workdir, old))
    output = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                             "-T", str(seconds), "-l", "--log-prefix", prefix, "-f", script,
                             f"{SERVER}/{DB}"], check=True, capture_output=True, text=True).stdout
    logs = [os.path.join(workdir, p) for p in os.listdir(workdir) if p.startswith(f"pgbench-{name}")]
    return parse_pgbench(output, logs)


def measured(run, pids):
    """Runs `run`, returning its result with CPU per request added."""
    before_server, before_db = cpu_seconds(pids), db_cpu()
    result = run()
    after_db, after_server = db_cpu(), cpu_seconds(pids)
    n = max(result["requests"], 1)
    result["server_cpu_ms"] = (after_server - before_server) * 1000 / n
    result["db_cpu_ms"] = (after_db - before_db) * 1000 / n
    return result


def statements_per_request(binary, workdir, lines_by_workload):
    """Exact statements per request of each workload in steady state, counted in the
    statement log of a second, short-lived server (sqlx logs every statement in the span of
    its request): 20 requests to warm its caches, then 100 counted ones."""
    log_path = os.path.join(workdir, "statements.log")
    env = server_env(workdir, RUST_LOG="warn,taskql::app=info,sqlx::query=debug,tower_http=info")
    server = subprocess.Popen([binary, "serve"], env=env, stderr=open(log_path, "w"),
                              stdout=subprocess.DEVNULL)
    counts = {}
    try:
        for _ in range(600):
            found = re.search(r'"addr":"([^"]+)"', open(log_path).read())
            if found:
                break
            time.sleep(0.1)
        url = f"http://{found.group(1)}/graphql"
        for name, lines in lines_by_workload.items():
            sample = lines[:20]
            for tok, text in sample:
                post_body(url, tok, text)
            if name == "D1":
                # The counted deletes' users, warmed as the timed run's are.
                for tok, _ in lines[20:120]:
                    post(url, tok, "{ me { id } }")
            mark = os.path.getsize(log_path)
            for i in range(100):
                # A delete's id works once: deletes take lines not sent yet (their users are
                # not warm, so one sync statement in about three is not the workload's).
                tok, text = lines[20 + i] if name == "D1" else sample[i % len(sample)]
                post_body(url, tok, text)
            with open(log_path) as f:
                f.seek(mark)
                text = f.read()
            counts[name] = text.count('"target":"sqlx::query"') / 100
    finally:
        server.terminate()
        server.wait()
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--binary", required=True)
    parser.add_argument("--writes", action="store_true",
                        help="also measure the database's own insert rate, plain and with the feed")
    parser.add_argument("--writes-only", action="store_true")
    parser.add_argument("--trusted", action="store_true",
                        help="send every workload as a trusted document, by id")
    args = parser.parse_args()
    global TRUSTED
    TRUSTED = args.trusted
    workloads = [w for w in WORKLOADS if w in args.only.split(",")]

    seed(args.binary)
    log("vacuum analyze (statistics as fresh as a production database's)")
    psql("vacuum analyze")
    if args.writes_only:
        database_writes(args)
        return
    workdir = tempfile.mkdtemp(prefix="taskql-bench-")
    server, url = start_server(args.binary, workdir)
    try:
        tokens = [token(f"u{i}") for i in range(1, USERS + 1)]
        log("warming up: every user once (token cache, user sync cache)")
        warm = wrk_script(workdir, "warm", [(t, body(Q1)) for t in tokens],
                          sequential=True)
        run_wrk(warm, url, 8, args.clients)
        scripts = {}
        all_lines = {}
        tokens_by_user = {f"u{i}": tok for i, tok in enumerate(tokens, start=1)}
        for name in workloads:
            lines = requests_for(name, url, tokens)
            if name == "D1":
                clear_spares()
                spares = stock_spares("tasks")
                user, task = spares.pop()
                lines = [(tokens_by_user[user], body(D1, {"id": task}))]
            all_lines[name] = lines
            # Each workload's query is checked once by hand before it is timed.
            tok, text = lines[0]
            post_body(url, tok, text)
            if name != "D1":
                scripts[name] = wrk_script(workdir, name, lines)

        results = {name: {"taskql": [], "raw": []} for name in workloads}
        for rep in range(args.reps):
            for name in workloads:
                if name == "D1":
                    clear_spares()
                    scripts[name] = delete_script(workdir, stock_spares("tasks"), tokens_by_user)
                    stock_spares("bench_plain_tasks")
                log(f"rep {rep + 1}/{args.reps} {name}: taskql, then pgbench")
                results[name]["taskql"].append(measured(
                    lambda: run_wrk(scripts[name], url, args.seconds, args.clients), [server.pid]))
                results[name]["raw"].append(measured(
                    lambda: run_pgbench(name, workdir, args.seconds, args.clients), []))
                if name == "D1":
                    clear_spares()

        log("constant rate: Q1 at 500 req/s for 10 s")
        rate = subprocess.CompletedProcess([], 1, "", "Q1 was not among the workloads run") if "Q1" not in workloads else subprocess.run(["node", os.path.join(ROOT, "benches", "constant_rate.mjs"), url,
                               os.path.join(workdir, "Q1.requests"), "500", "10"],
                              capture_output=True, text=True)
        constant = json.loads(rate.stdout) if rate.returncode == 0 else {"error": rate.stderr[-300:]}

        with open(f"/proc/{server.pid}/status") as f:
            peak_rss = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024
    finally:
        server.terminate()
        server.wait()
    log("counting statements per request")
    if "D1" in all_lines:
        clear_spares()
        spares = stock_spares("tasks")
        all_lines["D1"] = [(tokens_by_user[user], body(D1, {"id": task}))
                           for user, task in spares[:200]]
    statements = statements_per_request(args.binary, workdir, all_lines)
    clear_spares()
    raw_statements = {name: sum(1 for line in SQL[name].splitlines() if line and not line.startswith("\\"))
                      for name in workloads}

    def median(runs, key):
        return statistics.median(run[key] for run in runs)

    machine = f"{os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
    print(f"\n{args.reps} interleaved repetitions of {args.seconds} s, {args.clients} connections, medians; {machine}; "
          f"PostgreSQL {psql('show server_version')}\n")
    print("| workload | raw SQL /s | taskql /s | taskql ÷ raw | taskql p50 | taskql p99 | raw p50 | raw p99 | statements/request (taskql, raw) | CPU/request ms (server, db; raw db) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for name in workloads:
        t, r = results[name]["taskql"], results[name]["raw"]
        ratio = median(t, "rps") / median(r, "rps")
        summary[name] = {"taskql": t, "raw": r, "ratio": ratio}
        bad = sum(run["non2xx"] for run in t)
        print(f"| {LABELS[name]} | {median(r, 'rps'):,.0f} | {median(t, 'rps'):,.0f} | **{ratio:.2f}** | "
              f"{median(t, 'p50'):.1f} ms | {median(t, 'p99'):.1f} ms | {median(r, 'p50'):.1f} ms | {median(r, 'p99'):.1f} ms | "
              f"{statements[name]:g}, {raw_statements[name]} | "
              f"{median(t, 'server_cpu_ms'):.3f}, {median(t, 'db_cpu_ms'):.3f}; {median(r, 'db_cpu_ms'):.3f} |"
              + (f" ({bad} non-2xx)" if bad else ""))
    print(f"\nPeak RSS of taskql: {peak_rss:.1f} MiB.")
    if "p99_ms" in constant:
        print(f"Q1 at a constant {constant['rate']} req/s for {constant['seconds']} s: "
              f"p50 {constant['p50_ms']:.2f} ms, p99 {constant['p99_ms']:.2f} ms, {constant['errors']} errors.")
    else:
        print(f"constant-rate run failed: {constant}")
    with open(os.path.join(ROOT, "target", "bench-results.json"), "w") as f:
        json.dump({"results": summary, "statements": statements, "peak_rss_mib": peak_rss,
                   "constant_rate": constant}, f, indent=1)
    if args.writes:
        database_writes(args)


def database_writes(args):
    """The database's own insert rate, plain against with the change feed, by concurrency."""
    workdir = tempfile.mkdtemp(prefix="taskql-bench-writes-")
    levels = [1, 2, 4, 8, 16, 32, 64]
    runs = {(kind, c): [] for kind in ("plain", "feed") for c in levels}
    for rep in range(args.reps):
        for clients in levels:
            for kind, sql in (("plain", PLAIN_INSERT), ("feed", FEED_INSERT)):
                log(f"writes rep {rep + 1}/{args.reps}: {kind} insert, {clients} clients")
                runs[(kind, clients)].append(
                    run_pgbench(f"W-{kind}", workdir, args.seconds, clients, sql=sql)["rps"])
    print(f"\nThe database alone: inserts/s by pgbench -M prepared, {args.reps} interleaved repetitions of "
          f"{args.seconds} s, medians\n")
    print("| clients | plain insert /s | with the change feed /s | feed ÷ plain |")
    print("|---|---|---|---|")
    for clients in levels:
        plain = statistics.median(runs[("plain", clients)])
        feed = statistics.median(runs[("feed", clients)])
        print(f"| {clients} | {plain:,.0f} | {feed:,.0f} | **{feed / plain:.2f}** |")


if __name__ == "__main__":
    main()
