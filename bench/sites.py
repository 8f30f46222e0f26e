#!/usr/bin/env python3
"""Provider scale, measured from outside (bench/sites.sh runs this; see bench/README.md).

For each size N, a generated file of N sites (two host names, one origin, one rule each):
  - startup: from exec to the first proxied answer;
  - resident memory idle, and after one request to each of 1,000 sites; CPU while idle;
  - time per API change, p50 and p99 over COUNT changes of each kind (create, update, delete,
    suspend, state, purge), each timed from the request's first byte to the answer's last;
  - a suspension's time to be in force at the edge: from sending the suspension until the
    edge answers the site's host with 403 (polled without pause);
  - routing cost: wrk for ROUTE_SECS on cached 1 KiB answers, eight connections each on its
    own site spread through the table, in CPU microseconds per request; beside the same load
    on a file of 10 sites;
and beside it nginx with the same sites as server blocks: startup, resident memory, and the
time `nginx -s reload` takes to apply one change (nginx has no other way to change a site).

Usage: sites.py PALISADE_BIN WORK_DIR ORIGIN_PORT PORT ADMIN_PORT NGINX_PORT SIZES COUNT
                ROUTE_SECS
"""

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time

PALISADE, WORK, ORIGIN, PORT, ADMIN, NGINX_PORT = sys.argv[1:7]
SIZES = [int(n) for n in sys.argv[7].split()]
COUNT = int(sys.argv[8])
ROUTE_SECS = int(sys.argv[9])
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOUCHED = 1000  # sites that get one request for the "after traffic" memory figure
ROUTE_CONNS = 8  # wrk's connections (and threads) in the routing run, each on its own site
IDLE_SECS = 5  # how long the idle edge's CPU is watched


def log(message):
    print(f"[sites {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_tree_kib(pid):
    """Resident memory of pid and its children (nginx's workers)."""
    total = rss_kib(pid)
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    return total + sum(rss_tree_kib(int(c)) for c in children)


def get(port, host, path="/1k", timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def site_toml(i, port):
    return (
        f'[[site]]\nname = "s{i}"\nhosts = ["s{i}.example", "www.s{i}.example"]\n'
        f'origins = ["http://127.0.0.1:{port}"]\n'
        f'[[site.rule]]\nid = "no-admin"\n'
        f"expr = 'http.request.uri.path starts_with \"/wp-admin\"'\naction = \"block\"\n"
    )


def write_palisade_config(n):
    path = os.path.join(WORK, f"palisade-{n}.toml")
    data = os.path.join(WORK, f"data-{n}")
    subprocess.run(["rm", "-rf", data], check=True)
    with open(path, "w") as out:
        out.write(
            f'[server]\nlisten = ["127.0.0.1:{PORT}"]\nadmin = "127.0.0.1:{ADMIN}"\n'
            f'data_dir = "{data}"\naccess_log = "off"\nworkers = 1\n'
        )
        for i in range(n):
            out.write(site_toml(i, ORIGIN))
    return path


def write_nginx_config(n):
    root = os.path.join(WORK, f"nginx-{n}")
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    path = os.path.join(root, "nginx.conf")
    with open(path, "w") as out:
        out.write(
            "worker_processes 1;\nerror_log logs/error.log;\npid logs/nginx.pid;\n"
            "events { worker_connections 1024; }\nhttp {\n  access_log off;\n"
            "  server_names_hash_max_size 1048576;\n  server_names_hash_bucket_size 128;\n"
            f"  upstream origin {{ server 127.0.0.1:{ORIGIN}; keepalive 16; }}\n"
            # A name no site claims is refused, as Palisade does (421), rather than served by
            # the first site: the reload's timing waits for the new name to answer 200.
            f"  server {{ listen 127.0.0.1:{NGINX_PORT} default_server; return 421; }}\n"
        )
        for i in range(n):
            out.write(
                f"  server {{ listen 127.0.0.1:{NGINX_PORT}; "
                f"server_name s{i}.example www.s{i}.example; "
                "location /wp-admin { return 403; } "
                "location / { proxy_pass http://origin; proxy_http_version 1.1; "
                'proxy_set_header Connection ""; } }\n'
            )
        out.write("}\n")
    return root, path


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def route_cost(pid, hosts):
    """wrk on cached /1k answers, one connection per thread, each thread's connection on its
    own host of `hosts` (a connection stays with the site it began with: the edge confines
    it): (requests/s, CPU us per request)."""
    script = os.path.join(WORK, "hosts.lua")
    with open(script, "w") as lua:
        lua.write("local hosts = {" + ",".join(f'"{h}"' for h in hosts) + "}\n")
        lua.write("local made = 0\nsetup = function(thread)\n  made = made + 1\n"
                  '  thread:set("host", hosts[(made - 1) % #hosts + 1])\nend\n'
                  'request = function()\n  return wrk.format("GET", "/1k", {Host = host})\nend\n')
    for host in hosts:  # every answer cached before the clock starts
        get(PORT, host)
        get(PORT, host)
    before = cpu_ticks(pid)
    run = subprocess.run(["wrk", f"-t{len(hosts)}", f"-c{len(hosts)}", f"-d{ROUTE_SECS}s", "-s", script,
                          f"http://127.0.0.1:{PORT}/"], capture_output=True, text=True,
                         timeout=ROUTE_SECS + 60)
    ticks = cpu_ticks(pid) - before
    requests = 0
    for line in run.stdout.splitlines():
        if "requests in" in line:
            requests = int(line.split()[0])
        if "Non-2xx" in line:
            sys.exit(f"routing run: {line.strip()}")
    if requests == 0:
        sys.exit(f"wrk measured nothing: {run.stdout} {run.stderr}")
    return requests / ROUTE_SECS, ticks * 1e6 / CLK_TCK / requests


class Api:
    def __init__(self, token):
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", int(ADMIN), timeout=60)

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        start = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        text = response.read()
        elapsed = time.perf_counter() - start
        if response.status >= 300:
            sys.exit(f"{method} {path}: {response.status} {text[:300]!r}")
        return elapsed


def start_serving(command, port, out, what):
    """Starts `command` and waits until it answers s0.example on `port`: (process, seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=out, stderr=out)
    deadline = start + 600
    while get(port, "s0.example", timeout=2) != 200:
        if proc.poll() is not None or time.perf_counter() > deadline:
            proc.kill()
            sys.exit(f"{what} did not start")
        time.sleep(0.02)
    return proc, time.perf_counter() - start


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def percentiles(times):
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def measure_palisade(n):
    config = write_palisade_config(n)
    out = open(os.path.join(WORK, f"palisade-{n}.out"), "w")
    proc, startup = start_serving([PALISADE, "serve", "--config", config], PORT, out,
                                  f"palisade with {n} sites (see {out.name})")
    try:
        time.sleep(1)
        idle = rss_kib(proc.pid)
        # What the edge spends doing nothing: its own passes over the sites.
        before = cpu_ticks(proc.pid)
        time.sleep(IDLE_SECS)
        idle_cpu = (cpu_ticks(proc.pid) - before) * 100 / CLK_TCK / IDLE_SECS
        step = max(1, n // TOUCHED)
        for i in range(0, min(n, TOUCHED * step), step):
            if get(PORT, f"s{i}.example") != 200:
                sys.exit(f"s{i}.example did not answer 200")
        touched = rss_kib(proc.pid)
        # Eight connections on eight sites spread through the table.
        spread = [f"s{i}.example" for i in range(0, n, max(1, n // ROUTE_CONNS))][:ROUTE_CONNS]
        routing = route_cost(proc.pid, spread)
        out.flush()
        token = None
        with open(out.name) as printed:
            for line in printed:
                if line.startswith("admin token (shown once"):
                    token = line.rsplit(" ", 1)[-1].strip()
        if not token:
            sys.exit("no admin token printed")
        api = Api(token)
        times = {kind: [] for kind in ["create", "update", "delete", "suspend", "state", "purge"]}
        in_force = []
        origin = f"http://127.0.0.1:{ORIGIN}"
        for k in range(COUNT):
            name = f"bench{k}"
            document = {"name": name, "hosts": [f"{name}.example", f"www.{name}.example"],
                        "origins": [origin],
                        "rule": [{"id": "no-admin", "action": "block",
                                  "expr": 'http.request.uri.path starts_with "/wp-admin"'}]}
            times["create"].append(api.call("POST", "/api/sites", document))
            document["hosts"].append(f"api.{name}.example")
            times["update"].append(api.call("PUT", f"/api/sites/{name}", document))
            times["purge"].append(api.call("POST", f"/api/sites/{name}/purge", {"everything": True}))
            target = f"s{(k * 7919) % n}"
            sent = time.perf_counter()
            times["suspend"].append(api.call("POST", f"/api/sites/{target}/suspend",
                                             {"reason": "bench"}))
            while get(PORT, f"{target}.example") != 403:
                if time.perf_counter() - sent > 10:
                    sys.exit(f"{target} still served 10 s after its suspension")
            in_force.append(time.perf_counter() - sent)
            api.call("POST", f"/api/sites/{target}/reinstate")
            times["state"].append(api.call("PUT", f"/api/sites/{target}/state",
                                           {"state": "under_attack", "reason": "bench"}))
            api.call("PUT", f"/api/sites/{target}/state", {"state": "active", "reason": "bench"})
            times["delete"].append(api.call("DELETE", f"/api/sites/{name}"))
        return {"startup": startup, "idle": idle, "touched": touched, "times": times,
                "in_force": in_force, "routing": routing, "idle_cpu": idle_cpu}
    finally:
        stop(proc)


def measure_nginx(n):
    root, config = write_nginx_config(n)
    proc, startup = start_serving(["nginx", "-p", root, "-c", config, "-g", "daemon off;"],
                                  NGINX_PORT, subprocess.DEVNULL,
                                  f"nginx with {n} sites (see {root}/logs/error.log)")
    try:
        time.sleep(1)
        idle = rss_tree_kib(proc.pid)
        # One change: a site's server block gains a name; nginx applies it by a reload, timed
        # until the new name answers.
        with open(config) as text:
            lines = text.read().replace("server_name s1.example ",
                                        "server_name s1.example moved.example ", 1)
        with open(config, "w") as text:
            text.write(lines)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGHUP)
        while get(NGINX_PORT, "moved.example", timeout=2) != 200 or \
                get(NGINX_PORT, "moved.example", timeout=2) != 200:
            if time.perf_counter() - sent > 120:
                sys.exit("nginx did not apply the reload within 120 s")
        reload = time.perf_counter() - sent
        return {"startup": startup, "idle": idle, "reload": reload}
    finally:
        stop(proc)


def main():
    rows = []
    # 10 sites first: the baseline every figure is compared with.
    for n in [10] + [n for n in SIZES if n != 10]:
        log(f"palisade, {n} sites")
        pal = measure_palisade(n)
        log(f"nginx, {n} sites")
        ngx = measure_nginx(n)
        rows.append((n, pal, ngx))
    print()
    print(f"{'sites':>7} {'server':<9} {'startup s':>9} {'RSS idle MiB':>12} "
          f"{'KiB/site':>8} {'RSS +1k MiB':>11} {'idle CPU %':>10}")
    for n, pal, ngx in rows:
        print(f"{n:>7} {'palisade':<9} {pal['startup']:>9.2f} {pal['idle'] / 1024:>12.0f} "
              f"{pal['idle'] / n:>8.1f} {pal['touched'] / 1024:>11.0f} {pal['idle_cpu']:>10.1f}")
        print(f"{n:>7} {'nginx':<9} {ngx['startup']:>9.2f} {ngx['idle'] / 1024:>12.0f} "
              f"{ngx['idle'] / n:>8.1f} {'-':>11} {'-':>10}")
    print()
    print(f"one change through the API, ms (p50 / p99 over {COUNT} of each); nginx: one "
          "change by reload, until the new name answers")
    kinds = ["create", "update", "delete", "suspend", "state", "purge"]
    print(f"{'sites':>7} " + " ".join(f"{k:>15}" for k in kinds) + f" {'in force':>15}"
          + f" {'nginx reload':>13}")
    for n, pal, ngx in rows:
        cells = []
        for kind in kinds:
            p50, p99 = percentiles(pal["times"][kind])
            cells.append(f"{p50:>7.1f}/{p99:<7.1f}")
        p50, p99 = percentiles(pal["in_force"])
        cells.append(f"{p50:>7.1f}/{p99:<7.1f}")
        print(f"{n:>7} " + " ".join(cells) + f" {ngx['reload'] * 1000:>13.0f}")
    print()
    print(f"routing: wrk {ROUTE_SECS} s, {ROUTE_CONNS} connections each on its own site spread "
          "through the table, cached 1 KiB answers")
    print(f"{'sites':>7} {'req/s':>9} {'CPU us/req':>10}")
    for n, pal, _ in rows:
        print(f"{n:>7} {pal['routing'][0]:>9.0f} {pal['routing'][1]:>10.1f}")


main()
