"""Running one case end to end and checking its invariants at the server. Part of scripts/conformance.py."""

import json
import math
import os
import re
import signal
import subprocess
import time
from collections import Counter, defaultdict

from .cases import *  # noqa: F401,F403
from .processes import *  # noqa: F401,F403

# ---------------------------------------------------------------------------------------
# Running a case.
# ---------------------------------------------------------------------------------------


class Case:
    def __init__(self, harness, index, seed, workdir):
        self.h = harness
        self.index = index
        self.seed = seed
        self.dir = workdir
        self.spec = draw_case(seed, {"max_rate": harness.args.max_rate, "max_vus": harness.args.max_vus})
        self.db = 1 + index % 63
        self.run_id = f"cf-{harness.token}-{index}-{seed}"
        self.failures = []   # (invariant, details)
        self.notes = []
        self.curve = Curve(self.spec["start"], [(d, t, s, e) for d, t, s, e in self.spec["stages"]], self.spec["tick_ms"])

    def j4(self, *args):
        return [self.h.j4] + list(args)

    def fail(self, invariant, details):
        self.failures.append((invariant, details))

    def log(self, name):
        return os.path.join(self.dir, name)

    def execute(self):
        h, spec = self.h, self.spec
        r = h.redis
        r.cli(self.db, "FLUSHDB", raw=True, check=True)
        access = self.log("access.log")
        sink = h.procs.start(self.j4("sink", "--port", "0", "--latency", f"{spec['latency_ms']}ms", "--access-log", access),
                             self.log("sink.log"))
        port = wait_for("j4 sink to listen", lambda: self.sink_port(sink), 60)
        self.yaml = definition_yaml(spec, f"http://127.0.0.1:{port}/conformance")
        with open(self.log("definition.yaml"), "w") as f:
            f.write(self.yaml)
        budget = spec_budget_s(self.curve)
        procs = []
        summary_wait = None
        try:
            if spec["cluster"]["kind"] == "cluster":
                sups = [f"s{k}-{self.seed}" for k in range(spec["cluster"]["supervisors"])]
                workers = [f"w{k}-{self.seed}" for k in range(spec["cluster"]["workers"])]
                for s in sups:
                    procs.append(h.procs.start(self.j4("supervisor", "--id", s, "--redis", r.url(self.db), "--log-level", "info"),
                                               self.log(f"supervisor-{s}.log")))
                wait_for("a supervisor to lead", lambda: self.leader_in(sups, procs), 60)
                worker_procs = []
                for w in workers:
                    p = h.procs.start(self.j4("worker", "--id", w, "--redis", r.url(self.db), "--log-level", "info"),
                                      self.log(f"worker-{w}.log"))
                    worker_procs.append(p)
                    procs.append(p)
                wait_for("every worker to subscribe to j4:signals", lambda: self.workers_subscribed(workers, procs), 60)
                submit = subprocess.run(self.j4("submit", self.log("definition.yaml"), "--id", self.run_id, "--redis", r.url(self.db)),
                                        capture_output=True, text=True, timeout=120)
                if submit.returncode != 0:
                    raise HarnessError(f"j4 submit exited {submit.returncode}: {submit.stderr.strip()}")
                waiter = h.procs.start(self.j4("wait", self.run_id, "--json", "--timeout", f"{budget}s", "--redis", r.url(self.db)),
                                       self.log("wait.json"), merge=False)
                schedule = self.operations(worker_procs, procs, len(workers))
                code = self.watch(waiter, procs + [sink], budget + 60, "j4 wait", schedule)
                # A worker sent SIGTERM mid-run must have exited 0 (after its hand-off and flush).
                for p in self.leaving:
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        raise HarnessError(f"a worker sent SIGTERM mid-run did not exit within 60 s ({p.log_path})")
                    if p.returncode != 0:
                        raise HarnessError(f"a worker sent SIGTERM mid-run exited {p.returncode} ({p.log_path})")
                if code != 0:
                    raise HarnessError(f"j4 wait exited {code}: {read_text(self.log('wait.json.err')).strip()}")
                summary_wait = json.loads(read_text(self.log("wait.json")))
                # Every worker leaves (SIGTERM: release, final flush) before anything is read.
                for p in worker_procs:
                    if not h.procs.stop(p, 60):
                        raise HarnessError(f"a worker did not exit within 60 s of SIGTERM ({p.log_path})")
                for p in procs:
                    if p not in worker_procs:
                        h.procs.stop(p, 30)
            else:
                p = h.procs.start(self.j4("run", self.log("definition.yaml"), "--workers", str(spec["cluster"]["workers"]),
                                          "--redis", r.url(self.db), "--summary-json", self.log("summary-run.json"),
                                          "--quiet", "--log-level", "info"),
                                  self.log("j4-run.log"))
                procs.append(p)
                code = self.watch(p, [sink], budget + 60, "j4 run")
                if code != 0:
                    raise HarnessError(f"j4 run exited {code} (see {p.log_path})")
                with open(self.log("summary-run.json")) as f:
                    summary_wait = json.load(f)
                self.run_id = summary_wait["run"]
        finally:
            for p in procs:
                h.procs.stop(p, 30)
            if not h.procs.stop(sink, 30):
                self.notes.append("the sink did not exit on SIGTERM; its access log may be incomplete")
        self.summary_wait = summary_wait
        status = subprocess.run(self.j4("status", self.run_id, "--json", "--redis", r.url(self.db)),
                                capture_output=True, text=True, timeout=60)
        if status.returncode != 0:
            raise HarnessError(f"j4 status exited {status.returncode}: {status.stderr.strip()}")
        self.summary = json.loads(status.stdout)
        self.collect_redis()
        self.requests = read_access_log(access)
        self.check()

    def operations(self, worker_procs, procs, count):
        """The case's routine operations mid-run, as (unix time, action): a worker joins, or
        one leaves with SIGTERM (and must exit 0). Times count from the run's start."""
        events = self.spec["cluster"].get("events", [])
        self.operated = []  # (what, ms after the start when it was done)
        if not events:
            return []
        key = f"j4:{{r:{self.run_id}}}:ctl"
        start_ms = self.start_ms = int(wait_for("the run's start time", lambda: int_or(self.h.redis.cli(self.db, "HGET", key, "start_ms", raw=True)), 60))
        schedule = []
        for kind, at in events:
            def act(kind=kind):
                if kind == "join":
                    w = f"w{count}-{self.seed}"
                    p = self.h.procs.start(self.j4("worker", "--id", w, "--redis", self.h.redis.url(self.db), "--log-level", "info"),
                                           self.log(f"worker-{w}.log"))
                    worker_procs.append(p)
                    procs.append(p)
                    return p, None
                leaver = worker_procs[0]
                return None, leaver
            schedule.append(((start_ms + at) / 1000, kind, act))
        return schedule

    def watch(self, main, others, timeout, what, schedule=()):
        """Waits for `main` to exit, up to `timeout`; every process in `others` must live that
        long (one that exits was ended from outside the harness: the case is run again).
        `schedule` holds the operations to do meanwhile, at their times."""
        deadline = time.monotonic() + timeout
        pending = sorted(schedule, key=lambda e: e[0])
        leaving = self.leaving = []
        while main.poll() is None:
            while pending and time.time() >= pending[0][0]:
                due, kind, act = pending.pop(0)
                started, leaver = act()
                self.operated.append((kind, time.time() * 1000 - self.start_ms))
                if started is not None:
                    others.append(started)
                if leaver is not None:
                    others.remove(leaver)
                    os.killpg(leaver.pid, signal.SIGTERM)
                    leaving.append(leaver)
            for p in leaving:
                if p.poll() is not None and p.returncode != 0:
                    raise HarnessError(f"a worker that left with SIGTERM exited {p.returncode} ({p.log_path})")
            for p in others:
                if p.poll() is not None:
                    raise Interfered(f"{os.path.basename(p.log_path)[:-4]} exited with {p.returncode} while the run went on; "
                                     f"the harness had not asked it to")
            if time.monotonic() > deadline:
                raise HarnessError(f"{what} did not end within {timeout} s")
            time.sleep(0.05 if pending else 0.2)
        if main.returncode < 0:
            raise Interfered(f"{what} was ended by signal {-main.returncode}; the harness had not sent it")
        return main.returncode

    def sink_port(self, sink):
        if sink.poll() is not None:
            raise HarnessError(f"j4 sink exited {sink.returncode} (see {sink.log_path})")
        with open(sink.log_path) as f:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", f.read())
        return int(m.group(1)) if m else None

    def leader_in(self, sups, procs):
        for p in procs:
            if p.poll() is not None:
                raise HarnessError(f"a process exited early with {p.returncode} (see {p.log_path})")
        holder = self.h.redis.cli(self.db, "GET", "j4:leader", raw=True) or ""
        return holder.split("|")[0] in sups

    def workers_subscribed(self, workers, procs):
        for p in procs:
            if p.poll() is not None:
                raise HarnessError(f"a process exited early with {p.returncode} (see {p.log_path})")
        clients = self.h.redis.cli(0, "CLIENT", "LIST", raw=True) or ""
        subscribed = set(re.findall(r"name=j4-worker:(\S+):signals .*?sub=1", clients))
        return all(w in subscribed for w in workers)

    def collect_redis(self):
        r, keys = self.h.redis, f"j4:{{r:{self.run_id}}}"
        self.ctl = r.cli(self.db, "HGETALL", f"{keys}:ctl") or {}
        self.ticks_hash = r.cli(self.db, "HGETALL", f"{keys}:ticks") or {}
        self.plan = {int(k): int(v) for k, v in (r.cli(self.db, "HGETALL", f"{keys}:plan") or {}).items()}
        self.claims = {}
        for n in range(self.curve.ticks + 2):
            c = r.cli(self.db, "HGETALL", f"{keys}:claims:{n}") or {}
            if c:
                self.claims[n] = c
        self.events = r.cli(self.db, "XRANGE", f"{keys}:events", "-", "+") or []
        with open(self.log("redis.json"), "w") as f:
            json.dump({"ctl": self.ctl, "ticks": self.ticks_hash, "plan": self.plan, "claims": self.claims,
                       "events": self.events, "summary_wait": getattr(self, "summary_wait", None),
                       "summary_final": getattr(self, "summary", None)}, f, indent=1)

    # --- invariants ----------------------------------------------------------------------

    def check(self):
        reqs = [q for q in self.requests if q["run"] == self.run_id]
        others = len(self.requests) - len(reqs)
        if others:
            self.fail("foreign requests", f"{others} requests at the sink carry another x-j4-run than {self.run_id}")
        self.check_attribution(reqs)
        s = self.summary
        if s.get("state") != "finished":
            self.fail("run finished", f"state is {s.get('state')}, not finished")
        if s.get("started") != len(reqs):
            self.fail("summary started == server count", f"summary started {s.get('started')}, the server counted {len(reqs)}")
        for field in ("started", "dropped", "target", "lost", "unclaimed"):
            if self.summary_wait is not None and self.summary_wait.get(field) != s.get(field):
                self.notes.append(f"summary {field} changed after the workers left: {self.summary_wait.get(field)} "
                                  f"(j4 wait / j4 run) -> {s.get(field)} (final)")
        if self.spec["model"] == "arrival-rate":
            self.check_arrival_rate(reqs)
        else:
            self.check_vus(reqs)

    def check_attribution(self, reqs):
        by = defaultdict(Counter)
        for q in reqs:
            by[(q["tick"], q["shard"])][q["worker"]] += 1
        shared = {k: dict(v) for k, v in by.items() if len(v) > 1}
        if shared:
            sample = "; ".join(f"tick {t} shard {sh}: {w}" for (t, sh), w in sorted(shared.items(), key=lambda kv: (int_or(kv[0][0]), int_or(kv[0][1])))[:6])
            self.fail("(tick, shard) sent by one worker", f"{len(shared)} (tick, shard) pairs sent by two or more workers: {sample}")

    def check_arrival_rate(self, reqs):
        c, s, S = self.curve, self.summary, self.spec["shards"]
        total = c.total
        self.expected = total
        if s.get("target") != total or int(self.ctl.get("target", -1)) != total:
            self.fail("MATHS: expected total == summary target",
                      f"Python ceil(A(T)) = {total}, summary target {s.get('target')}, ctl target {self.ctl.get('target')}")
        wrong_plan = [(n, v, c.F(n)) for n, v in sorted(self.plan.items()) if v != c.F(n)]
        if wrong_plan:
            self.fail("MATHS: plan F(n) == Python F(n)", "; ".join(f"tick {n}: plan {v}, Python {f}" for n, v, f in wrong_plan[:8]))
        if len(reqs) != total:
            self.fail(SERVER_TOTAL, f"the server counted {len(reqs)}, the curve asks for exactly {total}")
        if s.get("started") != s.get("target") or s.get("dropped") != 0:
            self.fail(STARTED_TARGET,
                      f"summary target {s.get('target')} started {s.get('started')} dropped {s.get('dropped')} "
                      f"unclaimed {s.get('unclaimed')} lost {s.get('lost')}")
        # Iteration numbers: each once, in [0, total), in the tick and shard that own it.
        seen = Counter(int_or(q["iteration"]) for q in reqs)
        twice = sorted(g for g, k in seen.items() if k > 1)
        if twice:
            self.fail("no iteration arrives twice", f"{len(twice)} iteration numbers arrived more than once, e.g. {twice[:10]}")
        outside = sorted(g for g in seen if g is None or not 0 <= g < total)
        if outside:
            self.fail("iterations within [0, total)", f"{len(outside)} iteration numbers outside [0, {total}): {outside[:10]}")
        self.checked = f"{len(seen)} distinct iterations"
        missing = [g for g in range(total) if g not in seen]
        if missing and len(reqs) != total:
            self.notes.append(f"missing iterations: {ranges_text(missing)}")
        F = [c.F(n) for n in range(c.ticks + 1)]
        misplaced = []
        for q in reqs:
            g, n, sh = int_or(q["iteration"]), int_or(q["tick"]), int_or(q["shard"])
            if g is None or n is None or not 0 <= n < c.ticks or not F[n] <= g < F[n + 1] or sh != g % S:
                misplaced.append(f"g={q['iteration']} tick={q['tick']} shard={q['shard']}")
        if misplaced:
            self.fail("iteration in its own tick and shard", f"{len(misplaced)} requests, e.g. {misplaced[:5]}")
        # Per tick: granted == F(n+1) - F(n) == started + dropped (+ lost == 0), server == started.
        served = Counter(int_or(q["tick"]) for q in reqs)
        th = {k: int(v) for k, v in self.ticks_hash.items()}
        bad = defaultdict(list)
        for n in range(c.ticks):
            want = F[n + 1] - F[n]
            g, st, dr = th.get(f"{n}:g", 0), th.get(f"{n}:s", 0), th.get(f"{n}:d", 0)
            where = f"tick {n} [{n * c.tick_ms}-{min((n + 1) * c.tick_ms, c.duration_ms)} ms, F={F[n]}..{F[n + 1]}]"
            if g != want:
                bad[PER_TICK_GRANTED].append(f"{where}: granted {g}, target(n) {want} (unclaimed {want - g})")
            if g != st + dr:
                bad[PER_TICK_LOST].append(f"{where}: granted {g} != started {st} + dropped {dr} (lost {g - st - dr})")
            if dr:
                bad[PER_TICK_DROPPED].append(f"{where}: dropped {dr} of {g}")
            if served.get(n, 0) != st:
                bad[PER_TICK_SERVED].append(f"{where}: server {served.get(n, 0)}, started {st}")
        for invariant, lines in bad.items():
            self.fail(invariant, f"{len(lines)} of {c.ticks} ticks: " + "; ".join(lines[:6]) + (" ..." if len(lines) > 6 else ""))

    def check_vus(self, reqs):
        c, s = self.curve, self.summary
        self.expected = c.peak_vus
        if s.get("target") != c.peak_vus:
            self.fail("MATHS: peak VUs == summary target", f"Python peak {c.peak_vus}, summary target {s.get('target')}")
        wrong_plan = [(n, v, c.V(n)) for n, v in sorted(self.plan.items()) if v != c.V(n)]
        if wrong_plan:
            self.fail("MATHS: plan V(n) == Python V(n)", "; ".join(f"tick {n}: plan {v}, Python {f}" for n, v, f in wrong_plan[:8]))
        start_ms = int(self.ctl.get("start_ms", 0))
        tick = c.tick_ms

        def allowed(t):
            n = math.floor((t - start_ms) / tick)
            return max(c.V(n - 1), c.V(n), c.V(n + 1))

        # Sweep: answers (-1) before arrivals (+1) at the same instant; tick boundaries checked too.
        events = []
        for q in reqs:
            events.append((q["arrived"], 1, q))
            events.append((q["answered"], 0, q))
        for n in range(-1, c.ticks + 2):
            events.append((start_ms + n * tick, 2, None))
        events.sort(key=lambda e: (e[0], e[1]))
        active = defaultdict(list)  # VU -> its requests in flight
        over = []
        peak = (0, 0)  # most distinct VUs in flight at once, and what was allowed then
        for t, kind, q in events:
            if kind == 0:
                active[q["vu"]].remove(q)
                if not active[q["vu"]]:
                    del active[q["vu"]]
                continue
            if kind == 1:
                active[q["vu"]].append(q)
            if len(active) > peak[0]:
                peak = (len(active), allowed(t))
            if len(active) > allowed(t):
                n = math.floor((t - start_ms) / tick)
                # Begun by J4 in a tick that wanted that VU (x-j4-tick), and only seen late here?
                delayed = all(int_or(r["vu"]) is not None and int_or(r["tick"]) is not None and int(r["vu"]) < c.V(int(r["tick"]))
                              for rs in active.values() for r in rs)
                over.append((t, n, len(active), allowed(t), delayed, sorted(active, key=lambda v: int_or(v) or 0)))
        self.checked = f"peak {peak[0]} VUs in flight (allowed {peak[1]} then)"
        if over:
            worst = max(over, key=lambda o: o[2] - o[3])
            first = over[0]
            name = VUS_OVER_DELAYED if all(o[4] for o in over) else VUS_OVER
            self.fail(name, f"{len(over)} instants over; first at {first[0] - start_ms:.1f} ms (tick {first[1]}): {first[2]} VUs in flight "
                            f"{first[5][:12]}, allowed {first[3]}; worst at {worst[0] - start_ms:.1f} ms (tick {worst[1]}): {worst[2]} > {worst[3]}")
        # The other way: every VU the curve wants through a tick and its neighbours has a
        # request at the server during it (an iteration takes the sink's 20-50 ms; a tick is
        # >= 100 ms). A request in flight across a boundary counts in every tick it spans: a
        # VU whose next request arrived a little late was still busy with its last one.
        seen = defaultdict(set)
        for q in reqs:
            for n in range(math.floor((q["arrived"] - start_ms) / tick), math.floor((q["answered"] - start_ms) / tick) + 1):
                seen[n].add(q["vu"])
        short, streak, longest = [], 0, 0
        # A hand-over (a worker joined or left) ends the moved VUs before their new owner
        # starts them: no lower bound from the operation to 2 ticks and 1 s after it.
        handover = [(ms, ms + 2 * tick + 1000) for _, ms in getattr(self, "operated", [])]
        for n in range(c.ticks):
            if any(a <= (n + 1) * tick and n * tick <= b for a, b in handover):
                streak = 0
                continue
            need = min(c.V(n - 1), c.V(n), c.V(n + 1))
            if len(seen[n]) < need:
                short.append(f"tick {n}: {len(seen[n])} VUs sent, V(n-1..n+1) = {c.V(n - 1)}, {c.V(n)}, {c.V(n + 1)}")
                streak += 1
                longest = max(longest, streak)
            else:
                streak = 0
        if short:
            # A stall of the machine can hide a tick or two; not a second and more of them.
            name = VUS_REACHED if longest * tick <= 500 else VUS_REACHED_LONG
            self.fail(name, f"{len(short)} of {c.ticks} ticks (longest run {longest} ticks = {longest * tick} ms): "
                            + "; ".join(short[:6]) + (" ..." if len(short) > 6 else ""))
        by_vu = defaultdict(list)
        for q in reqs:
            by_vu[q["vu"]].append(q)
        overlaps = []
        for vu, qs in by_vu.items():
            qs.sort(key=lambda q: q["arrived"])
            holder = qs[0]
            for q in qs[1:]:
                if q["arrived"] < holder["answered"] and q["worker"] != holder["worker"]:
                    overlaps.append(f"VU {vu}: {holder['worker']} [{holder['arrived'] - start_ms:.1f}, {holder['answered'] - start_ms:.1f}] ms "
                                    f"and {q['worker']} [{q['arrived'] - start_ms:.1f}, {q['answered'] - start_ms:.1f}] ms")
                if q["answered"] > holder["answered"]:
                    holder = q
        if overlaps:
            self.fail("no VU in flight from two workers at once", f"{len(overlaps)} overlaps, e.g. " + "; ".join(overlaps[:4]))


PER_TICK_GRANTED = "per tick: granted == F(n+1) - F(n) (no unclaimed)"
PER_TICK_LOST = "per tick: granted == started + dropped + lost, lost == 0 (no worker was killed)"
PER_TICK_DROPPED = "per tick: dropped == 0"
PER_TICK_SERVED = "per tick: server count == started"
SERVER_TOTAL = "server count == curve total"
STARTED_TARGET = "started == target, dropped == 0"
VUS_OVER = "VUs in flight <= V (max over the tick and its neighbours)"
VUS_OVER_DELAYED = VUS_OVER + ", broken only by requests begun in a tick whose V allows their VU (x-j4-tick) that reached the sink late"
VUS_REACHED = "VUs sending in a tick >= min of V over the tick and its neighbours"
VUS_REACHED_LONG = VUS_REACHED + ", for more than 500 ms in a row"
# What machine load alone can break: iterations dropped as `late` (CPU starved past the
# tolerance, max(20 ms, tick/10)), the counts that follow from them, and requests seen late
# or not at all at the sink for a short while. Only with the CPU saturated, or a stall of the
# whole machine as long as the late tolerance measured by the harness (HiccupMeter), is a
# case whose failures are all of these run again (and called inconclusive if it never passes).
LOAD_INVARIANTS = {SERVER_TOTAL, STARTED_TARGET, PER_TICK_DROPPED, VUS_REACHED, VUS_OVER_DELAYED}


def int_or(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def ranges_text(numbers, limit=12):
    out, i = [], 0
    while i < len(numbers) and len(out) < limit:
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(out) + (" ..." if i < len(numbers) else "") + f" ({len(numbers)} in all)"


def read_access_log(path):
    reqs = []
    if not os.path.exists(path):
        return reqs
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 8:
                continue
            reqs.append({"arrived": float(parts[0]), "answered": float(parts[1]), "run": parts[2], "worker": parts[3],
                         "vu": parts[4], "iteration": parts[5], "tick": parts[6], "shard": parts[7]})
    return reqs


def spec_budget_s(curve):
    """How long a case may take to end: its length plus generous room for start and grace."""
    return int(curve.duration_ms / 1000 + 2 * curve.tick_ms / 1000) + 120


def worker_log_digest(directory, limit=14):
    """The lines of the processes' logs that explain drops, losses and hand-offs."""
    interesting = re.compile(r"dropped iterations|shed leases|lease renewal failed|claim failed|could not|warning|error", re.I)
    lines = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".log") or name in ("access.log", "sink.log"):
            continue
        with open(os.path.join(directory, name), errors="replace") as f:
            for line in f:
                if interesting.search(line) and "no --allow-target" not in line:
                    lines.append(f"{name}: {line.strip()}")
    why = Counter()
    for line in lines:
        m = re.search(r"why=([^\]]*?)(?: worker=| \[|$)", line)
        if m:
            for part in m.group(1).split(", "):
                reason, _, count = part.rpartition(": ")
                why[reason.strip()] += int_or(count) or 0
    return lines[:limit], len(lines), why
