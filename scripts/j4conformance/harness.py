"""The harness: cases one after another, retries, the report and the command line. Part of scripts/conformance.py."""

import argparse
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .cases import *  # noqa: F401,F403
from .processes import *  # noqa: F401,F403
from .case import *  # noqa: F401,F403

# ---------------------------------------------------------------------------------------
# The harness.
# ---------------------------------------------------------------------------------------


class CpuSampler:
    """Samples the machine's CPU use (/proc/stat) every 100 ms, to tell whether a run had the
    CPU it needed: a run whose only defect is `late` drops while the machine was saturated
    says nothing about J4."""

    def __init__(self):
        self.samples = []  # (unix time, busy share of all cores over the last interval)
        self.stopped = False
        import threading
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    @staticmethod
    def read():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def loop(self):
        try:
            total, idle = self.read()
        except OSError:
            return
        while not self.stopped:
            time.sleep(0.1)
            t2, i2 = self.read()
            if t2 > total:
                self.samples.append((time.time(), 1 - (i2 - idle) / (t2 - total)))
                if len(self.samples) > 100_000:
                    del self.samples[:50_000]
            total, idle = t2, i2

    def peak(self, since, until, window=5):
        """The highest mean busy share over `window` consecutive samples within [since, until]."""
        xs = [b for t, b in self.samples if since <= t <= until]
        if not xs:
            return None
        if len(xs) < window:
            return sum(xs) / len(xs)
        return max(sum(xs[i:i + window]) / window for i in range(len(xs) - window + 1))


SATURATED = 0.9


class HiccupMeter:
    """The machine's own stalls, measured as jHiccup does: a process of its own (so that
    nothing the harness does delays it) asks to sleep 1 ms again and again and prints how
    much longer each sleep took, when over 2 ms. A stall that delays it delays every process
    on the machine (J4's timing thread, the sink, Redis) alike; a late drop that coincides
    with one says nothing about J4."""

    PROBE = ("import sys, time\n"
             "while True:\n"
             "    t0 = time.monotonic(); time.sleep(0.001); over = (time.monotonic() - t0 - 0.001) * 1000\n"
             "    if over > 2: print(f'{time.time():.3f} {over:.1f}', flush=True)\n")

    def __init__(self):
        self.samples = []  # (unix time at the wake-up, overshoot in ms), overshoots over 2 ms only
        self.stopped = False
        self.probe = subprocess.Popen([sys.executable, "-c", self.PROBE], stdout=subprocess.PIPE, text=True)
        import atexit
        atexit.register(self.probe.kill)  # whatever way the harness ends
        import threading
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        for line in self.probe.stdout:
            t, over = line.split()
            self.samples.append((float(t), float(over)))
            if len(self.samples) > 100_000:
                del self.samples[:50_000]

    def stop(self):
        self.stopped = True
        self.probe.kill()

    def worst(self, since, until):
        """The longest stall (ms) that ended within [since, until], 0 when none over 2 ms."""
        return max((o for t, o in self.samples if since <= t <= until), default=0.0)


class Harness:
    def __init__(self, args):
        self.args = args
        self.j4 = os.path.abspath(args.j4)
        self.procs = Procs()
        self.token = format(random.SystemRandom().getrandbits(20), "x")
        self.root = tempfile.mkdtemp(prefix="j4-conformance-")
        self.redis = None
        self.cpu = CpuSampler()
        self.hiccups = HiccupMeter()

    def lock(self):
        """The build lock, held during a case so that no Swift build starves it of CPU."""
        if self.args.no_lock:
            return None
        f = open(self.args.lock, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"conformance: waiting for {self.args.lock} (a build is running)", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def attempt(self, index, case_seed, attempt):
        workdir = os.path.join(self.root, f"case-{index}-{case_seed}" + (f"-attempt{attempt}" if attempt > 1 else ""))
        os.makedirs(workdir)
        case = Case(self, index, case_seed, workdir)
        lock = self.lock()
        t0 = time.monotonic()
        try:
            case.execute()
            case.outcome = "FAIL" if case.failures else "pass"
        except HarnessError as e:
            case.outcome = "INTERFERED" if isinstance(e, Interfered) else "HARNESS"
            case.harness_error = str(e)
            try:
                case.collect_redis()  # what Redis holds, for the report
            except Exception:  # noqa: BLE001 - best effort only
                pass
        except Exception as e:  # noqa: BLE001 - a harness bug or a timeout: reported with the case's seed, not as a traceback
            case.outcome = "HARNESS"
            case.harness_error = f"{type(e).__name__}: {e}"
        finally:
            if lock:
                lock.close()
            self.procs.stop_all()
        case.took = time.monotonic() - t0
        case.cpu_peak = None
        case.stall_ms = 0.0
        start_ms = int(getattr(case, "ctl", {}).get("start_ms", 0) or 0)
        if start_ms:
            since, until = start_ms / 1000, start_ms / 1000 + (case.curve.duration_ms + case.spec["tick_ms"]) / 1000
            case.cpu_peak = self.cpu.peak(since, until)
            case.stall_ms = self.hiccups.worst(since, until)
        _, _, case.why = worker_log_digest(workdir)
        # Late drops explained by the machine: the CPU saturated, or a stall of the whole
        # machine at least as long as the late tolerance (seen by the probe process): a
        # worker stalled that long is late by that much. Shorter stalls (10 to 20 ms are
        # common on a small VM) excuse nothing.
        tolerance_ms = max(20, case.spec["tick_ms"] / 10)
        if case.outcome == "FAIL" and {inv for inv, _ in case.failures} <= LOAD_INVARIANTS and set(case.why) <= {"late", "maxInFlight"} \
                and ((case.cpu_peak is not None and case.cpu_peak >= SATURATED) or case.stall_ms >= tolerance_ms):
            case.outcome = "LOAD"
        return case

    def run(self):
        a = self.args
        seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1_000_000_000)
        self.seed = seed
        began = time.monotonic()
        passed = failed = inconclusive = 0
        print(f"conformance: seed {seed}, up to {a.cases} cases, {a.minutes:g} min, j4 {self.j4}, workdir {self.root}", flush=True)
        self.redis = Redis(self.procs, self.root)
        case_seed = seed
        for index in range(a.cases):
            if time.monotonic() - began > a.minutes * 60:
                print(f"conformance: {a.minutes:g} min passed; no new cases", flush=True)
                break
            attempts = []
            for attempt in range(1, 2 + a.retries):
                case = self.attempt(index, case_seed, attempt)
                attempts.append(case)
                self.print_line(case, attempt)
                if case.outcome not in ("LOAD", "INTERFERED"):
                    break
            case = attempts[-1]
            if case.outcome == "pass":
                passed += 1
                if not a.keep:
                    for c in attempts:
                        shutil.rmtree(c.dir, ignore_errors=True)
            elif case.outcome in ("LOAD", "INTERFERED"):
                inconclusive += 1
                self.report(case, "INCONCLUSIVE" if case.outcome == "LOAD" else "INTERFERED")
            else:
                failed += 1
                self.report(case, case.outcome)
            case_seed = next_seed(case_seed)
        took = time.monotonic() - began
        self.procs.stop_all(everything=True)
        self.cpu.stopped = True
        self.hiccups.stop()
        print(f"conformance: {passed} passed, {failed} failed (seed {seed}, {took:.0f} s)"
              + (f"; {inconclusive} inconclusive (every attempt: only late drops while the CPU was saturated or the machine stalled, or a process ended from outside)" if inconclusive else ""),
              flush=True)
        if failed == 0 and inconclusive == 0 and not a.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        return 0 if failed == 0 else 1

    def maths(self, count):
        """Only the maths: submits `count` drawn definitions (no worker runs them) and compares
        the target J4 stores at submit (ceil(A(T)), or the peak VUs) with this file's."""
        seed = self.args.seed if self.args.seed is not None else random.SystemRandom().randrange(1, 1_000_000_000)
        self.seed = seed
        self.redis = Redis(self.procs, self.root)
        db, wrong, case_seed = 63, 0, seed
        self.redis.cli(db, "FLUSHDB", raw=True, check=True)
        path = os.path.join(self.root, "definition.yaml")
        for index in range(count):
            spec = draw_case(case_seed, {"max_rate": self.args.max_rate, "max_vus": self.args.max_vus})
            curve = Curve(spec["start"], spec["stages"], spec["tick_ms"])
            with open(path, "w") as f:
                f.write(definition_yaml(spec, "http://127.0.0.1:9/maths"))
            run = f"m-{self.token}-{index}"
            r = subprocess.run([self.j4, "submit", path, "--id", run, "--redis", self.redis.url(db)], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise HarnessError(f"j4 submit exited {r.returncode}: {r.stderr.strip()}")
            stored = int(self.redis.cli(db, "HGET", f"j4:{{r:{run}}}:ctl", "target", raw=True))
            ours = curve.total if spec["model"] == "arrival-rate" else curve.peak_vus
            if stored != ours:
                wrong += 1
                print(f"maths: seed {case_seed}: J4 stores target {stored}, Python computes {ours}\n{definition_yaml(spec, 'URL')}", flush=True)
            case_seed = next_seed(case_seed)
        self.redis.cli(db, "FLUSHDB", raw=True)
        self.procs.stop_all(everything=True)
        print(f"conformance: maths: {count - wrong} of {count} definitions agree with J4's target (seed {seed})", flush=True)
        shutil.rmtree(self.root, ignore_errors=True)
        return 1 if wrong else 0

    def print_line(self, case, attempt):
        count = len(getattr(case, "requests", []))
        target = getattr(case, "summary", {}).get("target")
        what = "total" if case.spec["model"] == "arrival-rate" else "peak VUs"
        expected = case.curve.total if case.spec["model"] == "arrival-rate" else case.curve.peak_vus
        outcome = {"LOAD": "late drops, machine saturated or stalled", "INTERFERED": "ended from outside"}.get(case.outcome, case.outcome)
        cpu = f", cpu peak {case.cpu_peak:.0%}" if case.cpu_peak is not None else ""
        cpu += f", stall {case.stall_ms:.0f} ms" if getattr(case, "stall_ms", 0) >= 5 else ""
        print(f"case {case.index} seed {case.seed}{f' attempt {attempt}' if attempt > 1 else ''}: {outcome} [{case.took:.1f}s{cpu}] "
              f"{describe(case.spec)}; expected {what} {expected}, summary target {target}, server {count}"
              + (f", {case.checked}" if getattr(case, "checked", None) else ""), flush=True)
        for note in case.notes:
            print(f"    note: {note}", flush=True)

    def report(self, case, outcome):
        title = {"FAIL": "FAILED", "HARNESS": "COULD NOT RUN", "INCONCLUSIVE": "INCONCLUSIVE (machine saturated, late drops only)",
                 "INTERFERED": "INCONCLUSIVE (a process of the case was ended from outside, every attempt)"}[outcome]
        out = ["", "=" * 100, f"{title}: case {case.index} of seed {self.seed}, case seed {case.seed}"]
        if outcome in ("HARNESS", "INTERFERED"):
            out.append(f"  harness error: {case.harness_error}")
        for invariant, details in case.failures:
            out.append(f"  invariant violated: {invariant}")
            out.append(f"      {details}")
        out.append("  definition:")
        out += ["      " + l for l in getattr(case, "yaml", definition_yaml(case.spec, "http://127.0.0.1:PORT/conformance")).splitlines()]
        out.append(f"  cluster: {describe(case.spec)}")
        for kind, ms in getattr(case, "operated", []):
            out.append(f"  operation: a worker {'joined' if kind == 'join' else 'was sent SIGTERM'} {ms:.0f} ms after the start")
        lines, n, why = worker_log_digest(case.dir)
        if why:
            out.append("  worker logs, dropped iterations by why=: " + ", ".join(f"{k}: {v}" for k, v in why.most_common()))
        if case.cpu_peak is not None:
            out.append(f"  machine CPU during the run: peak {case.cpu_peak:.0%} of all cores (0.5 s mean)")
            out.append(f"  longest machine stall during the run (a 1 ms sleep of the harness overshooting): {getattr(case, 'stall_ms', 0):.0f} ms")
        if lines:
            out.append(f"  log lines ({len(lines)} of {n}):")
            out += ["      " + l[:300] for l in lines]
        out.append(f"  reproduce: bash scripts/conformance.sh --seed {case.seed} --cases 1{self.options_text()}")
        out.append(f"  workdir (logs of every process, access log, redis.json): {case.dir}")
        out.append("=" * 100)
        print("\n".join(out), flush=True)

    def options_text(self):
        """The options a reproducing command needs besides the seed."""
        a, out = self.args, ""
        if os.path.abspath(a.j4) != os.path.abspath(DEFAULT_J4):
            out += f" --j4 {a.j4}"
        if a.max_rate != 3000:
            out += f" --max-rate {a.max_rate:g}"
        if a.max_vus != 200:
            out += f" --max-vus {a.max_vus}"
        return out


DEFAULT_J4 = ".build/debug/j4"


def main():
    ap = argparse.ArgumentParser(description="Randomized conformance harness for J4: random run definitions and cluster shapes, checked at the receiving server.")
    ap.add_argument("--seed", type=int, help="harness seed (default: random, printed); case k's seed is printed with it")
    ap.add_argument("--cases", type=int, default=30, help="cases to draw (default 30)")
    ap.add_argument("--minutes", type=float, default=60, help="draw no new case after this many minutes (default 60)")
    ap.add_argument("--j4", default=DEFAULT_J4, help=f"the j4 binary (default {DEFAULT_J4})")
    ap.add_argument("--keep", action="store_true", help="keep the workdirs of passed cases too")
    ap.add_argument("--retries", type=int, default=2,
                    help="reruns of a case whose only defect is late drops while the CPU was saturated (default 2)")
    ap.add_argument("--max-rate", type=float, default=3000, help="highest arrival rate drawn, per second (default 3000)")
    ap.add_argument("--max-vus", type=int, default=200, help="most VUs drawn (default 200)")
    ap.add_argument("--lock", default="/tmp/j4-build.lock", help="lock file held during each case, so no build runs alongside")
    ap.add_argument("--no-lock", action="store_true", help="do not take the lock")
    ap.add_argument("--maths", type=int, metavar="N",
                    help="only check the maths: submit N drawn definitions (nothing runs) and compare J4's stored target with Python's")
    args = ap.parse_args()
    if not os.access(args.j4, os.X_OK):
        print(f"conformance: no j4 binary at {args.j4}; build it first or pass --j4", file=sys.stderr)
        return 2
    harness = Harness(args)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return harness.maths(args.maths) if args.maths else harness.run()
    except KeyboardInterrupt:
        print(f"\nconformance: interrupted; every child ended; workdir kept: {harness.root}", file=sys.stderr, flush=True)
        return 130
    finally:
        harness.procs.stop_all(everything=True)


if __name__ == "__main__":
    sys.exit(main())
