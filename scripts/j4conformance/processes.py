"""Processes: the children a case starts, and the private redis-server. Part of scripts/conformance.py."""

import json
import os
import signal
import subprocess
import time


# ---------------------------------------------------------------------------------------
# Processes.
# ---------------------------------------------------------------------------------------


class Procs:
    """Every child process this harness started, so that all are ended at exit (also Ctrl-C)."""

    def __init__(self):
        self.children = []
        self.lasting = []  # ended only by stop_all(everything=True): the private redis-server

    def start(self, args, log_path, merge=True, env=None):
        """Starts a child in its own process group; stdout and stderr go to `log_path` (with
        merge=False, stderr goes to `log_path`.err); `env`: its environment (default ours)."""
        log = open(log_path, "ab")
        err = subprocess.STDOUT if merge else open(log_path + ".err", "ab")
        p = subprocess.Popen(args, stdout=log, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        log.close()
        if not merge:
            err.close()
        p.log_path = log_path
        self.children.append(p)
        return p

    def stop(self, p, timeout, sig=signal.SIGTERM):
        """Signals one child (its own process group) and waits; SIGKILL after `timeout`.
        Returns True when it exited on its own."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=timeout)
            clean = True
        except subprocess.TimeoutExpired:
            clean = False
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        if p in self.children:
            self.children.remove(p)
        return clean

    def stop_all(self, everything=False):
        for p in list(self.children):
            if everything or p not in self.lasting:
                self.stop(p, 10)


def wait_for(what, predicate, timeout, interval=0.05):
    """Waits for an event (predicate true), up to a generous timeout; raises HarnessError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class HarnessError(Exception):
    """The harness could not run a case (not an invariant failure of J4)."""


class Interfered(HarnessError):
    """A process of the case was ended by someone else: the case is run again."""


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Redis:
    """A private redis-server on a unix socket, read with redis-cli."""

    def __init__(self, procs, directory):
        self.socket = os.path.join(directory, "redis.sock")
        self.proc = procs.start(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
             "--databases", "64", "--dir", directory],
            os.path.join(directory, "redis.log"))
        procs.lasting.append(self.proc)
        wait_for("redis-server to answer PING", lambda: os.path.exists(self.socket) and self.cli(0, "PING", raw=True) == "PONG", 30)

    def cli(self, db, *args, raw=False, check=False):
        cmd = ["redis-cli", "-s", self.socket, "-n", str(db)] + ([] if raw else ["--json"]) + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            if check:
                raise HarnessError(f"redis-cli {' '.join(args)}: {r.stderr.strip()}")
            return None
        out = r.stdout.strip()
        if raw:
            return out
        try:
            return json.loads(out) if out else None
        except json.JSONDecodeError:
            return out

    def url(self, db):
        return f"unix://{self.socket}?db={db}"
