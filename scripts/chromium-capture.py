#!/usr/bin/env python3
"""Load a URL in headless Chromium via the DevTools protocol (stdlib only),
wait until a JS condition is true (or a fixed delay), then dump the DOM
(outerHTML) and a PNG screenshot.

usage:
  cdp_capture.py URL [--html OUT.html] [--png OUT.png]
                     [--until 'JS expr'] [--wait SECONDS] [--timeout SECONDS]
                     [--width 1280] [--height 1800] [--full-page]
                     [--chromium /usr/lib/chromium/chromium] [-v]

--until   JS expression polled every 50 ms after the load event; capture
          happens as soon as it is truthy (error exit 3 if --timeout expires).
--wait    extra fixed delay (s) after load / after --until becomes true.
Exit codes: 0 ok, 2 usage, 3 condition timeout, 4 browser/protocol failure.
"""
import argparse, base64, json, os, shutil, socket, struct, subprocess, sys
import tempfile, time

T0 = time.monotonic()
VERBOSE = False


def log(msg):
    if VERBOSE:
        sys.stderr.write("[%7.3fs] %s\n" % (time.monotonic() - T0, msg))


class WS:
    """Minimal RFC 6455 client: text frames out (masked), frames in."""

    def __init__(self, url, timeout=30):
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n") % (path, hostport, key)
        self.sock.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("websocket handshake failed: %r" % head)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(hdr + mask + masked)

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            if op == 0x8:
                raise ConnectionError("websocket closed by peer")
            if op == 0x9:  # ping -> pong (unmasked send is not allowed; mask)
                m = os.urandom(4)
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + m +
                                  bytes(b ^ m[i & 3] for i, b in enumerate(payload)))
                continue
            if op == 0xA:
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode()


class CDP:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            self.ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            m = json.loads(self.ws.recv())
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m["result"]
            if "method" in m:
                self.events.append(m)

    def wait_event(self, method, session=None, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["method"] == method and (session is None or e.get("sessionId") == session):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out waiting for " + method)
            self.ws.sock.settimeout(left)
            m = json.loads(self.ws.recv())
            if "method" in m:
                self.events.append(m)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--html")
    ap.add_argument("--png")
    ap.add_argument("--until", help="JS condition to wait for")
    ap.add_argument("--wait", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1800)
    ap.add_argument("--full-page", action="store_true")
    ap.add_argument("--chromium", default="/usr/lib/chromium/chromium")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    VERBOSE = a.verbose

    udd = tempfile.mkdtemp(prefix="cdp-chromium-")
    errlog = open(os.path.join(udd, "stderr.log"), "wb")
    cmd = [a.chromium, "--headless", "--no-sandbox", "--disable-gpu",
           "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
           "--user-data-dir=" + udd, "--window-size=%d,%d" % (a.width, a.height),
           "--hide-scrollbars", "--mute-audio", "--no-first-run",
           "--no-default-browser-check", "--disable-extensions",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-default-apps",
           "--force-device-scale-factor=1", "about:blank"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=errlog, start_new_session=True)
    rc = 0
    cdp = None
    try:
        portfile = os.path.join(udd, "DevToolsActivePort")
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError("chromium exited early rc=%s" % proc.returncode)
            try:
                with open(portfile) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[1]:
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no DevToolsActivePort after 15 s")
            time.sleep(0.02)
        wsurl = "ws://127.0.0.1:%s%s" % (lines[0].strip(), lines[1].strip())
        log("browser up: " + wsurl)
        cdp = CDP(WS(wsurl))

        tid = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = cdp.call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        cdp.call("Page.enable", session=sid)
        cdp.call("Emulation.setDeviceMetricsOverride",
                 {"width": a.width, "height": a.height, "deviceScaleFactor": 1,
                  "mobile": False}, session=sid)
        log("target attached")
        nav = cdp.call("Page.navigate", {"url": a.url}, session=sid)
        if nav.get("errorText"):
            raise RuntimeError("navigate failed: " + nav["errorText"])
        cdp.wait_event("Page.loadEventFired", sid, timeout=a.timeout)
        log("load event fired")

        def ev(expr):
            r = cdp.call("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                         session=sid)
            if "exceptionDetails" in r:
                raise RuntimeError("JS exception: %s" % r["exceptionDetails"])
            return r["result"].get("value")

        if a.until:
            deadline = time.monotonic() + a.timeout
            while not ev(a.until):
                if time.monotonic() > deadline:
                    sys.stderr.write("condition not met within %.1fs: %s\n" % (a.timeout, a.until))
                    rc = 3
                    break
                time.sleep(0.05)
            else:
                log("condition true")
        if a.wait:
            time.sleep(a.wait)
            log("waited %.2fs" % a.wait)

        if a.html:
            html = ev("(document.doctype ? new XMLSerializer().serializeToString(document.doctype)"
                      " + '\\n' : '') + document.documentElement.outerHTML")
            with open(a.html, "w", encoding="utf-8") as f:
                f.write(html)
            log("html written (%d chars)" % len(html))
        if a.png:
            params = {"format": "png"}
            if a.full_page:
                params["captureBeyondViewport"] = True
            data = cdp.call("Page.captureScreenshot", params, session=sid)["data"]
            with open(a.png, "wb") as f:
                f.write(base64.b64decode(data))
            log("png written")
    except Exception as e:
        sys.stderr.write("cdp_capture: %s\n" % e)
        rc = 4
    finally:
        if cdp is not None:
            try:
                cdp.call("Browser.close", timeout=5)
            except Exception:
                pass
        else:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # own process group (start_new_session)
            proc.wait()
        log("browser exited rc=%s" % proc.returncode)
        errlog.close()
        if rc and VERBOSE:
            sys.stderr.write(open(os.path.join(udd, "stderr.log"), errors="replace").read()[-3000:])
        shutil.rmtree(udd, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
