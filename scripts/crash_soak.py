#!/usr/bin/env python3
"""Crash-safety soak test of tidald: kill -9 it amid activity, restart it, check invariants.

Each round starts a fresh tidald (its own data dir) and applies two apps built
on the sample app: hello (3 replicas, rollout in 3 batches) and other (2
replicas). Then it fires, in a random order with random gaps, a new hello
template (GEN=2; by round a good one, one slow to start or one that exits at
start), a scale of hello, a delete of other and an apply of a third app, and
kill -9s tidald at a random moment in the middle of that. Every third round
restarts it and kills it once more shortly after. Odd rounds run instances
with --instance-cgroup off (subreaper), even rounds each in its own cgroup v2,
under a root of this run's own: <this process's cgroup>/tidal-crash-soak-XXXX
(auto where there is no cgroup v2; tidald falls back to the subreaper when it
cannot use cgroups).

After the last restart it waits up to 75 s for the apps to settle, then checks:
  specs      a change tidalctl acknowledged before the kill survived; one never
             sent did not appear; a scale in flight left 3 replicas or the new count
  processes  each app runs exactly spec.replicas live instance processes; none
             of a deleted app, of another round, or unknown to `get instances`;
             no instance id or port held twice; no instance listed by tidald
             without its process (or under another pid); no second tidald on the
             data dir
  rollouts   hello ended Succeeded (processes run the spec's GEN) or RolledBack
             (processes run the stable revision), one revision runs, the bad
             template never stays; `apply --wait` across the kill (burst) returns
             0 for Succeeded and 1 for RolledBack
  gateway    every app answers 200 through the gateway

Variants (--variant):
  base      scale hello to 2-5, kill 0-3 s after the activity starts
  burst     the new template is applied with --wait across the kill, scale to
            12-15, kill 0-1.5 s in
  stubborn  instances ignore SIGTERM (grace 4 s), kill 0.3-5 s in: kills during stops
  storm     only a scale to 20-25, kill within --storm-window seconds (default
            0.01,0.25): kills mid-spawn

Usage (from the repository root; tidald runs as the calling user, instances as
nobody when that is root):
  scripts/crash_soak.py [--build DIR] [--rounds N] [--first-round N]
                        [--variant base|burst|stubborn|storm] [--storm-window LO,HI]
                        [--seed S] [--keep]
A round's mode, double kill and GEN=2 kind follow its number; its timings come
from --seed (printed; the same seed and round replay the same plan).

Everything lives in a fresh temporary directory, removed at the end unless
--keep is given or a round failed (then its path is printed). API, gateway and
admin listen on free 127.0.0.1 ports, instances get a free range of 500 ports.
Instance processes carry an environment tag unique to the run (the work
dir's name). After each round and on exit (Ctrl-C and SIGTERM included) every
tidald and tagged process it started is killed and its cgroup root removed,
with the probe cgroups its tidalds may leave in the shared cgroup v1 roots.
Exit status 0 when every round held every invariant, 1 otherwise (an
interrupted run included). Python 3 standard library only.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTLE_DEADLINE = 75.0
PORT_RANGE_SIZE = 500
TAG_VAR = "CRASH_SOAK_TAG"
ROUND_VAR = "CRASH_SOAK_ROUND"

STUBBORN_PY = r'''# A test app that ignores SIGTERM (so its stop takes the whole grace period).
import os, signal, sys, time, http.server
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("EXIT_AT_START"):
    sys.exit(int(os.environ["EXIT_AT_START"]))
d = os.environ.get("STARTUP_DELAY", "")
if d.endswith("ms"):
    time.sleep(int(d[:-2]) / 1000.0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("stubborn GEN=%s pid %d\n" % (os.environ.get("GEN"), os.getpid())).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), H).serve_forever()
'''


# ---------------------------------------------------------------- ports, cgroups
def free_ports(n):
    """n distinct loopback ports free right now (bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_range(avoid):
    """A range of PORT_RANGE_SIZE ports outside the ephemeral range, a sample of them free."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo, eph_hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        eph_lo, eph_hi = 32768, 60999
    starts = list(range(10000, eph_lo - PORT_RANGE_SIZE + 1, PORT_RANGE_SIZE)) + \
        list(range(eph_hi + 1, 65536 - PORT_RANGE_SIZE + 1, PORT_RANGE_SIZE))
    random.SystemRandom().shuffle(starts)
    for start in starts[:50]:
        end = start + PORT_RANGE_SIZE - 1
        if any(start <= p <= end for p in avoid):
            continue
        sample = {start, end} | {start + i * PORT_RANGE_SIZE // 10 for i in range(1, 10)}
        if all(port_free(p) for p in sample):
            return start, end
    sys.exit("crash_soak: found no free range of %d loopback ports" % PORT_RANGE_SIZE)


def own_cgroups():
    """This process's cgroup directories: {"cgroup2": dir, "memory": dir, "cpu": dir}, those that exist."""
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = f.read().splitlines()
        with open("/proc/self/cgroup") as f:
            own = [line.split(":", 2) for line in f.read().splitlines()]
    except OSError:
        return {}
    out = {}
    for want in ("cgroup2", "memory", "cpu"):
        for line in mounts:
            head, sep, tail = line.partition(" - ")
            fields, tail = head.split(" "), tail.split(" ")
            if not sep or len(fields) < 5 or len(tail) < 3:
                continue
            if want == "cgroup2":
                if tail[0] != "cgroup2":
                    continue
                paths = [c[2] for c in own if len(c) == 3 and c[0] == "0" and c[1] == ""]
            else:
                if tail[0] != "cgroup" or want not in tail[2].split(","):
                    continue
                paths = [c[2] for c in own if len(c) == 3 and want in c[1].split(",")]
            if paths:
                mount_root, mount_point, path = fields[3], fields[4], paths[0]
                if mount_root != "/" and path.startswith(mount_root):
                    path = path[len(mount_root):]
                out[want] = mount_point.rstrip("/") + ("" if path == "/" else path)
            break
    return out


# ---------------------------------------------------------------- processes
def proc_env(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for kv in raw.split(b"\0"):
        if b"=" in kv:
            k, v = kv.split(b"=", 1)
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


def proc_stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        rest = s[s.rindex(")") + 2:].split()
        return rest[0], int(rest[1])  # state, ppid
    except (OSError, ValueError):
        return None, None


def proc_cmd(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def fmt_procs(ps):
    return "\n".join(f"    pid={p['pid']} ppid={p['ppid']} st={p['state']} app={p['app']} inst={p['inst']} "
                     f"rev={p['rev']} gen={p['gen']} port={p['port']} round={p['round']}"
                     for p in sorted(ps, key=lambda p: (p['app'] or '', p['inst'] or '')))


def live(ps):
    return [p for p in ps if p["state"] != "Z"]


def http_get(addr, path, host=None, timeout=1.0):
    """(status or None, body or error text) of GET http://addr/path."""
    h, p = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(h, int(p), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


# ---------------------------------------------------------------- tidald
class Daemon:
    def __init__(self, soak, rdir, mode):
        self.soak, self.rdir, self.mode = soak, rdir, mode
        self.data = os.path.join(rdir, "data")
        self.proc = None
        self.logs = []
        self.t_start = None

    def start(self):
        s = self.soak
        lp = os.path.join(self.rdir, f"tidald-{len(self.logs) + 1}.log")
        self.logs.append(lp)
        args = [s.tidald, "--data-dir", self.data, "--listen", s.api, "--gateway-listen", s.gw,
                "--admin-listen", s.admin, "--port-range", s.port_range, "--workers", "2",
                "--gateway-threads", "1", "--instance-cgroup", self.mode]
        with open(lp, "w") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.rdir, start_new_session=True)
        s.tidald_procs.append(self.proc)
        self.t_start = time.time()

    def wait_api(self, timeout=30):
        dl = time.time() + timeout
        while time.time() < dl:
            if self.proc.poll() is not None:
                return False
            _, body = http_get(self.soak.admin, "/readyz")
            if body.strip() == "ready" and os.path.exists(os.path.join(self.data, "admin.token")):
                if self.soak.ctl(self, ["version"], timeout=5).returncode == 0:
                    return True
            time.sleep(0.1)
        return False

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def token(self):
        with open(os.path.join(self.data, "admin.token")) as f:
            return f.read().strip()

    def log_tail(self, i=-1, n=60, grep=None):
        try:
            with open(self.logs[i]) as f:
                lines = f.readlines()
        except OSError:
            return ""
        if grep:
            lines = [line for line in lines if re.search(grep, line)]
        return "".join(lines[-n:])


# ---------------------------------------------------------------- the soak
class Soak:
    def __init__(self, args, build):
        self.tidald = os.path.join(build, "src", "daemon", "tidald")
        self.ctl_bin = os.path.join(build, "src", "cli", "tidalctl")
        sample = os.path.join(build, "examples", "tidal-sample-app")
        for path in (self.tidald, self.ctl_bin, sample):
            if not os.access(path, os.X_OK):
                sys.exit(f"crash_soak: {path} is missing (build tidald, tidalctl and tidal-sample-app first)")
        self.variant = args.variant
        self.storm_window = args.storm_window
        self.seed = args.seed
        api, gw, admin = free_ports(3)
        self.api, self.gw, self.admin = (f"127.0.0.1:{p}" for p in (api, gw, admin))
        self.port_range = "%d-%d" % free_port_range({api, gw, admin})
        own = own_cgroups()
        self.tidald_procs = []  # every tidald started (Popen)
        self.waiters = []  # every `tidalctl apply --wait` left running across a kill (Popen)
        self.work = tempfile.mkdtemp(prefix="tidal-crash-soak-")
        # Instances may run as nobody: they must reach stubborn.py and their dirs.
        os.chmod(self.work, 0o755)
        self.tag = os.path.basename(self.work)
        # Cgroup rounds give tidald a cgroup v2 root of this run's own (what --instance-cgroup auto
        # does, but not the shared <our cgroup>/tidal), so that cleanup can remove all of it.
        # tidald's cgroup v1 roots (limits; none here) are shared: only its probes go from them.
        self.cgroup_dir = os.path.join(own["cgroup2"], self.tag) if "cgroup2" in own else None
        self.v1_roots = [os.path.join(own[c], "tidal") for c in ("memory", "cpu") if c in own]
        self.log_file = open(os.path.join(self.work, "crash_soak.log"), "a", buffering=1)
        if self.variant == "stubborn":
            script = os.path.join(self.work, "stubborn.py")
            with open(script, "w") as f:
                f.write(STUBBORN_PY)
            os.chmod(script, 0o644)
            python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
            self.command, self.grace = [python, script], 4
        else:
            self.command, self.grace = [sample], 10

    def log(self, *a):
        s = time.strftime("%H:%M:%S ") + " ".join(str(x) for x in a)
        print(s, flush=True)
        self.log_file.write(s + "\n")

    def ctl(self, d, args, timeout=30, ctl_timeout="20s"):
        cmd = [self.ctl_bin, "--server", self.api, "--token", d.token(), "--timeout", ctl_timeout] + args
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            def text(b):
                return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
            return subprocess.CompletedProcess(cmd, 124, text(e.stdout), text(e.stderr) + " TIMEOUT")

    def app_yaml(self, name, rnd, replicas, gen, batches=True, extra_env=None):
        ro = "  rollout:\n    batches: 3\n    batchInterval: 2s\n" if batches else ""
        args = [] if self.variant == "stubborn" else ["--version", f"v{gen}"]
        env = {"THREADS": "2", TAG_VAR: self.tag, ROUND_VAR: str(rnd), "GEN": str(gen), **(extra_env or {})}
        return f"""apiVersion: tidal.dev/v1
kind: App
metadata:
  name: {name}
  namespace: default
  labels:
    app: {name}
spec:
  replicas: {replicas}
{ro}  template:
    command: {json.dumps(self.command)}
    args: {json.dumps(args)}
    env:
""" + "".join(f'      {k}: "{v}"\n' for k, v in env.items()) + f"""    readinessProbe:
      httpGet:
        path: /healthz
      periodSeconds: 1
    livenessProbe:
      httpGet:
        path: /healthz
      periodSeconds: 10
      failureThreshold: 3
    terminationGracePeriodSeconds: {self.grace}
"""

    # ------------------------------------------------------------ processes
    def my_instances(self):
        """Every live process carrying our tag (the instance leaders and anything they spawn)."""
        out = []
        for pid in pids():
            env = proc_env(pid)
            if not env or env.get(TAG_VAR) != self.tag:
                continue
            st, ppid = proc_stat(pid)
            out.append(dict(pid=pid, ppid=ppid, state=st, inst=env.get("TIDAL_INSTANCE"),
                            app=env.get("TIDAL_APP"), rev=env.get("TIDAL_REVISION"), port=env.get("PORT"),
                            round=env.get(ROUND_VAR), gen=env.get("GEN")))
        return out

    def stray_tidalds(self, datadir, current_pid):
        """tidald processes (forked pre-exec children or leftovers) on datadir other than current_pid."""
        out = []
        for pid in pids():
            c = proc_cmd(pid)
            if self.tidald in c and datadir in c and pid != current_pid:
                st, ppid = proc_stat(pid)
                if st and st != "Z":
                    out.append((pid, ppid, st, c[:120]))
        return out

    def kill_my_instances(self, wait=3.0):
        dl = time.time() + wait
        while True:
            alive = live(self.my_instances())
            if not alive:
                break
            for p in alive:
                try:
                    os.kill(p["pid"], signal.SIGKILL)
                except OSError:
                    pass
            if time.time() > dl:
                break
            time.sleep(0.2)

    def remove_cgroups(self, retry=3.0):
        """Removes this run's cgroup root with everything below it and our tidalds' probe cgroups
        in the v1 roots (rmdir: only what no process holds; killed ones may hold it a moment).
        Returns what is still there."""
        dirs = [os.path.join(root, f".probe-{p.pid}") for root in self.v1_roots for p in self.tidald_procs]
        if self.cgroup_dir:
            dirs += [path for path, _, _ in os.walk(self.cgroup_dir, topdown=False)]
        dl = time.time() + retry
        while True:
            busy = []
            for path in dirs:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    busy.append(path)
            if not busy or time.time() >= dl:
                return busy
            dirs = busy
            time.sleep(0.2)

    def cleanup(self):
        """Kills every tidald, `apply --wait` and instance process of this run, removes its cgroups."""
        for p in self.tidald_procs + self.waiters:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid, _, _, _ in self.stray_tidalds(self.work, None):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.kill_my_instances()
        busy = self.remove_cgroups()
        if busy:
            self.log(f"note: could not remove cgroups: {busy}")

    # ------------------------------------------------------------ API reads
    def get_apps(self, d):
        r = self.ctl(d, ["get", "apps", "-o", "json"], timeout=15)
        if r.returncode != 0:
            return None, (r.stdout + r.stderr).strip()
        try:
            return {a["metadata"]["name"]: a for a in json.loads(r.stdout).get("items", [])}, r.stdout
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return None, f"parse error {e}: {r.stdout[:500]}"

    def get_instances(self, d):
        r = self.ctl(d, ["get", "instances", "-o", "json"], timeout=15)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout).get("items", [])
        except (ValueError, AttributeError):
            return None

    def gateway(self, host):
        code, body = http_get(self.gw, "/", host=host, timeout=5)
        return str(code), body.strip()[:200]

    # ------------------------------------------------------------ a round
    def run_round(self, rnd):
        rdir = os.path.join(self.work, "rounds", f"r{rnd:02d}")
        os.makedirs(rdir)
        rng = random.Random(f"{self.seed}:{rnd}")
        mode = "cgroup" if rnd % 2 == 0 else "off"
        double_kill = rnd % 3 == 2
        v2 = ["good", "slow", "bad"][rnd % 3] if rnd % 4 else "good"
        info = {"mode": mode, "v2": v2, "kills": 0}
        d = Daemon(self, rdir, (self.cgroup_dir or "auto") if mode == "cgroup" else "off")
        violations = []
        burst, stubborn, storm = (self.variant == v for v in ("burst", "stubborn", "storm"))

        def V(kind, msg):
            violations.append((kind, msg))
            self.log(f"  VIOLATION[{kind}] r{rnd}: {msg}")

        v2env = {"good": {}, "slow": {"STARTUP_DELAY": "800ms"}, "bad": {"EXIT_AT_START": "3"}}[v2]
        files = {}
        for name, reps, gen, b in [("hello", 3, 1, True), ("other", 2, 1, False),
                                   ("hello2", 3, 2, True), ("extra", 1, 1, False)]:
            fn = os.path.join(rdir, f"{name}-g{gen}.yaml")
            with open(fn, "w") as f:
                f.write(self.app_yaml("hello" if name == "hello2" else name, rnd, reps, gen, b,
                                      v2env if name == "hello2" else None))
            files[name] = fn

        def abandon():
            d.kill9()
            self.kill_my_instances()
            self.remove_cgroups()

        d.start()
        if not d.wait_api():
            self.log(f"r{rnd}: tidald did not come up\n{d.log_tail()}")
            abandon()
            return [("setup", "tidald did not start")], info
        r = self.ctl(d, ["apply", "-f", files["hello"], "-f", files["other"], "--wait"], timeout=70, ctl_timeout="60s")
        if r.returncode != 0:
            self.log(f"r{rnd}: initial apply failed rc={r.returncode} {r.stdout} {r.stderr}")
        # baseline
        time.sleep(0.3)
        base = live(self.my_instances())
        cnt = {a: sum(1 for p in base if p["app"] == a) for a in ("hello", "other")}
        if cnt != {"hello": 3, "other": 2}:
            self.log(f"r{rnd}: baseline odd {cnt}; skipping round")
            abandon()
            return [("setup", f"baseline {cnt}")], info

        # ---- activity
        if storm:
            scale_to = rng.choice([20, 25])
            actions = [("scale", ["scale", "hello", "--replicas", str(scale_to)])]
            gaps = [0.0]
            kill_at = rng.uniform(*self.storm_window)
        else:
            scale_to = rng.choice([12, 15]) if burst else rng.choice([2, 4, 5])
            actions = [("apply-v2", ["apply", "-f", files["hello2"]] + (["--wait"] if burst else [])),
                       ("scale", ["scale", "hello", "--replicas", str(scale_to)]),
                       ("delete-other", ["delete", "app", "other"]),
                       ("apply-extra", ["apply", "-f", files["extra"]])]
            first, rest = actions[0], actions[1:]
            rng.shuffle(rest)
            actions = [first] + rest if rng.random() < 0.6 else rest[:1] + [first] + rest[1:]
            gaps = [rng.uniform(0.0, 0.6) for _ in actions]
            kill_at = rng.uniform(0.0, 1.5) if burst else rng.uniform(0.3, 5.0) if stubborn else rng.uniform(0.0, 3.0)
        killed = threading.Event()
        results = []  # (name, t_start, t_end, rc, out)
        waiter = {}  # the `apply --wait` that outlives the kill: its lines with times
        t0 = time.time()

        def actor():
            for (name, args), gap in zip(actions, gaps):
                time.sleep(gap)
                if killed.is_set():
                    results.append((name, None, None, None, "not started (tidald killed)"))
                    continue
                ts = time.time() - t0
                if "--wait" in args:
                    cmd = [self.ctl_bin, "--server", self.api, "--token", d.token(), "--timeout", "90s"] + args
                    pp = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    self.waiters.append(pp)
                    waiter.update(proc=pp, lines=[], ts=ts)

                    def reader():
                        for line in pp.stdout:
                            waiter["lines"].append((time.time() - t0, line.rstrip()))
                    waiter["thread"] = threading.Thread(target=reader, daemon=True)
                    waiter["thread"].start()
                    # the ack line ("configured") or an error decides what counts as sent
                    dl_ack = time.time() + 5
                    while time.time() < dl_ack and not waiter["lines"] and pp.poll() is None:
                        time.sleep(0.005)
                    first_line = waiter["lines"][0] if waiter["lines"] else (time.time() - t0, "(no output yet)")
                    rc_ack = 0 if "configured" in first_line[1] else (pp.poll() if pp.poll() is not None else -1)
                    results.append((name, ts, first_line[0], rc_ack, "(apply --wait, first line) " + first_line[1]))
                    continue
                rr = self.ctl(d, args, timeout=25)
                te = time.time() - t0
                results.append((name, ts, te, rr.returncode,
                                (rr.stdout + rr.stderr).strip().replace("\n", " | ")[:300]))

        th = threading.Thread(target=actor, daemon=True)
        th.start()
        time.sleep(max(0.0, kill_at - (time.time() - t0)))
        d.kill9()
        killed.set()
        info["kills"] += 1
        t_kill = time.time() - t0
        info["kill"] = round(t_kill, 3)
        at_kill = live(self.my_instances())
        th.join()
        self.log(f"r{rnd} mode={mode} v2={v2} kill at {t_kill:.3f}s (planned {kill_at:.3f}); "
                 f"scale_to={scale_to} double_kill={double_kill}")
        for name, ts, te, rc, out in results:
            if ts is None:
                self.log(f"    {name}: {out}")
            else:
                self.log(f"    {name}: {ts:.3f}-{te:.3f}s rc={rc} "
                         f"{'(before kill)' if te < t_kill else '(in flight at kill)'} {out[:160]}")
        self.log(f"  processes right after kill:\n{fmt_procs(at_kill)}")

        if double_kill:
            d.start()
            wait2 = rng.uniform(0.0, 1.5)
            time.sleep(wait2)
            d.kill9()
            info["kills"] += 1
            info["second"] = round(wait2, 3)
            ps2 = live(self.my_instances())
            self.log(f"  second kill {wait2:.3f}s after restart #1; processes:\n{fmt_procs(ps2)}")

        # ---- restart
        d.start()
        if not d.wait_api(40):
            V("restart", f"tidald did not come back up:\n{d.log_tail()}")
            abandon()
            return violations, info

        # what must hold
        def outcome(name):
            for n, ts, te, rc, _ in results:
                if n == name:
                    if ts is None:
                        return "not-started"
                    if rc == 0 and te < t_kill:
                        return "acked"
                    if rc == 0:
                        return "acked-late"  # cannot happen (tidald dead), flagged below
                    return "failed-or-inflight"
            return "not-started"

        oc = {n: outcome(n) for n in ("apply-v2", "scale", "delete-other", "apply-extra")}
        for n, o in oc.items():
            if o == "acked-late":
                V("sanity", f"{n} returned 0 after the kill")

        # ---- settle (poll)
        dl = time.time() + SETTLE_DEADLINE
        settled = False
        polls = 0
        why = ["no answer from the API"]
        while time.time() < dl:
            polls += 1
            apps, raw = self.get_apps(d)
            insts = self.get_instances(d)
            ps = live(self.my_instances())
            if apps is None or insts is None:
                why = [f"get apps: {raw[:200]}" if apps is None else "get instances failed"]
                time.sleep(0.5)
                continue
            ok = True
            why = []
            for name, a in apps.items():
                st = a.get("status", {})
                spec_rep = a["spec"].get("replicas")
                ro = st.get("rollout", {})
                n_proc = sum(1 for p in ps if p["app"] == name)
                n_inst = sum(1 for i in insts if i.get("app") == name)
                if a["metadata"].get("deletionTimestamp"):
                    ok = False
                    why.append(f"{name} deleting")
                    continue
                if st.get("observedGeneration") != a["metadata"].get("generation"):
                    ok = False
                    why.append(f"{name} gen")
                if ro.get("phase") not in ("Succeeded", "RolledBack", "Failed"):
                    ok = False
                    why.append(f"{name} rollout {ro.get('phase')}")
                if not (st.get("readyReplicas") == st.get("desiredReplicas") == spec_rep == n_proc == n_inst):
                    ok = False
                    why.append(f"{name} ready={st.get('readyReplicas')} desired={st.get('desiredReplicas')} "
                               f"spec={spec_rep} procs={n_proc} inst={n_inst}")
            for p in ps:
                if p["app"] not in apps:
                    ok = False
                    why.append(f"proc of absent app {p['app']}")
            if oc["delete-other"] == "acked" and "other" in apps:
                ok = False
                why.append("other still present")
            if ok:
                settled = True
                break
            time.sleep(0.5)
        if not settled:
            V("settle", f"not settled {SETTLE_DEADLINE:.0f}s after restart; last reasons: {why}")
        else:
            self.log(f"  settled {time.time() - d.t_start:.1f}s after restart ({polls} polls)")
        # re-check after a pause, to see late doubling/stops
        time.sleep(3.0)
        apps, raw = self.get_apps(d)
        insts = self.get_instances(d) or []
        ps_all = self.my_instances()
        ps = live(ps_all)
        if apps is None:
            V("api", f"get apps failed: {raw}")
            apps = {}

        # I1: applied specs survive
        hello = apps.get("hello")
        if hello is None:
            V("spec-lost", "app hello is gone")
        else:
            gen = hello["spec"]["template"].get("env", {}).get("GEN")
            if oc["apply-v2"] == "acked" and gen != "2":
                V("spec-lost", f"apply of GEN=2 acknowledged before the kill, but hello has GEN={gen}")
            if oc["apply-v2"] == "not-started" and gen != "1":
                V("spec-phantom", f"apply of GEN=2 never sent, but hello has GEN={gen}")
            reps = hello["spec"].get("replicas")
            if oc["scale"] == "acked" and reps != scale_to:
                V("spec-lost", f"scale to {scale_to} acknowledged before the kill, but hello.spec.replicas={reps}")
            if oc["scale"] == "not-started" and reps != 3:
                V("spec-phantom", f"scale never sent, but hello.spec.replicas={reps}")
            if oc["scale"] == "failed-or-inflight" and reps not in (3, scale_to):
                V("spec-odd", f"hello.spec.replicas={reps} (expected 3 or {scale_to})")
        if oc["delete-other"] == "acked" and "other" in apps:
            V("delete-lost", "delete of other acknowledged before the kill, other still listed: "
              + json.dumps(apps["other"].get("metadata")))
        if oc["delete-other"] == "not-started" and "other" not in apps:
            V("spec-lost", "other vanished though its delete was never sent")
        if oc["apply-extra"] == "acked" and "extra" not in apps:
            V("spec-lost", "apply of extra acknowledged before the kill, extra missing")
        if oc["apply-extra"] == "not-started" and "extra" in apps:
            V("spec-phantom", "extra exists though never applied")

        # I2/I3/I4: processes
        by_app = {}
        for p in ps:
            by_app.setdefault(p["app"], []).append(p)
        for name, a in apps.items():
            want = a["spec"].get("replicas")
            got = len(by_app.get(name, []))
            if got != want:
                status = {k: a.get("status", {}).get(k) for k in ("desiredReplicas", "currentReplicas", "readyReplicas")}
                V("count", f"app {name}: {got} live instance processes, spec.replicas={want}, status={json.dumps(status)}")
        for name, lst in by_app.items():
            if name not in apps:
                V("orphan", f"{len(lst)} processes of app {name}, which is not in the store:\n{fmt_procs(lst)}")
        for p in ps:
            if p["round"] != str(rnd):
                V("orphan", f"process from round {p['round']} alive: pid {p['pid']}")
        ids = {}
        ports = {}
        for p in ps:
            ids.setdefault(p["inst"], []).append(p)
            ports.setdefault(p["port"], []).append(p)
        for k, lst in ids.items():
            if len(lst) > 1:
                V("double", f"instance {k} has {len(lst)} live processes:\n{fmt_procs(lst)}")
        for k, lst in ports.items():
            if len(lst) > 1:
                V("double", f"port {k} held by {len(lst)} processes:\n{fmt_procs(lst)}")
        # tidald's own view vs processes
        known = {(i.get("id"), str(i.get("pid"))) for i in insts}
        known_ids = {i.get("id") for i in insts}
        for p in ps:
            if p["inst"] not in known_ids:
                V("orphan", f"process pid {p['pid']} ({p['inst']}) not known to tidald (get instances)")
            elif (p["inst"], str(p["pid"])) not in known:
                V("mismatch", f"process pid {p['pid']} ({p['inst']}) known to tidald under another pid")
        live_pids = {str(p["pid"]) for p in ps}
        for i in insts:
            if str(i.get("pid")) not in live_pids:
                V("ghost", f"tidald lists instance {i.get('id')} pid {i.get('pid')} phase {i.get('phase')} "
                  "with no live process")
        zombies = [p for p in ps_all if p["state"] == "Z"]
        if zombies:
            self.log(f"  note: {len(zombies)} zombie(s) of ours: {[(z['pid'], z['ppid']) for z in zombies]}")
        strays = self.stray_tidalds(d.data, d.proc.pid)
        if strays:
            V("stray-tidald", f"other tidald processes on our data dir: {strays}")

        # I5: rollout
        if hello is not None:
            ro = hello.get("status", {}).get("rollout", {})
            phase = ro.get("phase")
            revs = sorted({p["rev"] for p in by_app.get("hello", [])})
            gens = sorted({p["gen"] for p in by_app.get("hello", [])})
            if phase not in ("Succeeded", "RolledBack"):
                V("rollout", f"hello rollout phase {phase}: {json.dumps(ro)}")
            if len(revs) > 1:
                V("rollout", f"hello runs several revisions after settling: {revs}")
            spec_gen = hello["spec"]["template"].get("env", {}).get("GEN")
            if phase == "Succeeded" and gens and gens != [spec_gen]:
                V("rollout", f"rollout Succeeded but processes run GEN {gens}, spec GEN {spec_gen}")
            if phase == "RolledBack" and revs and revs != [str(ro.get("stableRevision"))]:
                V("rollout", f"rollout RolledBack but processes run revisions {revs}, stable {ro.get('stableRevision')}")
            if v2 == "bad" and "2" in gens:
                V("rollout", f"bad revision (EXIT_AT_START) still runs after settling: gens {gens}")
            if v2 != "bad" and phase == "RolledBack":
                self.log(f"  note: good revision rolled back: {json.dumps(ro)}")
            hist = self.ctl(d, ["rollout", "history", "hello"]).stdout.strip().replace("\n", " | ")
            self.log(f"  hello: phase={phase} stable={ro.get('stableRevision')} spec GEN={spec_gen} procs revs={revs} "
                     f"gens={gens} replicas={hello['spec'].get('replicas')} history: {hist}")

        # I6: gateway
        for name in apps:
            code, body = self.gateway(f"{name}.default.tidal.localhost")
            if code != "200":
                V("gateway", f"{name}: HTTP {code} {body}")
        if waiter:
            try:
                wrc = waiter["proc"].wait(timeout=60)
            except subprocess.TimeoutExpired:
                wrc = None
                waiter["proc"].kill()
                waiter["proc"].wait()
            waiter["thread"].join(2)
            wl = " | ".join(f"{t:.2f}s {line}" for t, line in waiter["lines"])[:900]
            self.log(f"  apply --wait (sent {waiter['ts']:.3f}s) exit {wrc}: {wl}")
            ph = (hello or {}).get("status", {}).get("rollout", {}).get("phase")
            if wrc is None:
                V("wait", f"apply --wait did not return 60 s after settling: {wl}")
            elif oc["apply-v2"] == "acked" and not ((wrc == 0 and ph == "Succeeded") or (wrc == 1 and ph == "RolledBack")):
                V("wait", f"apply --wait exit {wrc} but the rollout ended {ph}: {wl}")
        self.log(f"  final: apps={sorted(apps)} procs={ {k: len(v) for k, v in by_app.items()} } outcomes={oc}")
        self.log("  adoption: " + " / ".join(line.strip()[24:] for i in range(len(d.logs))
                                             for line in d.log_tail(i, 5, r"adoption done").splitlines()))

        if violations:
            self.log(f"  --- evidence r{rnd} ---")
            self.log(f"  processes now:\n{fmt_procs(ps)}")
            self.log("  get apps:\n" + self.ctl(d, ["get", "apps"]).stdout)
            self.log("  get instances:\n" + self.ctl(d, ["get", "instances"]).stdout)
            self.log("  describe hello:\n" + self.ctl(d, ["describe", "app", "hello"]).stdout)
            for i, path in enumerate(d.logs):
                self.log(f"  tidald log #{i + 1} ({path}):\n" + d.log_tail(i, 80))

        # ---- cleanup
        d.kill9()
        self.kill_my_instances()
        busy = self.remove_cgroups()
        if busy:
            self.log(f"  note: could not remove cgroups: {busy}")
        if not violations:
            shutil.rmtree(d.data, ignore_errors=True)
        return violations, info

    # ------------------------------------------------------------ all rounds
    def run(self, first, n):
        """Runs the rounds; returns [(round, info, violations)]."""
        self.log(f"crash soak: variant={self.variant} seed={self.seed} rounds {first}-{first + n - 1} "
                 f"work dir {self.work}")
        self.log(f"  tidald {self.tidald} (built {time.ctime(os.path.getmtime(self.tidald))}), "
                 f"tidalctl built {time.ctime(os.path.getmtime(self.ctl_bin))}")
        self.log(f"  api {self.api} gateway {self.gw} admin {self.admin} instance ports {self.port_range} "
                 f"cgroup root {self.cgroup_dir} tag {TAG_VAR}={self.tag}")
        summary = []
        for rnd in range(first, first + n):
            self.log(f"===== round {rnd} =====")
            try:
                v, info = self.run_round(rnd)
            except Exception as e:
                self.log(f"round {rnd} crashed in the script: {traceback.format_exc()}")
                v, info = [("script", str(e))], {}
                for p in self.tidald_procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                self.kill_my_instances()
                self.remove_cgroups()
            summary.append((rnd, info, v))
        return summary


def default_build():
    for name in ("build", "build-clang"):
        d = os.path.join(REPO, name)
        if os.path.isfile(os.path.join(d, "src", "daemon", "tidald")):
            return d
    return None


def storm_window(text):
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI in seconds, got {text!r}")
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI, got {text!r}")
    return lo, hi


def positive_int(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return n


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description="Crash-safety soak test of tidald (kill -9, restart, check invariants).",
                                 epilog="See the module docstring for what each round does and checks.")
    ap.add_argument("--build", metavar="DIR",
                    help="build directory with src/daemon/tidald, src/cli/tidalctl, examples/tidal-sample-app "
                         "(default: the first of build, build-clang under the repository root that has tidald)")
    ap.add_argument("--rounds", type=positive_int, default=10, metavar="N", help="rounds to run (default 10)")
    ap.add_argument("--first-round", type=positive_int, default=1, metavar="N",
                    help="number of the first round; a round's number picks its cgroup mode, double kill and "
                         "GEN=2 kind (default 1)")
    ap.add_argument("--variant", choices=("base", "burst", "stubborn", "storm"), default="base",
                    help="activity around the kill (default base)")
    ap.add_argument("--storm-window", type=storm_window, metavar="LO,HI",
                    help="storm: kill between LO and HI seconds after the scale is sent (default 0.01,0.25)")
    ap.add_argument("--seed", type=int, help="seed of the rounds' random plans (default: random, printed)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.storm_window is not None and args.variant != "storm":
        ap.error("--storm-window goes with --variant storm")
    if args.storm_window is None:
        args.storm_window = (0.01, 0.25)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    build = os.path.abspath(args.build) if args.build else default_build()
    if build is None:
        ap.error("no build/ or build-clang/ with src/daemon/tidald under the repository root; give --build")

    soak = Soak(args, build)
    signal.signal(signal.SIGTERM, raise_interrupt)
    summary = []
    interrupted = False
    try:
        summary = soak.run(args.first_round, args.rounds)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if interrupted:
            soak.log("interrupted; cleaning up")
        soak.cleanup()

    soak.log("===== SUMMARY =====")
    failed = [rnd for rnd, _, v in summary if v]
    for rnd, info, v in summary:
        soak.log(f"r{rnd}: {info} violations={len(v)} {[k for k, _ in v]}")
    kills = sum(info.get("kills", 0) for _, info, _ in summary)
    total = sum(len(v) for _, _, v in summary)
    ok = not failed and not interrupted
    if failed:
        window = " --storm-window %g,%g" % args.storm_window if args.variant == "storm" else ""
        soak.log(f"failed rounds: {failed}; logs in {soak.work} (crash_soak.log, rounds/rNN/tidald-*.log); "
                 f"replay one with --variant {args.variant}{window} --seed {args.seed} --first-round R --rounds 1")
    elif args.keep:
        soak.log(f"work dir kept: {soak.work}")
    soak.log(f"crash soak {'PASS' if ok else 'FAIL'}: {len(summary)} rounds, {kills} kills, {total} violations "
             f"(variant {args.variant}, seed {args.seed}{', interrupted' if interrupted else ''})")
    soak.log_file.close()
    if not (failed or args.keep):
        shutil.rmtree(soak.work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
