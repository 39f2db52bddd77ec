"""The fault nemesis: one long run on a small cluster while random faults hit it, checked at
the receiving server afterwards. Part of scripts/nemesis.py; see docs/FAILURES.md.

The cluster: a redis-server with AOF (appendfsync always by default), two supervisors,
3 to 5 workers that reach Redis through scripts/delay-proxy.py (so latency can be added to
their link), and `j4 sink --access-log`. The run: an arrival-rate hold, drawn at random from --seed
(rate, tick, shards), long enough for the faults. Every 5 to 10 s one fault from FAULTS.
"""

import bisect
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

from .processes import HarnessError, Procs, read_text, wait_for
from .case import read_access_log

FAULTS = ["worker-kill", "worker-restart-same-id", "worker-stop", "worker-term", "supervisor-kill", "supervisor-term",
          "redis-kill", "client-pause", "scale", "latency"]
TICKS_MS = [200, 300, 500, 700, 1000]
TTL_S = 3
# A fault's budget is what the protocol allows: a lease runs out at most TTL after its last
# renewal; another worker hears of it with its next claim reply, within a tick (all workers
# claim at the same point of a tick, so with a TTL that is a whole number of ticks the lease
# may run out just after a claim); it takes the lease and claims the next tick, whose load
# starts the claim lead (3/4 of a tick, at most 200 ms) later; and the measurement adds up to
# the windows' step, 0.1 s. The takeover's round trips are not in it, and a debug build of
# five workers on a loaded 2-core machine can be scheduled late. So the check fails a run
# when one recovery is over its budget by more than SLACK_ONE_S, or two or more by more
# than SLACK_S: noise makes one fault late, a regression (a takeover that waits a lease cycle
# more, say) makes them all late.
SLACK_S = 0.5
SLACK_ONE_S = 1.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nemesis:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.j4 = os.path.abspath(args.j4)
        self.procs = Procs()
        self.dir = tempfile.mkdtemp(prefix="j4-nemesis-")
        self.faults = []       # dicts: kind, what, at (unix s), end (unix s), budget_s, recovered_s
        self.failures = []     # (invariant, details)
        self.expected_exit = set()  # processes the nemesis ended itself, by pid
        self.memory = []       # (unix s, used_memory bytes)
        self.delay_file = os.path.join(self.dir, "delay-ms")
        self.worker_serial = 0
        # The run, drawn at random from --seed.
        self.rate = self.rng.choice([50, 80, 100, 120, 150, 200]) if args.rate is None else args.rate
        self.tick_ms = self.rng.choice(TICKS_MS)
        self.shards = self.rng.randint(5, 16)
        self.workers_wanted = self.rng.randint(3, 5)
        self.duration_s = int(args.minutes * 60)

    # --- processes --------------------------------------------------------------------

    def log(self, name):
        return os.path.join(self.dir, name)

    def cli(self, *args, timeout=10):
        r = subprocess.run(["redis-cli", "-p", str(self.redis_port)] + list(args), capture_output=True, text=True, timeout=timeout)
        return r.stdout.strip() if r.returncode == 0 else None

    def start_redis(self):
        self.redis = self.procs.start(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", self.args.fsync, "--maxmemory-policy", "noeviction",
             "--dir", self.dir], self.log("redis.log"))
        wait_for("redis-server to answer PING", lambda: self.cli("PING") == "PONG", 30)

    def start_worker(self, wid=None):
        if wid is None:
            wid = f"w{self.worker_serial}"
            self.worker_serial += 1
        p = self.procs.start([self.j4, "worker", "--id", wid, "--redis", f"redis://127.0.0.1:{self.proxy_port}", "--log-level", "info"],
                             self.log(f"worker-{wid}.log"))
        p.j4_id = wid
        self.workers.append(p)
        return p

    def start_supervisor(self, sid):
        p = self.procs.start([self.j4, "supervisor", "--id", sid, "--redis", self.redis_url, "--log-level", "info", "--detail", self.args.detail],
                             self.log(f"supervisor-{sid}.log"))
        p.j4_id = sid
        self.supervisors.append(p)
        return p

    def end(self, p, sig):
        """Sends `sig` to a process the nemesis means to end; it is not counted as a crash."""
        self.expected_exit.add(p.pid)
        os.killpg(p.pid, sig)

    def setup(self):
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"
        self.start_redis()
        with open(self.delay_file, "w") as f:
            f.write("0\n")
        proxy = self.procs.start([sys.executable, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "delay-proxy.py"),
                                  "0", f"127.0.0.1:{self.redis_port}", "0"], self.log("proxy.log"),
                                 env=dict(os.environ, DELAY_FILE=self.delay_file))
        self.proxy = proxy
        self.proxy_port = int(wait_for("the delay proxy to listen", lambda: self.listening(self.log("proxy.log"), "listening on 127.0.0.1:"), 30))
        self.sink = self.procs.start([self.j4, "sink", "--port", "0", "--latency", "20ms", "--access-log", self.log("access.log")],
                                     self.log("sink.log"))
        sink_port = int(wait_for("j4 sink to listen", lambda: self.listening(self.log("sink.log"), "listening on http://127.0.0.1:"), 60))
        self.supervisors, self.workers = [], []
        for sid in ("s0", "s1"):
            self.start_supervisor(sid)
        for _ in range(self.workers_wanted):
            self.start_worker()
        wait_for("a supervisor to lead", lambda: (self.cli("GET", "j4:leader") or "").split("|")[0] in ("s0", "s1"), 60)
        definition = self.log("definition.yaml")
        with open(definition, "w") as f:
            f.write(f"name: nemesis-{self.args.seed}\nscenario: http\nmodel: arrival-rate\nstart: {self.rate}\n"
                    f"stages:\n  - {{ duration: {self.duration_s}s, target: {self.rate} }}\n"
                    f"tick: {self.tick_ms}ms\nshards: {self.shards}\nleaseTTL: {TTL_S}s\n"
                    f"params:\n  request: {{ url: \"http://127.0.0.1:{sink_port}/nemesis\" }}\n  timeout: 10s\n")
        self.run_id = f"nemesis-{self.args.seed}"
        r = subprocess.run([self.j4, "submit", definition, "--id", self.run_id, "--redis", self.redis_url], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise HarnessError(f"j4 submit exited {r.returncode}: {r.stderr.strip()}")
        self.keys = f"j4:{{r:{self.run_id}}}"
        self.start_ms = int(wait_for("the run to start", lambda: int(self.cli("HGET", f"{self.keys}:ctl", "start_ms") or 0), 60))

    @staticmethod
    def listening(path, marker):
        text = read_text(path)
        i = text.find(marker)
        if i < 0:
            return None
        digits = "".join(ch for ch in text[i + len(marker):i + len(marker) + 6] if ch.isdigit())
        return digits or None

    # --- faults -----------------------------------------------------------------------

    def inject(self, kind):
        """Does one fault; returns (what, end unix s, budget s measured from the end)."""
        rng, budget = self.rng, TTL_S + self.tick_ms / 1000 + min(0.75 * self.tick_ms, 200) / 1000 + 0.1
        live = [p for p in self.workers if p.poll() is None and p.pid not in self.expected_exit]
        if kind in ("worker-kill", "worker-restart-same-id", "worker-term", "worker-stop") and not live:
            kind = "scale"
        if kind == "worker-kill":
            p = rng.choice(live)
            self.end(p, signal.SIGKILL)
            p.wait()
            q = self.start_worker()
            return f"SIGKILL {p.j4_id}, {q.j4_id} joins", time.time(), budget
        if kind == "worker-restart-same-id":
            p = rng.choice(live)
            self.end(p, signal.SIGKILL)
            p.wait()
            self.start_worker(p.j4_id)
            return f"SIGKILL {p.j4_id}, restarted under its own id", time.time(), budget
        if kind == "worker-stop":
            p, pause = rng.choice(live), rng.uniform(0.5, 2 * TTL_S)
            os.killpg(p.pid, signal.SIGSTOP)
            began = time.time()
            time.sleep(pause)
            os.killpg(p.pid, signal.SIGCONT)
            return f"SIGSTOP {p.j4_id} for {pause:.1f} s", began, budget
        if kind == "worker-term":
            p = rng.choice(live)
            self.end(p, signal.SIGTERM)
            self.leaving.append(p)
            q = self.start_worker()
            return f"SIGTERM {p.j4_id}, {q.j4_id} joins", time.time(), budget
        if kind in ("supervisor-kill", "supervisor-term"):
            leader = (self.cli("GET", "j4:leader") or "").split("|")[0]
            p = next((s for s in self.supervisors if s.j4_id == leader and s.poll() is None), None)
            if p is None:
                return "no supervisor leads: nothing done", time.time(), budget
            sig = signal.SIGKILL if kind == "supervisor-kill" else signal.SIGTERM
            self.end(p, sig)
            p.wait(timeout=60)
            if sig == signal.SIGTERM and p.returncode != 0:
                self.fail("no J4 process crashed", f"supervisor {p.j4_id} exited {p.returncode} on SIGTERM")
            self.supervisors.remove(p)
            self.start_supervisor(p.j4_id)
            return f"{'SIGKILL' if kind == 'supervisor-kill' else 'SIGTERM'} leading supervisor {p.j4_id}, restarted", time.time(), budget
        if kind == "redis-kill":
            down = rng.uniform(0.1, 1.5)
            self.end(self.redis, signal.SIGKILL)
            self.redis.wait()
            time.sleep(down)
            self.start_redis()
            # Back: reconnects (backoff up to 1 s), then the barrier: two ticks after the first claim.
            return f"SIGKILL redis-server, restarted from its AOF after {down:.1f} s", time.time(), budget + 1 + 2 * self.tick_ms / 1000
        if kind == "client-pause":
            pause = rng.randint(300, 2000)
            self.cli("CLIENT", "PAUSE", str(pause), "WRITE")
            began = time.time()
            return f"CLIENT PAUSE {pause} ms WRITE", began + pause / 1000, budget
        if kind == "scale":
            target = rng.choice([r for r in (self.rate // 2, self.rate * 3 // 4, self.rate, self.rate * 5 // 4) if r != self.current_rate()] or [self.rate])
            r = subprocess.run([self.j4, "scale", self.run_id, "--target", str(target), "--redis", self.redis_url], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                self.fail("j4 scale accepted", f"exit {r.returncode}: {r.stderr.strip()}")
            return f"j4 scale to {target}/s", time.time(), budget + 2 * self.tick_ms / 1000
        if kind == "latency":
            ms, hold = rng.choice([10, 20, 40, 60]), rng.uniform(2, 6)
            with open(self.delay_file, "w") as f:
                f.write(f"{ms}\n")
            began = time.time()
            time.sleep(hold)
            with open(self.delay_file, "w") as f:
                f.write("0\n")
            return f"{ms} ms each way on the workers' link to Redis for {hold:.1f} s", began, budget
        raise ValueError(kind)

    def current_rate(self):
        return self.scaled[-1][1] if self.scaled else self.rate

    # --- the run ----------------------------------------------------------------------

    def watch_processes(self):
        for p in self.workers + self.supervisors + [self.sink, self.proxy] + ([self.redis] if self.redis else []):
            if p.poll() is not None and p.pid not in self.expected_exit:
                self.fail("no J4 process crashed", f"{os.path.basename(p.log_path)} exited {p.returncode} on its own")
                self.expected_exit.add(p.pid)
        for p in list(self.leaving):
            if p.poll() is not None:
                self.leaving.remove(p)
                if p.returncode != 0:
                    self.fail("no J4 process crashed", f"{os.path.basename(p.log_path)} exited {p.returncode} after SIGTERM (expected 0)")

    def sample_memory(self):
        info = self.cli("INFO", "memory") or ""
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                self.memory.append((time.time(), int(line.split(":")[1])))

    def sample_plan(self):
        """The plan as it stands. The supervisors fold ticks older than --detail (their plan
        fields go), so the plan is read during the run: a tick's value, once it is frozen
        (the current and the next tick), never changes, and later reads replace earlier ones."""
        plan = json.loads(self.cli("--json", "HGETALL", f"{self.keys}:plan", timeout=30) or "{}")
        self.plan.update({int(k): int(v) for k, v in plan.items()})

    def drive(self):
        self.leaving, self.scaled = [], []
        self.plan, last_plan = {}, 0.0
        began = self.start_ms / 1000
        quiet_end = began + self.duration_s - 12  # no fault in the last 12 s: the last recovery is measured
        next_fault = began + 5
        while time.time() < began + self.duration_s + 2 * self.tick_ms / 1000 + 1:
            now = time.time()
            if now >= next_fault and now < quiet_end:
                kind = self.rng.choice(self.args.faults)
                at = time.time()
                what, end, budget = self.inject(kind)
                if kind == "scale" and what.startswith("j4 scale to "):
                    self.scaled.append((at, int(what.split()[3].rstrip("/s"))))
                fault = {"kind": kind, "what": what, "at": at, "end": end, "budget_s": budget}
                self.faults.append(fault)
                print(f"nemesis: {at - began:7.1f} s  {what}", flush=True)
                # Not before this one can have recovered, with a window to show it, whatever its budget.
                next_fault = max(time.time() + self.rng.uniform(5, 10), end + budget + SLACK_ONE_S + 2)
            self.watch_processes()
            if not self.memory or now - self.memory[-1][0] >= 1:
                self.sample_memory()
            if now - last_plan >= 5:
                self.sample_plan()
                last_plan = now
            time.sleep(0.2)
        r = subprocess.run([self.j4, "wait", self.run_id, "--json", "--timeout", "60s", "--redis", self.redis_url], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise HarnessError(f"j4 wait exited {r.returncode}: {r.stderr.strip()}")
        # The supervisor folds the run one last time after it ends, then takes it out of the
        # active set: the checks read the ticks once nothing moves them any more.
        deadline = time.time() + 30
        while self.cli("SISMEMBER", "j4:active", self.run_id) != "0" and time.time() < deadline:
            time.sleep(0.2)
        # Every J4 process leaves with SIGTERM and must exit 0.
        for p in self.workers + self.supervisors + [self.sink]:
            if p.poll() is None:
                self.expected_exit.add(p.pid)
                if not self.procs.stop(p, 60):
                    self.fail("no J4 process crashed", f"{os.path.basename(p.log_path)} did not exit within 60 s of SIGTERM")
                elif p.returncode != 0:
                    self.fail("no J4 process crashed", f"{os.path.basename(p.log_path)} exited {p.returncode} on SIGTERM")
        self.watch_processes()
        self.sample_memory()

    # --- checks -----------------------------------------------------------------------

    def fail(self, invariant, details):
        self.failures.append((invariant, details))

    def check(self):
        reqs = [q for q in read_access_log(self.log("access.log")) if q["run"] == self.run_id]
        self.served = len(reqs)
        ticks = json.loads(self.cli("--json", "HGETALL", f"{self.keys}:ticks", timeout=30) or "{}")
        self.sample_plan()
        th = {k: int(v) for k, v in ticks.items()}
        ctl = self.cli("HGET", f"{self.keys}:ctl", "compacted_tick")
        self.compacted = int(ctl) if ctl and ctl.strip().isdigit() else 0
        # No iteration arrives twice.
        seen = Counter(q["iteration"] for q in reqs)
        twice = sorted((int(g) for g, k in seen.items() if k > 1))
        self.twice = len(twice)
        if twice:
            self.fail("no iteration arrives twice", f"{len(twice)} iteration numbers arrived more than once, e.g. {twice[:10]}")
        # Per tick: granted == started + dropped + lost, lost >= 0; the server saw at least the
        # started ones and at most those plus the lost ones (sent by a worker killed before it reported).
        served = Counter(int(q["tick"]) for q in reqs)
        ticks_n = -(-self.duration_s * 1000 // self.tick_ms)
        bad, self.lost = [], 0
        # Folded ticks (below ctl.compacted_tick) are checked through their sums.
        g, s, d = th.get("settled:g", 0), th.get("settled:s", 0), th.get("settled:d", 0)
        lost, at_server = g - s - d, sum(k for n, k in served.items() if n < self.compacted)
        self.lost += max(lost, 0)
        if lost < 0 or not s <= at_server <= s + lost:
            bad.append(f"ticks 0-{self.compacted - 1} (folded): granted {g}, started {s}, dropped {d}, server {at_server}")
        for n in range(self.compacted, ticks_n):
            g, s, d = th.get(f"{n}:g", 0), th.get(f"{n}:s", 0), th.get(f"{n}:d", 0)
            lost = g - s - d
            self.lost += max(lost, 0)
            if lost < 0 or not s <= served.get(n, 0) <= s + lost:
                bad.append(f"tick {n}: granted {g}, started {s}, dropped {d}, server {served.get(n, 0)}")
        self.ticks_checked = ticks_n
        if bad:
            self.fail("per tick: granted == started + dropped + lost, started <= server <= started + lost",
                      f"{len(bad)} ticks, e.g. {'; '.join(bad[:6])}")
        # Recovery: after each fault, the load at the server is back within 5 % of the plan.
        arrivals = sorted(q["arrived"] / 1000 for q in reqs)  # the access log's times are unix ms
        self.write_timeline(arrivals)
        late = []
        for i, fault in enumerate(self.faults):
            until = self.faults[i + 1]["at"] if i + 1 < len(self.faults) else self.start_ms / 1000 + self.duration_s
            fault["recovered_s"] = self.recovery(arrivals, fault["end"], until)
            if fault["recovered_s"] is None or fault["recovered_s"] > fault["budget_s"] + SLACK_ONE_S:
                got = "not before the next fault" if fault["recovered_s"] is None else f"{fault['recovered_s']:.1f} s"
                self.fail("load back within 5 % of the target within the budget", f"{fault['what']}: recovered {got}, budget {fault['budget_s']:.2f} s + {SLACK_ONE_S} s")
            elif fault["recovered_s"] > fault["budget_s"] + SLACK_S:
                late.append(f"{fault['what']}: recovered {fault['recovered_s']:.1f} s, budget {fault['budget_s']:.2f} s")
        if len(late) >= 2:
            self.fail("load back within 5 % of the target within the budget", f"{len(late)} faults over it by more than {SLACK_S} s: " + "; ".join(late))
        # Redis memory stays bounded.
        self.peak_memory = max((m for _, m in self.memory), default=0)
        if self.peak_memory > self.args.max_memory_mib * 1024 * 1024:
            self.fail("Redis memory bounded", f"used_memory peaked at {self.peak_memory / 1048576:.1f} MiB, over {self.args.max_memory_mib} MiB")

    def write_timeline(self, arrivals):
        """timeline.txt in the logs: per second of the run, the plan and the server's count."""
        per = Counter(int((t * 1000 - self.start_ms) // 1000) for t in arrivals)
        with open(self.log("timeline.txt"), "w") as f:
            for second in range(self.duration_s + 1):
                f.write(f"{second}\t{self.planned(second * 1000, second * 1000 + 1000):.1f}\t{per.get(second, 0)}\n")

    def planned(self, a_ms, b_ms):
        """Iterations the plan puts in run time [a_ms, b_ms), tick by tick, pro rata. The last
        tick ends with the run: when the tick does not divide the duration it is shorter."""
        total, n = 0.0, max(0, a_ms // self.tick_ms)
        while n * self.tick_ms < b_ms and n + 1 in self.plan:
            begins, ends = n * self.tick_ms, min((n + 1) * self.tick_ms, self.duration_s * 1000)
            lo, hi = max(a_ms, begins), min(b_ms, ends)
            if hi > lo:
                total += (self.plan[n + 1] - self.plan.get(n, 0)) * (hi - lo) / (ends - begins)
            n += 1
        return total

    def recovery(self, arrivals, end, until):
        """Seconds from `end` until the load at the server is back within 5 % of the plan and
        stays there until `until` (the next fault, or the run's end): every 1 s window (stepped
        by 100 ms) from then on holds the plan's count within 5 %. None: not back by `until`."""
        window, step = 1000, 100
        first = int((end * 1000 - self.start_ms) // step * step)
        last = min(int(until * 1000 - self.start_ms), self.duration_s * 1000) - window
        back = None
        t = first
        while t <= last:
            want = self.planned(t, t + window)
            got = bisect.bisect_left(arrivals, (self.start_ms + t + window) / 1000) - bisect.bisect_left(arrivals, (self.start_ms + t) / 1000)
            if abs(got - want) <= 0.05 * want:
                back = t if back is None else back
            else:
                back = None
            t += step
        return None if back is None else max(0.0, (self.start_ms + back) / 1000 - end)

    def report(self):
        print(f"nemesis: faults, each with the time from its end until the load at the server is back within 5 % of the plan for good "
              f"(budget TTL {TTL_S} s + 1 tick + the claim lead + 0.1 s; Redis and scale: more; checked with slack, see docs/FAILURES.md):")
        began = self.start_ms / 1000
        for f in self.faults:
            rec = "never" if f.get("recovered_s") is None else f"{f['recovered_s']:.1f} s"
            over = "  OVER BUDGET" if f.get("recovered_s") is not None and f["recovered_s"] > f["budget_s"] else ""
            print(f"  {f['at'] - began:7.1f} s  {f['kind']:<24} recovered {rec:>7} (budget {f['budget_s']:.2f} s){over}  {f['what']}")
        for inv, details in self.failures:
            print(f"nemesis: FAILED {inv}: {details}")
        worst = max((f["recovered_s"] for f in self.faults if f.get("recovered_s") is not None), default=0.0)
        verdict = "PASS" if not self.failures else f"FAIL ({len(self.failures)} invariants broken)"
        print(f"nemesis: {verdict} seed {self.args.seed}, {self.args.minutes:g} min, {self.rate}/s tick {self.tick_ms} ms {self.shards} shards "
              f"{self.workers_wanted} workers, fsync {self.args.fsync}: {len(self.faults)} faults, slowest recovery {worst:.1f} s; "
              f"{self.served} iterations at the server, {self.twice} twice, {self.lost} lost to kills; accounting checked over "
              f"{self.ticks_checked} ticks ({self.compacted} folded by --detail {self.args.detail}); Redis used_memory peak {self.peak_memory / 1048576:.1f} MiB"
              + (f"; rerun: bash scripts/nemesis.sh --seed {self.args.seed} --minutes {self.args.minutes:g}" if self.failures else ""), flush=True)
        if self.failures or self.args.keep:
            print(f"nemesis: logs kept in {self.dir}", flush=True)
        return 0 if not self.failures else 1


def main():
    import argparse
    ap = argparse.ArgumentParser(description="The fault nemesis: one long J4 run on a small cluster through random faults, checked at the receiving server.")
    ap.add_argument("--minutes", type=float, default=20, help="length of the run (default 20)")
    ap.add_argument("--seed", type=int, help="seed of the run's shape and of the faults (default: random, printed)")
    ap.add_argument("--j4", default=".build/release/j4" if os.path.exists(".build/release/j4") else ".build/debug/j4",
                    help="the j4 binary (default .build/release/j4, else .build/debug/j4)")
    ap.add_argument("--rate", type=int, help="iterations per second (default: drawn at random from --seed, 50 to 200)")
    ap.add_argument("--fsync", choices=["always", "everysec"], default="always",
                    help="Redis' appendfsync (default always: acknowledged writes survive SIGKILL, so the accounting must be exact)")
    ap.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated kinds to draw from (default all: {','.join(FAULTS)})")
    ap.add_argument("--keep", action="store_true", help="keep the logs (and timeline.txt: plan and server count per second) of a passing run too")
    ap.add_argument("--max-memory-mib", type=float, default=64, help="Redis used_memory must stay under this (default 64)")
    ap.add_argument("--detail", default="30s", help="the supervisors' --detail: older ticks and seconds are folded during the run (default 30s)")
    args = ap.parse_args()
    args.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in args.faults if f not in FAULTS]
    if unknown or not args.faults:
        print(f"nemesis: --faults: unknown kind {unknown or args.faults}; accepted: {', '.join(FAULTS)}", file=sys.stderr)
        return 2
    if args.minutes < 0.5:
        print(f"nemesis: --minutes {args.minutes:g}: at least 0.5 is needed (faults start 5 s in and stop 12 s before the end)", file=sys.stderr)
        return 2
    if not os.access(args.j4, os.X_OK):
        print(f"nemesis: no j4 binary at {args.j4}; build it first (swift build --product j4) or pass --j4", file=sys.stderr)
        return 2
    n = Nemesis(args)
    print(f"nemesis: seed {args.seed}, {args.minutes:g} min, {n.rate}/s tick {n.tick_ms} ms {n.shards} shards {n.workers_wanted} workers, "
          f"Redis appendfsync {args.fsync}, j4 {n.j4}, logs {n.dir}", flush=True)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        n.setup()
        n.drive()
        n.check()
        code = n.report()
    except HarnessError as e:
        print(f"nemesis: COULD NOT RUN: {e}; logs in {n.dir}", flush=True)
        code = 1
    except KeyboardInterrupt:
        print(f"\nnemesis: interrupted; every child ended; logs kept in {n.dir}", file=sys.stderr, flush=True)
        code = 130
    finally:
        n.procs.stop_all(everything=True)
    if code == 0 and not args.keep:
        shutil.rmtree(n.dir, ignore_errors=True)
    return code
