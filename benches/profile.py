#!/usr/bin/env python3
"""Where taskql's own CPU goes under a workload (Q1 by default), grouped as the README's
Performance section reports it: kernel, allocator, HTTP, sqlx, tokio and futures, GraphQL
execution, async-graphql's validation, parsing, taskql's own checks, JSON, the rest.

    python3 benches/profile.py --binary target/release/taskql [--workload Q1] [--seconds 10]
        [--trusted]

Uses the benchmark's database and requests (benches/bench.py seeds it when missing), drives
the server with wrk at 32 connections, and samples it with `perf record -e cpu-clock -g`
(hardware counters are not available on every machine). Needs perf (Debian: linux-perf).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

# First match wins: a symbol is put in the group of the first pattern it matches, else of
# the shared object it lives in.
GROUPS = [
    ("kernel", lambda dso, sym: dso.startswith("[kernel") or sym.startswith("entry_SYSCALL")),
    ("allocator", lambda dso, sym: re.search(r"mi_|mimalloc|malloc|free|realloc|alloc::alloc|__rust_(alloc|dealloc|realloc)", sym)),
    ("validation", lambda dso, sym: re.search(r"async_graphql::validation", sym)),
    ("parsing", lambda dso, sym: re.search(r"async_graphql_parser|pest", sym)),
    ("taskql's own checks", lambda dso, sym: re.search(r"taskql::graphql::pipeline::(plan|cost|validate|document|nesting|nulls|trusted)", sym)),
    ("JSON", lambda dso, sym: re.search(r"serde_json|serde::", sym)),
    ("logs, traces and metrics", lambda dso, sym: re.search(r"tracing|prometheus|taskql::metrics|taskql::telemetry", sym)),
    ("crypto (TLS to PostgreSQL, tokens, cursors)", lambda dso, sym: re.search(r"aws_lc|ring::|hmac|sha2|jsonwebtoken", sym)),
    ("GraphQL execution", lambda dso, sym: re.search(r"async_graphql|taskql::graphql", sym)),
    ("sqlx", lambda dso, sym: re.search(r"sqlx", sym)),
    ("HTTP", lambda dso, sym: re.search(r"hyper|axum|tower|http::|h2::", sym)),
    ("tokio and futures", lambda dso, sym: re.search(r"tokio|futures|mio::", sym)),
    ("libc (memory copies)", lambda dso, sym: dso.startswith("libc")),
]


def group(dso, sym):
    for name, matches in GROUPS:
        if matches(dso, sym):
            return name
    return "rest"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--workload", default="Q1")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--trusted", action="store_true")
    parser.add_argument("--from", dest="data", help="report an earlier run's perf.data instead")
    args = parser.parse_args()
    if args.data:
        print_groups(args.workload, report_of(args.data), args.trusted)
        return
    bench.TRUSTED = args.trusted

    bench.seed(args.binary)
    bench.psql("vacuum analyze")
    workdir = tempfile.mkdtemp(prefix="taskql-profile-")
    server, url = bench.start_server(args.binary, workdir)
    try:
        tokens = [bench.token(f"u{i}") for i in range(1, bench.USERS + 1)]
        warm = bench.wrk_script(workdir, "warm", [(t, bench.body(bench.Q1)) for t in tokens], sequential=True)
        bench.run_wrk(warm, url, 8, 32)
        lines = bench.requests_for(args.workload, url, tokens)
        script = bench.wrk_script(workdir, args.workload, lines)
        data = os.path.join(workdir, "perf.data")
        load = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{args.seconds + 2}s", "-s", script, url],
                                stdout=subprocess.DEVNULL)
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", data, "-p", str(server.pid),
                        "--", "sleep", str(args.seconds)], check=True, stderr=subprocess.DEVNULL)
        load.wait()
        report = report_of(data)
        print(f"perf data: {data}")
    finally:
        server.terminate()
        server.wait()
    print_groups(args.workload, report, args.trusted)


def report_of(data):
    return subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                           "--sort", "dso,sym", "--percent-limit", "0"],
                          capture_output=True, text=True, check=True).stdout


def print_groups(workload, report, trusted):
    totals = {}
    row = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$")
    for line in report.splitlines():
        found = row.match(line)
        if found:
            share, dso, sym = float(found.group(1)), found.group(2), found.group(3).strip()
            name = group(dso, sym)
            totals[name] = totals.get(name, 0.0) + share
    print(f"{workload}{' (trusted)' if trusted else ''}: taskql's CPU by group, % of samples")
    for name, share in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {name:26} {share:5.1f}%")


if __name__ == "__main__":
    main()
