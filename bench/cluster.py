#!/usr/bin/env python3
"""A cluster, measured from outside (bench/cluster.sh runs this; see bench/README.md).

One control node and three edge nodes over a local redis-server, all the release binary:
  - config change propagation: COUNT site creations through the API, each timed from the
    API's answer until all three edges serve the new host (polled without pause): p50, p99, max;
  - purge propagation: COUNT purges of a cached URL, each timed from the API's answer until
    every edge answers it from the origin again (its Cache-Status no longer a hit);
  - `?wait=applied`: COUNT state switches, each timed from the request to the answer, which
    comes once every edge runs it;
  - the request path's cost in cluster mode: wrk for COST_SECS on a cached 1 KiB answer at an
    edge node, beside the same load on the same binary alone (no [cluster]), in CPU
    microseconds per request (the node's process, from /proc);
  - what a `scope = "cluster"` rate limit costs on that path: the same load on two more sites of
    the same edge node, each with a limit every request counts against (and none reaches), one
    `scope = "edge"`, one `scope = "cluster"`.

Usage: cluster.py PALISADE_BIN WORK_DIR ORIGIN_PORT COUNT COST_SECS
"""

import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time

PALISADE, WORK, ORIGIN, COUNT, COST_SECS = sys.argv[1:6]
COUNT, COST_SECS = int(COUNT), int(COST_SECS)
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKEN = "pal_bench_cluster_token_0123456789abcdef"
EDGES = 3
COST_CONNS = 8
GOAL_P50_MS, GOAL_MAX_MS = 150, 1000


def log(message):
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


TAKEN = set()


def free_port():
    """A free port below the ephemeral range (an outgoing connection cannot take it meanwhile)."""
    while True:
        port = random.randint(20000, 32000)
        if port in TAKEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        TAKEN.add(port)
        return port


def request(port, host, path="/1k", timeout=10):
    """(status, Cache-Status) or (None, None) when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("cache-status") or ""
    except OSError:
        return None, None
    finally:
        conn.close()


class Api:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        text = response.read()
        if response.status >= 300:
            sys.exit(f"{method} {path}: {response.status} {text[:300]!r}")
        return json.loads(text or b"null")


def start(name, config, env=None):
    out = open(os.path.join(WORK, f"{name}.out"), "w")
    proc = subprocess.Popen([PALISADE, "serve", "--config", config], stdout=out, stderr=out,
                            env=env)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_serving(port, host, within=60):
    deadline = time.time() + within
    while request(port, host, timeout=2)[0] != 200:
        if time.time() > deadline:
            sys.exit(f"nothing serves {host} on {port}")
        time.sleep(0.02)


def percentiles(times):
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def until_all(ports, test):
    """Seconds until test(port) holds for every port, each polled without pause."""
    start = time.perf_counter()
    pending = list(ports)
    while pending:
        pending = [p for p in pending if not test(p)]
        if time.perf_counter() - start > 30:
            sys.exit("an edge did not follow within 30 s")
    return time.perf_counter() - start


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cost(pid, port, host="blog.example"):
    """wrk on a cached /1k of host: (requests/s, CPU us per request of pid)."""
    for _ in range(2):
        request(port, host)
    before = cpu_ticks(pid)
    run = subprocess.run(["wrk", f"-t{COST_CONNS}", f"-c{COST_CONNS}", f"-d{COST_SECS}s",
                          "-H", f"Host: {host}", f"http://127.0.0.1:{port}/1k"],
                         capture_output=True, text=True, timeout=COST_SECS + 60)
    ticks = cpu_ticks(pid) - before
    requests = 0
    for line in run.stdout.splitlines():
        if "requests in" in line:
            requests = int(line.split()[0])
        if "Non-2xx" in line:
            sys.exit(f"cost run: {line.strip()}")
    if requests == 0:
        sys.exit(f"wrk measured nothing: {run.stdout} {run.stderr}")
    return requests / COST_SECS, ticks * 1e6 / CLK_TCK / requests


def main():
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [redis]
    try:
        secret = os.path.join(WORK, "cluster.key")
        subprocess.run([PALISADE, "cluster", "init", secret], check=True,
                       stdout=subprocess.DEVNULL)
        cluster = (f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}/0"\n'
                   f'secret_file = "{secret}"\n')
        site = (f'[[site]]\nname = "blog"\nhosts = ["blog.example"]\n'
                f'origins = ["http://127.0.0.1:{ORIGIN}"]\n')
        # Two more sites, each with a rate limit every request counts against (and none
        # reaches): one counted per edge, one across the cluster, for what sharing costs.
        limited = "".join(
            f'[[site]]\nname = "limited-{scope}"\nhosts = ["limited-{scope}.example"]\n'
            f'origins = ["http://127.0.0.1:{ORIGIN}"]\n'
            f'[[site.rate_limit]]\nid = "all"\nrequests = 4000000000\nperiod = "1m"\n'
            f'scope = "{scope}"\n'
            for scope in ("edge", "cluster"))
        nodes = []  # (name, port, admin)
        for name in ["control-1"] + [f"edge-{i}" for i in range(1, EDGES + 1)]:
            port, admin = free_port(), free_port()
            role = "control" if name == "control-1" else "edge"
            config = os.path.join(WORK, f"{name}.toml")
            with open(config, "w") as out:
                out.write(f'[server]\nlisten = ["127.0.0.1:{port}"]\nadmin = "127.0.0.1:{admin}"\n'
                          f'data_dir = "{WORK}/{name}-data"\n\n'
                          f'{cluster}node = "{name}"\nrole = "{role}"\n\n')
                if role == "control":
                    out.write(site + limited)
            env = dict(os.environ, PALISADE_BOOTSTRAP_TOKEN=TOKEN)
            procs.append(start(name, config, env))
            nodes.append((name, port, admin))
            if role == "control":
                wait_serving(port, "blog.example")
        edges = [port for _, port, _ in nodes[1:]]
        for port in edges:
            wait_serving(port, "blog.example")
        api = Api(nodes[0][2])
        log(f"control node and {EDGES} edges up; {COUNT} changes of each kind")

        created = []
        for i in range(COUNT):
            name = f"s{i}"
            api.call("POST", "/api/sites", {"name": name, "hosts": [f"{name}.example"],
                                            "origins": [f"http://127.0.0.1:{ORIGIN}"]})
            created.append(until_all(edges, lambda p, h=f"{name}.example":
                                     request(p, h)[0] == 200))

        purged = []
        for _ in range(COUNT):
            for port in edges:  # cached at every edge
                request(port, "blog.example")
                if "hit" not in request(port, "blog.example")[1]:
                    sys.exit("/1k is not cached at an edge")
            api.call("POST", "/api/sites/blog/purge", {"url": "http://blog.example/1k"})
            purged.append(until_all(edges, lambda p: "hit" not in request(p, "blog.example")[1]))

        waited = []
        for i in range(COUNT):
            state = "paused" if i % 2 == 0 else "active"
            start_time = time.perf_counter()
            answer = api.call("PUT", "/api/sites/s0/state?wait=applied", {"state": state})
            waited.append(time.perf_counter() - start_time)
            if answer.get("edges_applied") != EDGES:
                sys.exit(f"wait=applied answered {answer}")

        edge_pid = procs[2].pid
        edge_cost = cost(edge_pid, edges[0])
        limit_costs = [cost(edge_pid, edges[0], f"limited-{scope}.example")
                       for scope in ("edge", "cluster")]
        # The same binary alone: the edge's own configuration without [cluster], the site in it.
        alone_port, alone_admin = free_port(), free_port()
        alone_config = os.path.join(WORK, "alone.toml")
        with open(alone_config, "w") as out:
            out.write(f'[server]\nlisten = ["127.0.0.1:{alone_port}"]\n'
                      f'admin = "127.0.0.1:{alone_admin}"\ndata_dir = "{WORK}/alone-data"\n\n'
                      + site)
        alone = start("alone", alone_config, dict(os.environ, PALISADE_BOOTSTRAP_TOKEN=TOKEN))
        procs.append(alone)
        wait_serving(alone_port, "blog.example")
        alone_cost = cost(alone.pid, alone_port)
    finally:
        for proc in reversed(procs):
            stop(proc)

    print(f"propagation to {EDGES} edges, {COUNT} changes of each kind (ms: p50 / p99 / max)")
    print(f"{'change':<34} {'p50':>8} {'p99':>8} {'max':>8}   goal")
    for what, times in [("site created -> served by all", created),
                        ("purge -> no edge serves it", purged),
                        ("state switch, ?wait=applied", waited)]:
        p50, p99, top = percentiles(times)
        print(f"{what:<34} {p50:>8.1f} {p99:>8.1f} {top:>8.1f}   "
              f"p50 < {GOAL_P50_MS}, max < {GOAL_MAX_MS}")
    print()
    print(f"request path: wrk {COST_SECS} s, {COST_CONNS} connections, cached 1 KiB answers, "
          "access log on (to a file)")
    print(f"{'node':<28} {'req/s':>9} {'CPU us/req':>11}")
    print(f"{'Palisade alone':<28} {alone_cost[0]:>9.0f} {alone_cost[1]:>11.1f}")
    print(f"{'Palisade edge of a cluster':<28} {edge_cost[0]:>9.0f} {edge_cost[1]:>11.1f}")
    print(f"cluster mode costs {100 * (edge_cost[1] / alone_cost[1] - 1):+.1f}% CPU per request "
          "(goal: under 2%)")
    print()
    print("a rate limit every request counts against, on the same edge node")
    print(f"{'limit':<28} {'req/s':>9} {'CPU us/req':>11}")
    for scope, (rate, us) in zip(("edge", "cluster"), limit_costs):
        print(f"{'scope = ' + chr(34) + scope + chr(34):<28} {rate:>9.0f} {us:>11.1f}")
    print(f"scope = \"cluster\" costs {100 * (limit_costs[1][1] / limit_costs[0][1] - 1):+.1f}% "
          "CPU per request over scope = \"edge\"")


main()
