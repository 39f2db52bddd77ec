/// The dashboard page's script: the runs list (`GET /api/runs` every 2 s) and a run's live
/// view (the `/api/runs/{id}/stream` events). Every number it shows carries its raw value
/// in `data-value` and its summary field in `data-field`, for people and tests alike.
enum DashboardScript {
    static let source = #"""
        "use strict";
        const CONTROL = document.body.dataset.control === "1";
        const app = document.getElementById("app");
        const LIVE = new Set(["pending", "running", "stopping"]);
        function h(tag, attrs, ...kids) {
          const e = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) { if (v !== undefined && v !== null) e.setAttribute(k, v); }
          for (const k of kids.flat()) { if (k !== undefined && k !== null) e.append(k instanceof Node ? k : String(k)); }
          return e;
        }
        const num = (v, d = 0) => v === null || v === undefined ? "-" : Number(v).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
        const ms = v => v === null || v === undefined ? "-" : Number(v).toFixed(2) + " ms";
        const clock = t => t ? new Date(t).toISOString().slice(11, 23) : "--:--:--.---";
        const stateBadge = s => h("span", { class: "state " + s, "data-field": "state", "data-value": s }, s);
        const field = (name, value, shown) => h("b", { "data-field": name, "data-value": value === null || value === undefined ? "" : String(value) }, shown);
        const tile = (label, name, value, shown) => h("div", { class: "tile" }, h("span", {}, label), field(name, value, shown));
        function table(head, rows, numeric) {
          return h("table", {}, h("tr", {}, head.map((t, i) => h("th", { class: numeric && numeric[i] ? "num" : null }, t))),
            rows.map(r => h("tr", r.attrs || {}, r.cells.map((c, i) => h("td", { class: numeric && numeric[i] ? "num" : null }, c)))));
        }

        // A line chart: series of [x, y] points, y from 0; gaps where a point is missing; the
        // run's notable events as dashed vertical marks (their details on hover).
        function chart(title, unit, series, marks) {
          const W = 460, H = 250, L = 46, R = 8, T = 26, B = 22;
          let xMax = 1, yMax = 1, count = 0;
          for (const s of series) for (const [x, y] of s.points) { xMax = Math.max(xMax, x); if (y !== null) { yMax = Math.max(yMax, y); count++; } }
          yMax *= 1.1;
          const px = x => L + (W - L - R) * x / xMax, py = y => H - B - (H - T - B) * y / yMax;
          const ns = "http://www.w3.org/2000/svg";
          const svg = document.createElementNS(ns, "svg");
          const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; svg.append(e); return e; };
          svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
          svg.setAttribute("class", "chart");
          svg.setAttribute("data-points", String(count));
          const step = nice(yMax / 1.1 / 4);
          for (let v = 0; v <= yMax; v += step) {
            add("line", { x1: L, x2: W - R, y1: py(v), y2: py(v), stroke: "#eee" });
            add("text", { x: L - 6, y: py(v) + 4, "text-anchor": "end" }, label(v));
          }
          const xs = nice(xMax / 6);
          for (let v = 0; v <= xMax; v += xs) add("text", { x: px(v), y: H - 6, "text-anchor": "middle" }, label(v) + "s");
          for (const m of marks || []) {
            if (m.x < 0 || m.x > xMax) continue;
            add("line", { class: "mark", "data-event": m.type, x1: px(m.x), x2: px(m.x), y1: T, y2: H - B, stroke: "#9aa0a6", "stroke-dasharray": "2,3" })
              .append(Object.assign(document.createElementNS(ns, "title"), { textContent: m.label }));
          }
          let lx = L + 4;
          for (const s of series) {
            let seg = [];
            // A lone point is a dot (a one-point line draws nothing).
            const flush = () => {
              if (seg.length === 1) { const [cx, cy] = seg[0].split(","); add("circle", { class: "series", "data-series": s.name, cx, cy, r: 2.5, fill: s.color }); }
              else if (seg.length) add("polyline", { class: "series", "data-series": s.name, fill: "none", stroke: s.color, "stroke-width": 1.8, "stroke-dasharray": s.dashed ? "6,4" : "none", points: seg.join(" ") });
              seg = [];
            };
            for (const [x, y] of s.points) { if (y === null) flush(); else seg.push(px(x).toFixed(1) + "," + py(y).toFixed(1)); }
            flush();
            add("rect", { x: lx, y: 6, width: 10, height: 10, fill: s.color });
            add("text", { x: lx + 14, y: 15, fill: "#1d232a" }, s.name);
            lx += 22 + s.name.length * 7;
          }
          add("text", { x: W - R, y: 15, "text-anchor": "end" }, unit);
          return h("div", { class: "card" }, h("h2", {}, title), svg);
        }
        function nice(raw) { if (!(raw > 0)) return 1; const p = Math.pow(10, Math.floor(Math.log10(raw))); for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p; return 10 * p; }
        function label(v) { return v >= 10000 ? (v / 1000).toFixed(0) + "k" : (Number.isInteger(v) ? String(v) : v.toFixed(1)); }

        // ---- the list of runs ----
        async function listView() {
          document.getElementById("crumb").textContent = "runs";
          const refresh = async () => {
            try {
              const r = await fetch("/api/runs");
              const runs = await r.json();
              if (!r.ok) throw new Error(runs.error || r.statusText);
              document.getElementById("conn").textContent = "updated " + new Date().toLocaleTimeString();
              const rows = runs.map(x => ({ attrs: { "data-run": x.run }, cells: [
                h("a", { href: "/runs/" + x.run }, x.run), x.name, stateBadge(x.state), x.scenario + " / " + x.model,
                num(x.target, 1) + (x.model === "vus" ? " VUs" : "/s"), num(x.achieved, 1) + "/s", num(x.started), num(x.failed),
                h("span", { class: x.thresholds === "failed" ? "fail" : (x.thresholds === "passed" ? "pass" : "muted") }, x.thresholds)] }));
              app.replaceChildren(h("div", { class: "card" }, h("h1", {}, "Runs"),
                runs.length ? table(["run", "name", "state", "scenario / model", "target", "achieved", "started", "failed", "thresholds"], rows, [0, 0, 0, 0, 1, 1, 1, 1, 0])
                            : h("p", { class: "muted" }, "No runs in this Redis yet: `j4 submit` one.")));
            } catch (e) { document.getElementById("conn").textContent = "cannot load runs: " + e.message; }
          };
          await refresh();
          setInterval(refresh, 2000);
        }

        // ---- one run, live ----
        function runView(id) {
          document.getElementById("crumb").replaceChildren("/ ", h("span", {}, id));
          const seconds = new Map(), seen = new Map();
          let latest = null, notice = "", problem = "", frame = null, ended = false;
          const conn = document.getElementById("conn");
          // EventSource reconnects by itself after a dropped connection, not after an answer
          // other than 200 (a dashboard restarting, Redis unreachable): then this does, every 3 s.
          function connect() {
            const es = new EventSource(`/api/runs/${id}/stream`);
            es.addEventListener("history", e => { for (const s of JSON.parse(e.data).seconds) seconds.set(s.unix, s); });
            es.addEventListener("state", e => { const s = JSON.parse(e.data); notice = `The run went from ${s.previous} to ${s.state}.`; });
            es.addEventListener("point", e => {
              latest = JSON.parse(e.data);
              problem = "";
              for (const s of latest.seconds) seconds.set(s.unix, s);
              for (const e of latest.events) seen.set(e.id, e);
              conn.textContent = (LIVE.has(latest.state) ? "live · " : "ended · ") + clock(latest.now_ms);
              render();
            });
            es.addEventListener("problem", e => { problem = JSON.parse(e.data).message; if (latest) render(); else conn.textContent = problem; });
            es.addEventListener("end", e => { ended = true; es.close(); conn.textContent = "run " + JSON.parse(e.data).state; });
            es.onerror = () => {
              if (ended) return;
              conn.textContent = "stream interrupted, reconnecting…";
              if (es.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
            };
          }
          connect();
          fetch(`/api/runs/${id}`).then(r => { if (r.status === 404) { ended = true; app.replaceChildren(h("div", { class: "banner" }, `No run ${id} in this Redis.`)); } });

          function render() {
            const p = latest, s = p.summary, vus = s.model === "vus", unit = vus ? "VUs" : "/s";
            const rows = [...seconds.values()].sort((a, b) => a.unix - b.unix);
            const at = x => x.t + x.seconds / 2, rate = (x, v) => v / x.seconds;
            const last = rows.length ? rows[rows.length - 1] : null;
            if (!frame) {
              frame = { notice: h("div", { class: "banner" }), head: h("div"), live: h("div") };
              const links = h("div", { class: "controls" }, h("a", { href: `/api/runs/${p.run}/report`, download: `j4-${p.run}.html` }, "Download the HTML report"));
              if (CONTROL && LIVE.has(s.state)) { frame.controls = controls(p.run, vus); links.append(frame.controls); }
              app.replaceChildren(frame.notice, h("div", { class: "card" }, frame.head, links), frame.live);
            }
            if (frame.controls && !LIVE.has(s.state)) { frame.controls.remove(); frame.controls = null; }
            frame.notice.textContent = [problem, notice].filter(x => x).join(" ");
            frame.head.replaceChildren(
              h("h1", {}, `${s.name} `, stateBadge(s.state)),
              h("div", { class: "muted" }, `${p.run} · ${s.scenario} · ${s.model}`, p.stage ? ` · stage ${p.stage[0]} of ${p.stage[1]}` : "",
                ` · ${num(p.elapsed_s, 0)} s of ${num(p.length_s, 0)} s`),
              h("div", { class: "bar" }, h("i", { style: `width:${p.length_s > 0 ? Math.min(100, 100 * p.elapsed_s / p.length_s) : 0}%` })));
            const tiles = h("div", { class: "grid card" },
              tile("target now", "target_now", p.target, num(p.target, 1) + " " + unit),
              tile("achieved (last s)", "achieved", last ? rate(last, last.started) : null, last ? num(rate(last, last.started), 1) + "/s" : "-"),
              ["started", "ok", "failed", "dropped", "unclaimed", "lost", "pending"].map(k => tile(k, k, s[k], num(s[k]))),
              ["p50", "p95", "p99"].map(k => tile("latency " + k, "latency_ms." + k, s.latency_ms[k], ms(s.latency_ms[k]))),
              tile("workers", "workers", p.workers.length, num(p.workers.length)));
            // Marks on the charts: what changed the cluster or the load, not every lease taken.
            const marks = [...seen.values()].filter(e => MARKED.has(e.type) && e.at_ms && p.start_ms).map(e => ({ x: (e.at_ms - p.start_ms) / 1000, type: e.type,
              label: `${((e.at_ms - p.start_ms) / 1000).toFixed(1)}s ${e.type} ` + Object.entries(e.fields).sort().map(([k, v]) => `${k}=${v}`).join(" ") }));
            const target = { name: "target", color: "#9aa0a6", dashed: true, points: rows.map(x => [at(x), x.target]) };
            const charts = h("div", { class: "charts" },
              chart("Iterations per second", "per s", [
                ...(vus ? [] : [target]),
                { name: "started", color: "#1a73e8", points: rows.map(x => [at(x), rate(x, x.started)]) },
                { name: "ok", color: "#1e8e3e", points: rows.map(x => [at(x), rate(x, x.ok)]) },
                { name: "failed", color: "#c5221f", points: rows.map(x => [at(x), rate(x, x.failed)]) }], marks),
              chart("Latency per second", "ms", ["p50", "p95", "p99"].map((k, i) => ({ name: k, color: ["#1e8e3e", "#f29900", "#c5221f"][i], points: rows.map(x => [at(x), x[k] === undefined ? null : x[k]]) })), marks),
              vus ? chart("Virtual users (target)", "VUs", [target])
                  : chart("Dropped per second", "per s", [{ name: "dropped", color: "#b06000", points: rows.map(x => [at(x), rate(x, x.dropped)]) }]));
            frame.live.replaceChildren(tiles, charts,
              h("div", { class: "cols" }, h("div", {}, thresholds(p), steps(s), checks(s), custom(s)), h("div", {}, workers(p), events(p))));
          }
        }

        function thresholds(p) {
          const s = p.summary;
          if (!s.thresholds.length) return null;
          return h("div", { class: "card" }, h("h2", {}, "Thresholds"), table(["", "threshold", "now"], s.thresholds.map((t, i) => ({ attrs: { "data-threshold": t.threshold },
            cells: [h("span", { class: t.ok ? "pass" : "fail" }, t.ok ? "✓" : "✗"), t.threshold, field("threshold", t.value, p.thresholds[i])] }))));
        }
        function steps(s) {
          const names = Object.keys(s.steps).sort();
          if (!names.length) return null;
          return h("div", { class: "card" }, h("h2", {}, "Steps"), table(["step", "count", "failed", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"], names.map(n => {
            const x = s.steps[n], l = x.latency_ms;
            return { attrs: { "data-step": n }, cells: [n, field("count", x.count, num(x.count)), field("failed", x.failed, num(x.failed)), num(l.p50, 2), num(l.p95, 2), num(l.p99, 2), num(l.max, 2),
              Object.entries(x.errors).map(([k, v]) => `${k}=${v}`).join(" ")] };
          }), [0, 1, 1, 1, 1, 1, 1, 0]));
        }
        function checks(s) {
          const names = Object.keys(s.checks).sort();
          if (!names.length) return null;
          return h("div", { class: "card" }, h("h2", {}, "Checks"), table(["check", "passed", "failed", "rate"], names.map(n => {
            const c = s.checks[n], total = c.pass + c.fail;
            return { attrs: { "data-check": n }, cells: [n, field("pass", c.pass, num(c.pass)), field("fail", c.fail, num(c.fail)), total ? (100 * c.pass / total).toFixed(2) + "%" : "-"] };
          }), [0, 1, 1, 1]));
        }
        function custom(s) {
          const counters = Object.keys(s.counters).sort(), trends = Object.keys(s.trends).sort();
          if (!counters.length && !trends.length) return null;
          return h("div", { class: "card" }, h("h2", {}, "Custom metrics"),
            counters.length ? table(["counter", "value"], counters.map(n => ({ attrs: { "data-counter": n }, cells: [n, field("value", s.counters[n], num(s.counters[n]))] })), [0, 1]) : null,
            trends.length ? table(["trend", "count", "p50 ms", "p95 ms", "p99 ms", "mean ms"], trends.map(n => { const t = s.trends[n], l = t.latency_ms;
              return { attrs: { "data-trend": n }, cells: [n, field("count", t.count, num(t.count)), num(l.p50, 2), num(l.p95, 2), num(l.p99, 2), num(l.mean, 2)] }; }), [0, 1, 1, 1, 1, 1]) : null);
        }
        function workers(p) {
          return h("div", { class: "card" }, h("h2", {}, `Workers (${p.workers.length})`), p.workers.length ? table(["worker", "heartbeat", "shards (lease left)"], p.workers.map(w => ({
            attrs: { "data-worker": w.id },
            cells: [w.id, w.heartbeat_ms ? ((p.now_ms - w.heartbeat_ms) / 1000).toFixed(1) + " s ago" : "-",
              w.leases.length ? w.leases.map(l => `${l.shard} (${Math.max(0, (l.expires_ms - p.now_ms) / 1000).toFixed(1)} s)`).join(", ") : "none"] }))) : h("p", { class: "muted" }, "No worker holds a shard."));
        }
        const MARKED = new Set(["takeover", "lost", "lease_expired", "worker_dead", "scaled", "stop", "aborted", "supervisor", "redis_changed", "failed", "capped"]);
        const KIND = { acquired: "join", takeover: "join", started: "join", lost: "loss", lease_expired: "loss", worker_dead: "loss", failed: "loss", aborted: "loss",
          stop: "control", scaled: "control", submitted: "control", supervisor: "cluster", redis_changed: "cluster", released: "cluster" };
        function events(p) {
          const start = p.start_ms;
          return h("div", { class: "card" }, h("h2", {}, "Events"), h("div", { class: "events" }, table(["time", "at", "event", "details"], p.events.map(e => ({
            attrs: { "data-event": e.type },
            cells: [clock(e.at_ms), start && e.at_ms ? ((e.at_ms - start) / 1000).toFixed(1) + "s" : "", h("span", { class: "ev " + (KIND[e.type] || "") }, e.type),
              h("code", {}, Object.entries(e.fields).sort().map(([k, v]) => `${k}=${v}`).join(" "))] })))));
        }

        function controls(run, vus) {
          const out = h("span", { class: "muted" });
          const send = async (what, body) => {
            out.textContent = "…";
            try {
              const r = await fetch(`/api/runs/${run}/${what}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });
              const j = await r.json();
              out.textContent = r.ok ? (what === "scale" ? `target ${j.target} from tick ${j.from_tick}` : `${j.state}: no tick from ${j.stop_tick} on`) : (j.error || r.statusText);
            } catch (e) { out.textContent = e.message; }
          };
          const target = h("input", { type: "number", min: "0", step: vus ? "1" : "0.001", placeholder: vus ? "VUs" : "per s", "aria-label": "new target" });
          const stop = h("button", {}, "Stop"), abort = h("button", { class: "danger" }, "Abort"), scale = h("button", {}, "Scale");
          stop.onclick = () => send("stop");
          abort.onclick = () => { if (confirm("Abort this run now? Iterations in flight are cancelled.")) send("abort", { reason: "aborted from the dashboard" }); };
          scale.onclick = () => target.value === "" ? (out.textContent = "give the new target first") : send("scale", { target: Number(target.value) });
          return h("span", { class: "controls" }, stop, abort, target, scale, out);
        }

        const m = location.pathname.match(/^\/runs\/([a-z0-9_-]{1,64})\/?$/);
        if (m) runView(m[1]); else listView();
        """#
}
