#!/usr/bin/env python3
"""Side-by-side benchmark: lbhost vs nginx vs HAProxy (python3 stdlib only).

Started by bench/run.sh, which installs the tools, builds lbhost and the strategies, raises
`ulimit -n` and owns the temp dir (BENCH_TMP) and the EXIT trap. Run `bench/run.sh --help`.

Setup (the same for every LB): the LB alone on one core (`--lb-core`, default 0) with one worker;
wrk, the backend nginx (one worker, N listen ports, `return 200 "ok"`) and this script on another
core (`--load-core`, default 1). Everything on 127.0.0.1, ports picked from a free range below the
ephemeral range, every process started into the temp dir with its own config and stopped at the end.
"""

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import instructions

CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
NOISE_LIMIT = 0.10  # fraction of one core used by other processes during a run
# A run is SLOW when a fixed piece of work timed on the LB's core just before and just after it
# took this much longer than the fastest such timing of the session: the machine itself was
# slower then (a busy host, a lower clock), which neither other processes nor steal in
# /proc/stat show. Seen here: the same LB at 18 and at 33 µs/request in consecutive runs.
SLOW_LIMIT = 1.15
PROBE_DATA = bytes(16 << 20)
LB_NAMES = ("lbhost", "lbhost-native", "nginx", "haproxy")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc helpers


def proc_cpu_ticks(pid):
    """utime+stime of a process (all its threads), in clock ticks; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def child_pids(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        if int(data[data.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def system_busy_ticks():
    """(busy, softirq) over all CPUs from /proc/stat; busy = user+nice+system+steal.

    irq/softirq are left out of `busy`: with IRQ time accounting the loopback traffic of the
    benchmark itself lands there and is not charged to any process."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    v = [int(x) for x in parts[1:]]
    user, nice, system, _idle, _iowait, _irq, softirq, steal = v[:8]
    return user + nice + system + steal, softirq


def pinned(core, argv):
    """`argv` run on CPU `core` (taskset), or unpinned when `core` is None (--shared)."""
    return argv if core is None else ["taskset", "-c", str(core)] + argv


def core_busy_ticks(cores):
    """Busy ticks (everything but idle and iowait) of the given CPUs, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) ", line)
            if m and int(m.group(1)) in cores:
                v = [int(x) for x in line.split()[1:]]
                out[int(m.group(1))] = sum(v[:8]) - v[3] - v[4]
    return out


def loadavg1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Ports:
    """Hands out free loopback ports from a range below the ephemeral one."""

    def __init__(self, start):
        self.next = start
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            self.eph_lo, self.eph_hi = (int(x) for x in f.read().split())

    def take(self, n=1):
        out = []
        while len(out) < n:
            p = self.next
            self.next += 1
            if self.eph_lo <= p <= self.eph_hi:
                self.next = self.eph_hi + 1
                continue
            if p > 65535:
                raise SystemExit("bench: ran out of free ports")
            if port_free(p):
                out.append(p)
        return out


def client_tls_context():
    """The harness's own TLS client (readiness checks, idle connections): the bench's
    self-signed certificate is not verified."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_http_ok(port, path="/", timeout=15.0, expect=b"ok", proc=None, tls=False):
    deadline = time.monotonic() + timeout
    last = None
    scheme = "https" if tls else "http"
    ctx = client_tls_context() if tls else None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}{path}", timeout=2,
                                        context=ctx) as r:
                body = r.read()
                if r.status == 200 and (expect is None or body.strip() == expect):
                    return
                last = f"status {r.status} body {body[:60]!r}"
        except Exception as e:  # noqa: BLE001 - anything means "not ready yet"
            last = repr(e)
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} not ready after {timeout}s: {last}")


# ---------------------------------------------------------------------------------------------
# processes


class Session:
    """Owns the temp dir and every process started; records process groups for run.sh's trap."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tmp, 0o755)  # nginx workers run as nobody
        self.procs = []

    def spawn(self, name, argv, core, env=None):
        logf = open(self.tmp / f"{name}.log", "ab")
        p = subprocess.Popen(
            pinned(core, argv),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            cwd=self.tmp, env=env, start_new_session=True)
        logf.close()
        self.procs.append(p)
        self._write_pgids()
        return p

    def _write_pgids(self):
        # run.sh's EXIT trap kills these groups if this script dies without stopping them
        (self.tmp / "pgids").write_text("".join(f"{p.pid}\n" for p in self.procs))

    def stop(self, p, sig=signal.SIGTERM, grace=5.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of the group (nginx workers, a hung LB)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(timeout=5)
        if p in self.procs:
            self.procs.remove(p)
            self._write_pgids()

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, grace=2.0)


class Backends:
    """One nginx, one worker, `return 200 "ok"` on N ports, stub_status on its own port."""

    def __init__(self, session, ports, core, count, name="backends"):
        self.session = session
        self.ports = ports.take(count)
        self.status_port = ports.take(1)[0]
        d = session.tmp / name
        d.mkdir(exist_ok=True)
        listens = "\n".join(f"    listen 127.0.0.1:{p} backlog=4096;" for p in self.ports)
        conf = f"""
worker_processes 1;
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  default_type text/plain;
  server {{
{listens}
    location / {{ return 200 "ok"; }}
  }}
  server {{
    listen 127.0.0.1:{self.status_port};
    location / {{ stub_status; }}
  }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        self.proc = session.spawn(name, ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"),
                                         "-e", str(d / "error.log"), "-g", "daemon off;"], core)
        for p in (self.ports[0], self.ports[-1]):
            wait_http_ok(p, proc=self.proc)
        wait_http_ok(self.status_port, expect=None, proc=self.proc)
        self.pids = [self.proc.pid] + child_pids(self.proc.pid)

    def accepts(self):
        """nginx's accepted-connections counter (includes the connection that reads it)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/", timeout=5) as r:
            text = r.read().decode()
        # Active connections: N \n server accepts handled requests \n A H R \n ...
        return int(text.splitlines()[2].split()[0])

    def cpu(self):
        return sum(proc_cpu_ticks(p) or 0 for p in self.pids)

    def stop(self):
        self.session.stop(self.proc)


class LB:
    """A load balancer under test: started fresh for every run, stopped after it."""

    name = "?"
    # --forwarded: the peers add the forwarding headers lbhost adds by default and keep the
    # client's Host, so that every LB sends the backends the same request.
    forwarded = False

    def __init__(self, session, port, admin_port, backends, conns, core, idle_timeout=None):
        self.session, self.port, self.admin_port = session, port, admin_port
        self.backends, self.conns, self.core = backends, conns, core
        self.idle_timeout = idle_timeout
        self.dir = session.tmp / self.name
        self.dir.mkdir(exist_ok=True)
        self.proc = None
        self.pids = []

    def start(self):
        self.proc = self.session.spawn(self.name, self.argv(), self.core, env=self.env())
        wait_http_ok(self.port, proc=self.proc, tls=self.session.tls is not None)
        time.sleep(0.2)  # let nginx fork its worker
        self.pids = [self.proc.pid] + child_pids(self.proc.pid)

    def env(self):
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu(self):
        return sum(proc_cpu_ticks(p) or 0 for p in self.pids)

    def rss(self):
        return sum(proc_rss_kib(p) for p in self.pids)

    def stop(self):
        if self.proc is not None:
            self.session.stop(self.proc)

    def parked_connections(self):
        """Idle client connections the LB holds parked, if it reports them (lbhost only)."""
        return None

    def log_tail(self):
        p = self.session.tmp / f"{self.name}.log"
        return p.read_text(errors="replace") if p.exists() else ""


class LbHost(LB):
    name = "lbhost"

    def parked_connections(self):
        """`lbhost_client_connections{state="parked"}` from the admin listener."""
        try:
            url = f"http://127.0.0.1:{self.admin_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        m = re.search(r'^lbhost_client_connections\{state="parked"\} (\d+)', text, re.M)
        return int(m.group(1)) if m else None

    def argv(self):
        cfg = {
            "listen": f"127.0.0.1:{self.port}",
            "admin": f"127.0.0.1:{self.admin_port}",
            "strategy": str(self.strategy()),
            "strategy_config": self.strategy_config(),
            "backends": [{"url": f"http://127.0.0.1:{p}"} for p in self.backends.ports],
            "shutdown_timeout": "1s",
            "access_log": False,
        }
        if self.idle_timeout:
            cfg["timeouts"] = {"header_read": self.idle_timeout}
        if self.session.tls:
            # The measured port is the TLS listener; the plain one lbhost always has moves aside.
            (plain,) = self.session.ports.take(1)
            cfg["listen"] = f"127.0.0.1:{plain}"
            cfg["tls"] = {"listen": f"127.0.0.1:{self.port}",
                          "certificates": [{"cert": str(self.session.tls["cert"]),
                                            "key": str(self.session.tls["key"])}]}
        path = self.dir / "lbhost.json"
        path.write_text(json.dumps(cfg, indent=1))
        # --shared: `workers` unset, one per core, as most users run it
        workers = [] if self.session.shared else ["--workers", "1"]
        return [str(self.session.lbhost), "--config", str(path)] + workers

    def strategy(self):
        return self.session.strategy

    def strategy_config(self):
        return self.session.strategy_config

    def env(self):
        e = dict(os.environ)
        e["RUST_LOG"] = "warn"
        return e


class LbHostNative(LbHost):
    """lbhost with the strategy call skipped (the host's round-robin): the baseline that shows
    what the wasm strategy costs per request."""
    name = "lbhost-native"

    def env(self):
        e = super().env()
        e["LBHOST_BENCH_NATIVE_SELECTOR"] = "1"
        return e


class LbHostFloor(LbHost):
    """lbhost with bench/call_floor.wasm, the cheapest strategy the contract allows (round-robin
    on the raw WIT bindings, no SDK): against lbhost-native it prices the guest call itself."""
    name = "lbhost-floor"

    def strategy(self):
        return self.session.floor_strategy

    def strategy_config(self):
        return {}


class LbHostRoutes(LbHost):
    """lbhost with named pools and 10 routes (hosts, a wildcard, path prefixes) in front of the
    same backends, the request matching the last route: against lbhost (one pool, one
    catch-all route) it prices routing."""
    name = "lbhost-routes"

    def argv(self):
        argv = super().argv()
        path = self.dir / "lbhost.json"
        cfg = json.loads(path.read_text())
        backends = cfg.pop("backends")
        cfg["pools"] = {name: {"backends": backends} for name in ("api", "web", "static", "main")}
        cfg["routes"] = [
            {"match": {"host": "api.example.com"}, "pool": "api"},
            {"match": {"host": "api.example.org"}, "pool": "api"},
            {"match": {"host": "www.example.com"}, "pool": "web"},
            {"match": {"host": "*.cdn.example.com"}, "pool": "static"},
            {"match": {"host": "*.example.net", "method": "GET"}, "pool": "web"},
            {"match": {"path_prefix": "/static/"}, "pool": "static", "strip_prefix": "/static"},
            {"match": {"path_prefix": "/api/v1/"}, "pool": "api"},
            {"match": {"path_exact": "/favicon.ico"}, "pool": "static"},
            {"match": {"path_prefix": "/", "header": {"x-canary": "1"}}, "pool": "web"},
            {"match": {"path_prefix": "/"}, "pool": "main"},
        ]
        path.write_text(json.dumps(cfg, indent=1))
        return argv


class LbHostBaseline(LbHost):
    """lbhost from another binary (--baseline-bin, e.g. a build of the commit before a change):
    A/B a change in the same interleaved runs."""
    name = "lbhost-baseline"

    def argv(self):
        argv = super().argv()
        argv[0] = str(self.session.baseline)
        return argv


class Nginx(LB):
    name = "nginx"

    def argv(self):
        d = self.dir
        servers = "\n".join(f"    server 127.0.0.1:{p};" for p in self.backends.ports)
        # upstream keepalive must cover the client concurrency, or nginx closes and reopens
        # upstream connections all the time: keepalive 64 at 64 connections, 256 at 256.
        keepalive = max(64, self.conns)
        timeout = self.idle_timeout or "75s"
        # Under callgrind (--instructions) one process serves: callgrind_control cannot reach
        # a forked worker.
        single = "master_process off;" if getattr(self, "single_process", False) else ""
        forwarding = (
            "\n      proxy_set_header Host $http_host;"
            "\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
            "\n      proxy_set_header X-Forwarded-Proto $scheme;"
            "\n      proxy_set_header X-Forwarded-Host $http_host;"
            '\n      proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\\"$http_host\\"";'
        ) if self.forwarded else ""
        tls = ""
        if self.session.tls:
            t = self.session.tls
            tls = (f" ssl;\n    ssl_certificate {t['cert']};\n    ssl_certificate_key {t['key']};"
                   "\n    ssl_protocols TLSv1.2 TLSv1.3")
        conf = f"""
{single}
worker_processes {self.session.workers};
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 32768; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout {timeout};
  upstream be {{
{servers}
    keepalive {keepalive};
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen 127.0.0.1:{self.port} backlog=4096{tls};
    location / {{
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";{forwarding}
    }}
  }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        return ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"),
                "-g", "daemon off;"]


class HAProxy(LB):
    name = "haproxy"

    def argv(self):
        servers = "\n".join(f"  server s{i} 127.0.0.1:{p}"
                            for i, p in enumerate(self.backends.ports))
        timeout = self.idle_timeout or "75s"
        tls = (f" ssl crt {self.session.tls['combined']} ssl-min-ver TLSv1.2"
               if self.session.tls else "")
        forwarding = (
            "\n  option forwardfor"
            "\n  http-request set-header X-Forwarded-Proto http"
            "\n  http-request set-header X-Forwarded-Host %[req.hdr(host)]"
            '\n  http-request set-header Forwarded "for=%[src];proto=http;host=\\"%[req.hdr(host)]\\""'
        ) if self.forwarded else ""
        conf = f"""
global
  nbthread {self.session.workers}

defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive {timeout}
  option http-keep-alive

frontend fe
  bind 127.0.0.1:{self.port}{tls}
  default_backend be

backend be
  balance roundrobin
  http-reuse always{forwarding}
{servers}
"""
        path = self.dir / "haproxy.cfg"
        path.write_text(conf)
        return ["haproxy", "-db", "-f", str(path)]


def strategy_lb(name, strategy, config):
    """An LB class for lbhost with another strategy (--strategy-set): `lbhost:NAME`."""
    def strategy_(self):
        return strategy

    def strategy_config_(self):
        return config

    return type(f"LbHost_{name}", (LbHost,), {
        "name": f"lbhost:{name}", "strategy": strategy_, "strategy_config": strategy_config_})


LB_CLASSES = {"lbhost": LbHost, "lbhost-native": LbHostNative, "lbhost-floor": LbHostFloor,
              "lbhost-routes": LbHostRoutes,
              "lbhost-baseline": LbHostBaseline, "nginx": Nginx,
              "haproxy": HAProxy}


# ---------------------------------------------------------------------------------------------
# one measured run


UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else float("nan")


def parse_wrk(out):
    r = {"requests": 0, "rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"),
         "non2xx": 0, "socket_errors": 0, "socket_errors_text": ""}
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            r[key] = to_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["socket_errors"] = sum(int(x) for x in m.groups())
        r["socket_errors_text"] = m.group(0)
    return r


def run_wrk(args, port, conns, duration, core, latency=True):
    """Runs wrk to completion (bounded), returns (stdout, cpu ticks wrk used)."""
    argv = pinned(core, ["wrk", "-t", str(args.wrk_threads), "-c", str(conns),
                         "-d", duration, "--timeout", "2s"])
    if latency:
        argv.append("--latency")
    if args.wrk_script:
        argv += ["-s", args.wrk_script]
    if args.new_conn:
        # wrk reconnects after each response: one request per connection (over TLS, one full
        # handshake each: wrk does not resume sessions)
        argv += ["-H", "Connection: close"]
    argv.append(f"{'https' if args.tls else 'http'}://127.0.0.1:{port}/")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    limit = parse_seconds(duration) + 30
    timer = threading.Timer(limit, lambda: p.kill())
    timer.start()
    try:
        out = p.stdout.read().decode(errors="replace")
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        p.kill()
        p.wait()
        raise
    finally:
        timer.cancel()
    ticks = round((ru.ru_utime + ru.ru_stime) * CLK_TCK)
    if p.returncode != 0:
        out += f"\n[wrk exited with {p.returncode}]"
    return out, ticks


def wrk_seconds(secs):
    """wrk takes whole seconds only ("1.5s" is a usage error)."""
    return f"{max(1, round(secs))}s"


def parse_seconds(text):
    m = re.fullmatch(r"([\d.]+)(ms|s|m|h)?", text.strip())
    if not m:
        raise SystemExit(f"bench: bad duration {text!r}")
    mult = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * mult


class RssSampler(threading.Thread):
    def __init__(self, lb, period=0.1):
        super().__init__(daemon=True)
        self.lb, self.period = lb, period
        self.max = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            self.max = max(self.max, self.lb.rss())
            self.stop_ev.wait(self.period)

    def finish(self):
        self.stop_ev.set()
        self.join()
        self.max = max(self.max, self.lb.rss())
        return self.max


def core_probe_ms(core):
    """Wall time, in ms, of a fixed piece of work (SHA-256 of 16 MiB, best of 3) on `core`."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, old if core is None else {core})
    try:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            hashlib.sha256(PROBE_DATA).digest()
            best = min(best, time.perf_counter() - t0)
    finally:
        os.sched_setaffinity(0, old)
    return best * 1000


def mark_slow(results):
    """Marks the runs whose probe was more than SLOW_LIMIT times the fastest one's."""
    fastest = min((r["probe_ms"] for r in results), default=0)
    for r in results:
        r["slow"] = fastest > 0 and r["probe_ms"] > SLOW_LIMIT * fastest


def measure(args, session, lb, backends, conns):
    """Start `lb`, warm up, measure one wrk run, stop it. Returns a dict of figures."""
    probe_before = core_probe_ms(args.lb_core)
    lb.start()
    try:
        rss_idle = lb.rss()
        sampler = RssSampler(lb)
        sampler.start()
        if args.warmup_s > 0:
            wout, _ = run_wrk(args, lb.port, conns, wrk_seconds(args.warmup_s), args.load_core,
                              latency=False)
            if "[wrk exited" in wout:
                raise RuntimeError(f"warm-up wrk failed:\n{wout}")
        time.sleep(0.2)
        acc0 = backends.accepts()
        self_t0 = proc_cpu_ticks(os.getpid())
        lb_t0, be_t0 = lb.cpu(), backends.cpu()
        busy0, sirq0 = system_busy_ticks()
        cores0 = core_busy_ticks({args.lb_core, args.load_core})
        t0 = time.monotonic()
        out, wrk_ticks = run_wrk(args, lb.port, conns, wrk_seconds(args.duration_s),
                                 args.load_core)
        wall = time.monotonic() - t0
        busy1, sirq1 = system_busy_ticks()
        cores1 = core_busy_ticks({args.lb_core, args.load_core})
        lb_t1, be_t1 = lb.cpu(), backends.cpu()
        self_t1 = proc_cpu_ticks(os.getpid())
        acc1 = backends.accepts()
        rss_load = sampler.finish()
        alive = lb.alive()
    finally:
        lb.stop()
    probe_after = core_probe_ms(args.lb_core)
    w = parse_wrk(out)
    lb_ticks = lb_t1 - lb_t0
    ours = lb_ticks + (be_t1 - be_t0) + wrk_ticks + (self_t1 - self_t0)
    other_core = max(0, (busy1 - busy0) - ours) / CLK_TCK / wall
    req = w["requests"]
    res = {
        "lb": lb.name, "conns": conns, "backends": len(backends.ports),
        "rps": w["rps"], "p50_ms": w["p50_ms"], "p99_ms": w["p99_ms"], "requests": req,
        "cpu_us_per_req": (lb_ticks / CLK_TCK * 1e6 / req) if req else float("nan"),
        "lb_core_util": lb_ticks / CLK_TCK / wall,
        "rss_idle_kib": rss_idle, "rss_load_kib": rss_load,
        # -1: the connection that read the "after" counter
        "upstream_new": acc1 - acc0 - 1,
        "other_core": other_core, "softirq_core": (sirq1 - sirq0) / CLK_TCK / wall,
        "noisy": other_core > NOISE_LIMIT,
        # the slower of the two probes around the run; "slow" is set by mark_slow
        "probe_ms": max(probe_before, probe_after), "slow": False,
        # whole-core busy fractions: a load core near 100% means wrk/backends were the limit
        "lb_core_busy": (cores1.get(args.lb_core, 0) - cores0.get(args.lb_core, 0)) / CLK_TCK / wall,
        "load_core_busy": (cores1.get(args.load_core, 0) - cores0.get(args.load_core, 0)) / CLK_TCK
        / wall,
        "non2xx": w["non2xx"], "socket_errors": w["socket_errors"],
        "socket_errors_text": w["socket_errors_text"],
        "lb_alive_after": alive, "wall_s": wall,
    }
    problems = []
    if w["non2xx"]:
        problems.append(f"{w['non2xx']} non-2xx/3xx responses")
    if w["socket_errors"]:
        problems.append(w["socket_errors_text"])
    if not alive:
        problems.append("LB process died during the run")
    if not req:
        problems.append("wrk completed no requests")
    if "[wrk exited" in out:
        problems.append(out.strip().splitlines()[-1])
    res["problems"] = problems
    res["wrk_output"] = out
    if problems and lb.name == "lbhost":
        tail = lb.log_tail().strip().splitlines()[-20:]
        res["lb_log_tail"] = tail
    return res


# ---------------------------------------------------------------------------------------------
# reporting


def med(rows, key):
    vals = [r[key] for r in rows if r[key] == r[key]]  # drop NaN
    return statistics.median(vals) if vals else float("nan")


def fmt(x, nd=0):
    if x != x:
        return "n/a"
    return f"{x:,.{nd}f}"


def fmt_ratio(x):
    return "n/a" if x != x else f"{x:.2f}×"


def mib(kib):
    return "n/a" if kib != kib else f"{kib / 1024:.1f}"


def noisy_mark(rows):
    n = sum(r["noisy"] for r in rows)
    slow = sum(r.get("slow", False) for r in rows)
    marks = ([f"NOISY {n}/{len(rows)}"] if n else []) + \
        ([f"SLOW {slow}/{len(rows)}"] if slow else [])
    return ", ".join(marks) or "ok"


def compare_table(results, lbs, conns_list, strategy="round_robin.wasm"):
    lines = [
        "| conns | LB | req/s | p50 ms | p99 ms | LB CPU µs/req | LB core % | RSS idle MiB "
        "| RSS load MiB | new upstream conns | errors | noise |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratio_lines = []
    strategy_lines = []
    wasm_cost = []
    baseline_lines = []
    for conns in conns_list:
        med_by_lb = {}
        for name in lbs:
            rows = [r for r in results if r["lb"] == name and r["conns"] == conns]
            if not rows:
                continue
            m = {k: med(rows, k) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req",
                                             "lb_core_util", "rss_idle_kib", "rss_load_kib",
                                             "upstream_new")}
            med_by_lb[name] = m
            errs = sum(r["non2xx"] + r["socket_errors"] for r in rows)
            dead = sum(not r["lb_alive_after"] for r in rows)
            err_txt = str(errs) + (f" (+{dead} crash)" if dead else "")
            lines.append(
                f"| {conns} | {name} | {fmt(m['rps'])} | {fmt(m['p50_ms'], 2)} "
                f"| {fmt(m['p99_ms'], 2)} | {fmt(m['cpu_us_per_req'], 1)} "
                f"| {fmt(m['lb_core_util'] * 100)} | {mib(m['rss_idle_kib'])} "
                f"| {mib(m['rss_load_kib'])} | {fmt(m['upstream_new'])} | {err_txt} "
                f"| {noisy_mark(rows)} |")
        others = [med_by_lb[n] for n in ("nginx", "haproxy") if n in med_by_lb]
        if "lbhost" in med_by_lb and others:
            lh = med_by_lb["lbhost"]
            best_cpu = min(o["cpu_us_per_req"] for o in others)
            best_rps = max(o["rps"] for o in others)
            best_p99 = min(o["p99_ms"] for o in others)
            ratio_lines.append(
                f"| {conns} | {fmt_ratio(lh['cpu_us_per_req'] / best_cpu)} "
                f"| {fmt_ratio(lh['rps'] / best_rps)} | {fmt_ratio(lh['p99_ms'] / best_p99)} |")
        base = med_by_lb.get("lbhost:round_robin")
        for name in lbs:
            if base and name.startswith("lbhost:") and name in med_by_lb:
                m = med_by_lb[name]
                strategy_lines.append(
                    f"| {conns} | {name[len('lbhost:'):]} | {fmt(m['cpu_us_per_req'], 2)} "
                    f"| {fmt_ratio(m['cpu_us_per_req'] / base['cpu_us_per_req'])} "
                    f"| {fmt_ratio(m['rps'] / base['rps'])} |")
        if "lbhost" in med_by_lb and "lbhost-native" in med_by_lb:
            native = med_by_lb["lbhost-native"]["cpu_us_per_req"]
            wasm = med_by_lb["lbhost"]["cpu_us_per_req"]
            floor = med_by_lb.get("lbhost-floor", {}).get("cpu_us_per_req")
            floor_cols = (f" {fmt(floor, 1)} | {fmt_ratio(floor / native)} |"
                          if floor is not None else "")
            wasm_cost.append(f"| {conns} | {fmt(wasm, 1)} | {fmt(native, 1)} "
                             f"| {fmt_ratio(wasm / native)} |{floor_cols}")
        if "lbhost" in med_by_lb and "lbhost-baseline" in med_by_lb:
            now, before = med_by_lb["lbhost"], med_by_lb["lbhost-baseline"]
            baseline_lines.append(
                f"| {conns} | {fmt(before['cpu_us_per_req'], 1)} | {fmt(now['cpu_us_per_req'], 1)} "
                f"| {fmt_ratio(now['cpu_us_per_req'] / before['cpu_us_per_req'])} "
                f"| {fmt_ratio(now['rps'] / before['rps'])} |")
    out = "\n".join(lines)
    if baseline_lines:
        out += ("\n\nlbhost against lbhost-baseline (--baseline-bin): CPU "
                "µs/request and the ratios now/before (CPU lower is better, req/s higher).\n\n"
                "| conns | baseline CPU | lbhost CPU | CPU ratio | req/s ratio |\n"
                "|---:|---:|---:|---:|---:|\n" + "\n".join(baseline_lines))
    if wasm_cost:
        head, rule = "| conns | wasm | native | ratio |", "|---:|---:|---:|---:|"
        if "lbhost-floor" in lbs:
            head += " call floor | floor ratio |"
            rule += "---:|---:|"
        out += (f"\n\nWhat the wasm strategy costs: lbhost ({strategy}) against lbhost with "
                "the host's own round-robin (LBHOST_BENCH_NATIVE_SELECTOR=1), CPU µs/request"
                + ("; the call floor is lbhost-floor (bench/call_floor.wasm: round-robin on the "
                   "raw bindings, no SDK), what any guest call costs"
                   if "lbhost-floor" in lbs else "") + ".\n\n"
                + head + "\n" + rule + "\n" + "\n".join(wasm_cost))
    if strategy_lines:
        out += ("\n\nEach strategy (--strategy-set) against round_robin on the same binary: "
                "LB CPU µs/request, and the ratios (CPU lower is better, req/s higher).\n\n"
                "| conns | strategy | CPU µs/req | CPU ÷ round_robin | req/s ÷ round_robin |\n"
                "|---:|---|---:|---:|---:|\n" + "\n".join(strategy_lines))
    if ratio_lines:
        out += ("\n\nlbhost vs the better of nginx/HAProxy per column (medians): CPU/request "
                "and p99 (lower is better), throughput (higher is better).\n\n"
                "| conns | CPU/request ratio | throughput ratio | p99 ratio |\n"
                "|---:|---:|---:|---:|\n" + "\n".join(ratio_lines))
    return out


def scale_table(results):
    lines = [
        "| backends | req/s | p50 ms | p99 ms | LB CPU µs/req | LB core % | RSS idle MiB "
        "| RSS load MiB | new upstream conns | errors | noise |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in sorted({r["backends"] for r in results}):
        rows = [r for r in results if r["backends"] == n]
        m = {k: med(rows, k) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req",
                                         "lb_core_util", "rss_idle_kib", "rss_load_kib",
                                         "upstream_new")}
        errs = sum(r["non2xx"] + r["socket_errors"] for r in rows)
        lines.append(
            f"| {n} | {fmt(m['rps'])} | {fmt(m['p50_ms'], 2)} | {fmt(m['p99_ms'], 2)} "
            f"| {fmt(m['cpu_us_per_req'], 1)} | {fmt(m['lb_core_util'] * 100)} "
            f"| {mib(m['rss_idle_kib'])} | {mib(m['rss_load_kib'])} | {fmt(m['upstream_new'])} "
            f"| {errs} | {noisy_mark(rows)} |")
    return "\n".join(lines)


def raw_table(results):
    lines = ["| # | LB | conns | backends | req/s | p99 ms | µs/req | new upstream | LB core busy "
             "| load core busy | other CPU (cores) | softirq (cores) | flags |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, r in enumerate(results, 1):
        flags = []
        if r["noisy"]:
            flags.append("NOISY")
        if r.get("slow"):
            flags.append(f"SLOW (probe {r['probe_ms']:.1f} ms)")
        flags += r["problems"]
        lines.append(
            f"| {i} | {r['lb']} | {r['conns']} | {r['backends']} | {fmt(r['rps'])} "
            f"| {fmt(r['p99_ms'], 2)} | {fmt(r['cpu_us_per_req'], 1)} | {r['upstream_new']} "
            f"| {r['lb_core_busy']:.0%} | {r['load_core_busy']:.0%} | {r['other_core']:.2f} "
            f"| {r['softirq_core']:.2f} | {'; '.join(flags) or '-'} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# idle connections


async def open_idle(port, n, concurrency=256, tls=False):
    """Opens n keep-alive connections (TLS ones with `tls`), sends one request on each, keeps
    them open."""
    ctx = client_tls_context() if tls else None
    conns = []
    failures = []
    sem = asyncio.Semaphore(concurrency)
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=ctx), 10)
                w.write(req)
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if m:
                    await asyncio.wait_for(r.readexactly(int(m.group(1))), 10)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                conns.append((r, w))
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    await asyncio.gather(*(one() for _ in range(n)))
    return conns, failures


def make_certificate(tmp):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 in `tmp`: the one every LB serves
    with --tls (HAProxy takes the chain and key in one file)."""
    cert, key, combined = tmp / "bench-cert.pem", tmp / "bench-key.pem", tmp / "bench-combined.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    combined.write_text(cert.read_text() + key.read_text())
    return {"cert": cert, "key": key, "combined": combined,
            "what": "a self-signed ECDSA P-256 certificate, every LB with its default ciphers"}


def idle_mode(args, session, ports):
    backends = Backends(session, ports, args.load_core, 3)
    rows = []
    try:
        for name in args.idle_lbs:
            port, admin = ports.take(2)
            # keep-alive idle limits raised so that the connections survive the measurement
            lb = LB_CLASSES[name](session, port, admin, backends, 256, args.lb_core,
                                  idle_timeout="300s")
            lb.start()
            try:
                time.sleep(0.5)
                before = lb.rss()
                t0 = time.monotonic()
                loop = asyncio.new_event_loop()
                conns, failures = loop.run_until_complete(
                    open_idle(port, args.idle_conns, tls=args.tls))
                opened = time.monotonic() - t0
                time.sleep(1.0)
                after = lb.rss()
                parked = lb.parked_connections()
                # are they still open on the LB side? send one more request on a sample
                still = 0
                sample = conns[:: max(1, len(conns) // 100)]

                async def probe(rw):
                    r, w = rw
                    w.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    await w.drain()
                    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
                    return head.startswith(b"HTTP/1.1 200")

                for rw in sample:
                    try:
                        still += loop.run_until_complete(probe(rw))
                    except Exception:  # noqa: BLE001
                        pass
                for _r, w in conns:
                    w.close()
                loop.run_until_complete(asyncio.sleep(0.2))
                loop.close()
                alive = lb.alive()
            finally:
                lb.stop()
            n = len(conns)
            rows.append({
                "lb": name, "requested": args.idle_conns, "opened": n,
                "failures": len(failures), "first_failures": sorted(set(failures))[:5],
                "open_s": opened, "rss_before_kib": before, "rss_after_kib": after,
                "per_conn_kib": (after - before) / n if n else float("nan"),
                "probe_ok": f"{still}/{len(sample)}", "lb_alive_after": alive,
                "parked": parked,
            })
            log(f"[idle] {name}: {n} connections open, RSS {before} → {after} KiB, "
                f"failures {len(failures)}")
    finally:
        backends.stop()
    lines = ["| LB | connections | RSS before MiB | RSS after MiB | per connection KiB "
             "| open time s | still answering | parked | failures |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        fails = str(r["failures"]) + (f" ({'; '.join(r['first_failures'])})"
                                      if r["failures"] else "")
        if not r["lb_alive_after"]:
            fails += " LB DIED"
        lines.append(f"| {r['lb']} | {r['opened']:,} | {mib(r['rss_before_kib'])} "
                     f"| {mib(r['rss_after_kib'])} | {r['per_conn_kib']:.1f} | {r['open_s']:.1f} "
                     f"| {r['probe_ok']} | {fmt_count(r['parked'])} | {fails} |")
    return "\n".join(lines), rows


def fmt_count(n):
    """A count, or — when the LB does not report it."""
    return "—" if n is None else f"{n:,}"


# ---------------------------------------------------------------------------------------------
# main


def versions():
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "?"
    rev = first(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "host"],
                           capture_output=True, text=True).stdout.strip()
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "lbhost": f"{rev}{' (host/ modified)' if dirty else ''}",
        "nginx": first(["nginx", "-v"]).replace("nginx version: ", ""),
        "haproxy": first(["haproxy", "-v"]).split(" - ")[0],
        "wrk": first(["wrk", "-v"]).split(" [")[0],
        "kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
    }


def main():
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", default="10s", help="wrk -d per measured run (default 10s)")
    ap.add_argument("--warmup", default="1s", help="wrk warm-up before each run, not measured "
                    "(default 1s; 0 to skip)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per LB (default 3)")
    ap.add_argument("--conns", default="64,256", help="client connections (default 64,256)")
    ap.add_argument("--lbs", default=",".join(LB_NAMES), help="which LBs (default: lbhost, lbhost-native, nginx, haproxy; "
                         "also lbhost-floor: the cheapest guest, bench/call_floor.wasm)")
    ap.add_argument("--pgo", action="store_true",
                    help="lbhost is the production build, target/dist/lbhost (`cargo xtask dist`, "
                         "profile-guided), instead of target/release/lbhost")
    ap.add_argument("--strategy", metavar="PATH", default=str(ROOT / "strategies" / "round_robin.wasm"),
                    help="the strategy lbhost runs (default strategies/round_robin.wasm): price "
                         "your own against lbhost-native and lbhost-floor")
    ap.add_argument("--strategy-config", metavar="JSON", default="{}",
                    help="its strategy_config object (default {})")
    ap.add_argument("--strategy-set", metavar="JSON_FILE",
                    help="a list of {name, strategy, config}: each runs as lbhost:NAME beside the "
                         "--lbs, interleaved, with a table of CPU per request against "
                         "lbhost:round_robin (e.g. bench/strategies.json)")
    ap.add_argument("--baseline-bin", metavar="PATH",
                    help="another lbhost binary to A/B against lbhost, as LB "
                         "lbhost-baseline (added to --lbs)")
    ap.add_argument("--scale", action="store_true",
                    help="lbhost alone with 3, 64 and 1000 backends (64 connections)")
    ap.add_argument("--scale-backends", default="3,64,1000")
    ap.add_argument("--idle-conns", type=int, default=0, metavar="N",
                    help="open N idle keep-alive connections to lbhost, report RSS")
    ap.add_argument("--idle-lbs", default="lbhost", help="LBs for --idle-conns (default lbhost)")
    ap.add_argument("--instructions", action="store_true",
                    help="user-space instructions per request under callgrind (valgrind), for "
                         "--instr-lbs; the figure that does not move with the machine's noise")
    ap.add_argument("--instr-lbs", default="lbhost,nginx,haproxy",
                    help="LBs for --instructions (default lbhost,nginx,haproxy; lbhost-baseline "
                         "added with --baseline-bin)")
    ap.add_argument("--instr-conns", type=int, default=16,
                    help="client connections for --instructions (default 16)")
    ap.add_argument("--instr-seconds", type=float, default=5.0,
                    help="measured seconds per --instructions run (default 5)")
    ap.add_argument("--compare", action="store_true",
                    help="with --scale/--idle-conns/--instructions: also run the side-by-side "
                         "comparison")
    ap.add_argument("--forwarded", action="store_true",
                    help="nginx and HAProxy add X-Forwarded-For/-Proto/-Host and Forwarded and "
                         "keep the client's Host, as lbhost does by default (same request to "
                         "the backends from every LB)")
    ap.add_argument("--shared", action="store_true",
                    help="the way most users run an LB: one worker per core (lbhost `workers` "
                         "unset, nginx worker_processes 2, HAProxy nbthread 2) and nothing "
                         "pinned: the LB, wrk, the backends and this script share every core")
    ap.add_argument("--tls", action="store_true",
                    help="clients speak HTTPS to every LB (one ECDSA P-256 certificate made with "
                         "openssl for all, TLS 1.2 and 1.3); backends stay plain HTTP")
    ap.add_argument("--new-conn", action="store_true",
                    help="one request per client connection (wrk sends Connection: close); with "
                         "--tls, one full handshake per request")
    ap.add_argument("--lb-core", type=int, default=0)
    ap.add_argument("--load-core", type=int, default=1)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--wrk-script", metavar="LUA", default=None,
                    help="a wrk Lua script for every run, e.g. bench/cookies.lua (clients send "
                         "back the cookie they were given: a sticky strategy's steady state)")
    ap.add_argument("--port-base", type=int, default=20000)
    ap.add_argument("--out", default=str(BENCH_DIR / "results" / "latest.md"))
    args = ap.parse_args()
    LB.forwarded = args.forwarded

    args.conns_list = [int(x) for x in args.conns.split(",") if x]
    args.lbs = [x for x in args.lbs.split(",") if x]
    if args.baseline_bin and "lbhost-baseline" not in args.lbs:
        args.lbs.insert(args.lbs.index("lbhost") + 1 if "lbhost" in args.lbs else 0,
                        "lbhost-baseline")
    if "lbhost-baseline" in args.lbs and not args.baseline_bin:
        raise SystemExit("bench: lbhost-baseline needs --baseline-bin PATH")
    args.idle_lbs = [x for x in args.idle_lbs.split(",") if x]
    args.instr_lbs = [x for x in args.instr_lbs.split(",") if x]
    if args.baseline_bin and "lbhost-baseline" not in args.instr_lbs:
        args.instr_lbs.insert(args.instr_lbs.index("lbhost") + 1 if "lbhost" in args.instr_lbs
                              else 0, "lbhost-baseline")
    if args.strategy_set:
        entries = json.loads(Path(args.strategy_set).read_text())
        for e in entries:
            cls = strategy_lb(e["name"], (ROOT / e["strategy"]).resolve(), e.get("config", {}))
            LB_CLASSES[cls.name] = cls
            args.lbs.append(cls.name)
    for n in args.lbs + args.idle_lbs + args.instr_lbs:
        if n not in LB_CLASSES:
            raise SystemExit(f"bench: unknown LB {n!r} ({', '.join(LB_CLASSES)})")
    args.warmup_s = parse_seconds(args.warmup)
    args.duration_s = parse_seconds(args.duration)
    run_compare = args.compare or not (args.scale or args.idle_conns or args.instructions)
    if args.reps < 1:
        raise SystemExit("bench: --reps must be >= 1")

    if args.shared:
        args.lb_core = args.load_core = None
    elif os.cpu_count() < 2 or args.lb_core == args.load_core:
        raise SystemExit("bench: needs two distinct cores (--lb-core, --load-core)")
    else:
        os.sched_setaffinity(0, {args.load_core})  # this script stays off the LB's core

    tmp = os.environ.get("BENCH_TMP")
    if not tmp:
        raise SystemExit("bench: run me through bench/run.sh (it owns the temp dir)")
    session = Session(tmp)
    session.shared = args.shared
    session.workers = os.cpu_count() if args.shared else 1
    session.lbhost = ROOT / "target" / ("dist" if args.pgo else "release") / "lbhost"
    session.strategy = Path(args.strategy).resolve()
    session.strategy_config = json.loads(args.strategy_config)
    if not isinstance(session.strategy_config, dict):
        raise SystemExit("bench: --strategy-config must be a JSON object")
    session.floor_strategy = ROOT / "bench" / "call_floor.wasm"
    session.tls = make_certificate(session.tmp) if args.tls else None
    session.baseline = Path(args.baseline_bin).resolve() if args.baseline_bin else None
    needed = [session.lbhost, session.strategy] + ([session.baseline] if session.baseline else [])
    if "lbhost-floor" in args.lbs + args.instr_lbs:
        needed.append(session.floor_strategy)
    for f in needed:
        if not f.exists():
            raise SystemExit(f"bench: {f} missing (run without --no-build)")

    la = loadavg1()
    if la > 0.5:
        log(f"WARNING: load average is {la:.2f} (> 0.5): other work is running, figures will be "
            "noisy; runs where other processes used > 10% of a core are marked NOISY")
    ports = Ports(args.port_base)
    session.ports = ports
    ver = versions()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    built = datetime.fromtimestamp(session.lbhost.stat().st_mtime, timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")
    md = [f"# lbhost side-by-side benchmark — {started}", "",
          f"- machine: {ver['cpu']}, {ver['cores']} cores, Linux {ver['kernel']}; "
          f"load average at start {la:.2f}",
          f"- lbhost {ver['lbhost']}, {session.lbhost.relative_to(ROOT)}"
          f"{' (profile-guided: cargo xtask dist)' if args.pgo else ''} built {built} "
          f"({session.strategy.name}); {ver['nginx']}, "
          f"{ver['haproxy']}, {ver['wrk']}",
          (f"- shared cores: each LB with {session.workers} workers, nothing pinned; wrk "
           f"(-t{args.wrk_threads}), the backend nginx (one worker) and this script on the same "
           "cores; " if args.shared else
           f"- LB on core {args.lb_core} alone, one worker; wrk (-t{args.wrk_threads}), the "
           f"backend nginx (one worker) and this script on core {args.load_core}; ") +
          f"wrk -d {wrk_seconds(args.duration_s)} after a {wrk_seconds(args.warmup_s)} warm-up "
          f"(none if 0); {args.reps} repetition(s), LBs interleaved; medians shown",
          *([f"- clients over TLS (HTTPS to every LB; {session.tls['what']})"]
            if args.tls else []),
          *(["- one request per client connection (`Connection: close`)"
             + (": every request is a new TLS connection with a full handshake" if args.tls
                else "")] if args.new_conn else []), ""]
    all_runs = []
    any_noisy = False
    problems = []
    try:
        if run_compare:
            backends = Backends(session, ports, args.load_core, 3)
            results = []
            try:
                total = len(args.conns_list) * args.reps * len(args.lbs)
                i = 0
                for conns in args.conns_list:
                    for rep in range(args.reps):
                        for name in args.lbs:
                            i += 1
                            port, admin = ports.take(2)
                            lb = LB_CLASSES[name](session, port, admin, backends, conns,
                                                  args.lb_core)
                            r = measure(args, session, lb, backends, conns)
                            r["rep"] = rep + 1
                            results.append(r)
                            log(f"[{i}/{total}] {name:8} c={conns:<4} rep {rep + 1}: "
                                f"{r['rps']:>9,.0f} req/s  p99 {r['p99_ms']:.2f} ms  "
                                f"{r['cpu_us_per_req']:.1f} µs/req  upstream+{r['upstream_new']}"
                                f"  other {r['other_core']:.2f} core  probe {r['probe_ms']:.1f} ms"
                                f"{'  NOISY' if r['noisy'] else ''}"
                                f"{'  PROBLEM: ' + '; '.join(r['problems']) if r['problems'] else ''}")
            finally:
                backends.stop()
            mark_slow(results)
            all_runs += results
            how = (", clients over HTTPS" if args.tls else "") + (
                ", one request per client connection" if args.new_conn else "")
            md += [f"## Side by side (3 backends, round-robin, upstream keep-alive{how})", "",
                   compare_table(results, args.lbs, args.conns_list, session.strategy.name), ""]
        if args.scale:
            counts = [int(x) for x in args.scale_backends.split(",") if x]
            backends = Backends(session, ports, args.load_core, max(counts),
                                name="scale-backends")
            all_ports = backends.ports
            results = []
            try:
                for rep in range(args.reps):
                    for n in counts:
                        backends.ports = all_ports[:n]
                        port, admin = ports.take(2)
                        lb = LbHost(session, port, admin, backends, 64, args.lb_core)
                        r = measure(args, session, lb, backends, 64)
                        r["rep"] = rep + 1
                        results.append(r)
                        log(f"[scale] {n:>4} backends rep {rep + 1}: {r['rps']:>9,.0f} req/s  "
                            f"{r['cpu_us_per_req']:.1f} µs/req  upstream+{r['upstream_new']}"
                            f"{'  NOISY' if r['noisy'] else ''}"
                            f"{'  PROBLEM: ' + '; '.join(r['problems']) if r['problems'] else ''}")
            finally:
                backends.ports = all_ports
                backends.stop()
            mark_slow(results)
            all_runs += results
            md += ["## lbhost with more backends (64 connections, round-robin)", "",
                   scale_table(results), ""]
        if args.idle_conns:
            table, rows = idle_mode(args, session, ports)
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            md += [f"## Idle keep-alive connections ({args.idle_conns:,}, one request each, "
                   "then idle)", "", table, "",
                   f"Open-file limit {nofile}; HAProxy sizes its maxconn from it (two descriptors "
                   "per proxied connection), so below ~2×N+100 it refuses the last few.", ""]
            for r in rows:
                if r["failures"] or not r["lb_alive_after"]:
                    problems.append(f"idle {r['lb']}: {r['failures']} failures "
                                    f"{r['first_failures']}, alive={r['lb_alive_after']}")
        if args.instructions:
            table, rows = instructions.instructions_mode(args, session, ports, sys.modules[__name__])
            md += [f"## User-space instructions per request (callgrind, {args.instr_conns} "
                   f"connections, {args.instr_seconds:g} s counted per run)", "", table, "",
                   "Counted by valgrind's callgrind in user space only (the kernel's share of a "
                   "request is not in it); stable to about ±0.5 % between runs.", ""]
            for r in rows:
                if r["errors"] or not r["alive"]:
                    problems.append(f"instructions {r['lb']} rep {r['rep']}: {r['errors']} "
                                    f"errors, alive={r['alive']}")
    except KeyboardInterrupt:
        log("bench: interrupted")
        raise
    finally:
        session.stop_all()

    if all_runs:
        md += ["<details><summary>every run</summary>", "", raw_table(all_runs), "",
               "</details>", ""]
    any_noisy = any(r["noisy"] for r in all_runs)
    for r in all_runs:
        if r["problems"]:
            problems.append(f"{r['lb']} c={r['conns']} backends={r['backends']} "
                            f"rep {r.get('rep')}: {'; '.join(r['problems'])}")
    if any_noisy:
        md += ["**NOISY**: in runs marked NOISY other processes used more than "
               f"{NOISE_LIMIT:.0%} of a core; do not use those figures.", ""]
    if any(r.get("slow") for r in all_runs):
        md += ["**SLOW**: in runs marked SLOW a fixed piece of work on the LB's core (SHA-256 "
               f"of 16 MiB) took more than {SLOW_LIMIT - 1:.0%} longer than its fastest time in "
               "this session: the machine itself was slower then; compare those runs with "
               "care, or rerun.", ""]
    if problems:
        md += ["**Problems seen:**", ""] + [f"- {p}" for p in problems] + [""]
    text = "\n".join(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    runs_file = out.with_name(out.stem + "-runs.json")
    runs_file.write_text(json.dumps(all_runs, indent=1, default=str))
    print(text)
    log(f"written to {out} (every run with its wrk output: {runs_file})")
    if any_noisy:
        log("NOTE: some runs were NOISY (other processes were busy); rerun on a quiet machine")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
