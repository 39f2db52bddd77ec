"""The curve, exactly, and drawing a case: a run definition and a cluster shape from a seed. Part of scripts/conformance.py."""

import hashlib
import math
import random
from fractions import Fraction


# ---------------------------------------------------------------------------------------
# The curve, exactly (docs/PROTOCOL.md section 1), independent of J4's Swift code.
# Targets are thousandths (milli-iterations per second, or milli-VUs); time is ms.
# ---------------------------------------------------------------------------------------


def round_half_away(x):
    """Swift's Double.rounded(): to nearest, ties away from zero (x >= 0 here)."""
    whole = math.floor(x)
    return int(whole) + (1 if x - whole >= 0.5 else 0)


def trunc_div(a, b):
    """Integer division truncated towards zero (b > 0), as Swift's Int128 division."""
    q = abs(a) // b
    return q if a >= 0 else -q


class Curve:
    """A(t), F(n) and V(n) of a definition: stages as (duration_ms, target_milli, curve, every_ms)."""

    def __init__(self, start_milli, stages, tick_ms):
        self.tick_ms = tick_ms
        self.pieces = []
        t, previous, before = 0, start_milli, Fraction(0)
        for d, r1, shape, every in stages:
            r0 = previous
            p = {"start": t, "d": d, "r0": r0, "r1": r1, "every": 0, "steps": [], "prefix": [], "before": before}
            if shape != "linear":
                m = -(-d // every)
                steps = []
                for j in range(m):
                    if j == m - 1:
                        q = r1
                    elif shape == "exponential":
                        q = round_half_away(float(r0) * math.pow(float(r1) / float(r0), float(j + 1) / float(m)))
                    else:
                        q = r0 + trunc_div((r1 - r0) * (j + 1), m)
                    steps.append(q)
                prefix, acc = [0], 0
                for j in range(m):
                    acc += steps[j] * min(every, d - j * every)
                    prefix.append(acc)
                p.update(every=every, steps=steps, prefix=prefix)
            self.pieces.append(p)
            before += self.integral(p, d)
            t += d
            previous = r1
        self.duration_ms = t
        self.ticks = -(-t // tick_ms)

    @staticmethod
    def integral(p, tau):
        """I(tau) of one stage, in iterations."""
        tau = max(0, min(tau, p["d"]))
        if p["every"] == 0:
            d, r0, r1 = p["d"], p["r0"], p["r1"]
            return Fraction(2 * d * r0 * tau + (r1 - r0) * tau * tau, 2_000_000 * d)
        j = min(tau // p["every"], len(p["steps"]) - 1)
        return Fraction(p["prefix"][j] + p["steps"][j] * (tau - j * p["every"]), 1_000_000)

    def piece(self, t):
        found = self.pieces[0]
        for p in self.pieces:
            if p["start"] <= t:
                found = p
        return found

    def A(self, t):
        t = max(0, min(t, self.duration_ms))
        p = self.piece(t)
        return p["before"] + self.integral(p, t - p["start"])

    def F(self, n):
        return math.ceil(self.A(min(max(n, 0) * self.tick_ms, self.duration_ms)))

    @property
    def total(self):
        return math.ceil(self.A(self.duration_ms))

    def target_milli(self, t):
        if t < 0 or t >= self.duration_ms:
            return 0
        p = self.piece(t)
        tau = t - p["start"]
        if p["every"] == 0:
            return (p["r0"] * p["d"] + (p["r1"] - p["r0"]) * tau) // p["d"]
        return p["steps"][min(tau // p["every"], len(p["steps"]) - 1)]

    def V(self, n):
        if n < 0 or n >= self.ticks:
            return 0
        return self.target_milli(n * self.tick_ms) // 1000

    @property
    def peak_vus(self):
        return max([self.V(n) for n in range(self.ticks)] + [0])


# ---------------------------------------------------------------------------------------
# Drawing a case.
# ---------------------------------------------------------------------------------------

ODD_TICKS = [100, 130, 170, 250, 333, 400, 500, 700, 999, 1000, 1300, 1700, 2000]
TTLS = ["1s", "1500ms", "2s", "3s", "5s", "10s"]


def next_seed(seed):
    """The seed of the case after the one with `seed`: a chain, so a case reruns alone."""
    return int(hashlib.sha256(f"j4-conformance:{seed}".encode()).hexdigest()[:8], 16) % 1_000_000_000


def milli_text(milli):
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli // 1000}.{milli % 1000:03d}".rstrip("0")


def ms_text(ms):
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    if ms > 1000 and ms % 100 == 0 and rng_text_style(ms):
        return f"{ms / 1000:g}s"
    return f"{ms}ms"


def rng_text_style(ms):
    # Deterministic variety in how durations are written (1.3s vs 1300ms).
    return (ms // 100) % 2 == 1


def draw_target(rng, model, limits, allow_zero=True):
    """A target in thousandths, log-uniform: 1 to max_vus VUs, or 1 to max_rate per second
    (half of them with decimals)."""
    if allow_zero and rng.random() < 0.2:
        return 0
    if model == "vus":
        return int(round(math.exp(rng.uniform(0, math.log(limits["max_vus"]))))) * 1000
    top = int(limits["max_rate"] * 1000)
    rate = math.exp(rng.uniform(0, math.log(limits["max_rate"])))
    if rng.random() < 0.5:
        return max(1000, min(top, int(round(rate)) * 1000))
    return max(1000, min(top, int(round(rate * 1000))))


def draw_case(seed, limits=None):
    limits = limits or {"max_rate": 3000, "max_vus": 200}
    rng = random.Random(seed)
    model = "arrival-rate" if rng.random() < 0.6 else "vus"
    tick = rng.choice(ODD_TICKS) if rng.random() < 0.6 else rng.randint(100, 2000)
    shards = rng.choice([1, 2, 3, 5, 7, 16, 64]) if rng.random() < 0.5 else rng.randint(1, 64)
    ttl = rng.choice(TTLS)
    total_ms = rng.randint(2000, 8000)
    nstages = rng.randint(1, 4)
    cuts = sorted(rng.sample(range(200, total_ms - 199), nstages - 1)) if nstages > 1 else []
    bounds = [0] + cuts + [total_ms]
    durations = [b - a for a, b in zip(bounds, bounds[1:])]  # each at least 1 ms: short stages are edge cases too
    start = 0 if rng.random() < 0.5 else draw_target(rng, model, limits, allow_zero=False)
    stages, previous = [], start
    for d in durations:
        target = draw_target(rng, model, limits)
        shape = rng.choice(["linear", "linear", "step", "exponential"])
        if shape == "exponential" and (previous == 0 or target == 0):
            shape = "step"
        every = 0
        if shape != "linear":
            every = rng.randint(100, max(100, d)) if rng.random() < 0.7 else rng.choice([100, 170, 250, 500, 1000])
        stages.append((d, target, shape, every))
        previous = target
    if all(s[1] == 0 for s in stages) and start == 0:  # something to run
        d, _, shape, every = stages[-1]
        stages[-1] = (d, draw_target(rng, model, limits, allow_zero=False), "linear" if shape == "exponential" else shape, every)
    if rng.random() < 0.7:
        cluster = {"kind": "cluster", "workers": rng.randint(1, 5), "supervisors": rng.randint(1, 2)}
    else:
        cluster = {"kind": "run", "workers": rng.randint(1, 5)}
    latency = rng.randint(20, 50) if model == "vus" else rng.choice([0, 0, 1, 2, 5])
    # Routine operations mid-run (drawn last, so that the draws above keep their values for a
    # seed): a worker joins, or one leaves with SIGTERM, at a time after the run's start.
    if cluster["kind"] == "cluster":
        events = []
        if rng.random() < 0.3:
            events.append(("join", rng.randint(0, total_ms)))
        if cluster["workers"] >= 2 and rng.random() < 0.3:
            events.append(("leave", rng.randint(0, total_ms)))
        cluster["events"] = sorted(events, key=lambda e: e[1])
    return {
        "seed": seed, "model": model, "tick_ms": tick, "shards": shards, "ttl": ttl,
        "start": start, "stages": stages, "cluster": cluster, "latency_ms": latency,
    }


def definition_yaml(case, url):
    lines = [
        f"name: conformance-{case['seed']}",
        "scenario: http",
        f"model: {case['model']}",
        f"start: {milli_text(case['start'])}",
        "stages:",
    ]
    for d, target, shape, every in case["stages"]:
        extra = "" if shape == "linear" else f", curve: {shape}, every: {ms_text(every)}"
        lines.append(f"  - {{ duration: {ms_text(d)}, target: {milli_text(target)}{extra} }}")
    lines += [
        f"tick: {ms_text(case['tick_ms'])}",
        f"shards: {case['shards']}",
        f"leaseTTL: {case['ttl']}",
        "params:",
        f'  request: {{ url: "{url}" }}',
        "  timeout: 20s",
    ]
    return "\n".join(lines) + "\n"


def describe(case):
    c = case["cluster"]
    shape = (f"{c['workers']} worker(s), {c['supervisors']} supervisor(s)" if c["kind"] == "cluster"
             else f"j4 run --workers {c['workers']}")
    shape += "".join(f", a worker {'joins' if kind == 'join' else 'leaves (SIGTERM)'} at {at} ms" for kind, at in c.get("events", []))
    stages = " ".join(f"{s[2][:3]}{'/' + str(s[3]) if s[3] else ''}->{milli_text(s[1])}@{s[0]}ms" for s in case["stages"])
    return (f"{case['model']} start {milli_text(case['start'])} [{stages}] tick {case['tick_ms']}ms "
            f"shards {case['shards']} ttl {case['ttl']}; {shape}; sink latency {case['latency_ms']}ms")
