/// The dashboard's one page, with its style and script inside: nothing is fetched from
/// anywhere but the dashboard itself. The script shows the list of runs at `/` and a run's
/// live view at `/runs/{id}`, from the JSON API and the stream.
public enum DashboardPage {
    /// The page; `control` shows the stop, abort and scale buttons.
    public static func html(control: Bool) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>J4 dashboard</title>
        <style>\(style)</style></head>
        <body data-control="\(control ? "1" : "0")">
        <header><a href="/" class="brand">J4</a><span id="crumb"></span><span id="conn" class="conn"></span></header>
        <main id="app"><p class="muted">Loading…</p></main>
        <script>\(DashboardScript.source)</script>
        </body></html>

        """
    }

    static let style = #"""
        :root { --fg: #1d232a; --muted: #6b7480; --line: #e3e6ea; --bg: #f6f7f9; --ok: #1e8e3e; --bad: #c5221f; --warn: #b06000; --accent: #1a73e8; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
        header { display: flex; gap: 12px; align-items: center; padding: 10px 20px; background: #fff; border-bottom: 1px solid var(--line); }
        header .brand { font-weight: 700; font-size: 18px; color: var(--fg); text-decoration: none; }
        header .conn { margin-left: auto; font-size: 12px; color: var(--muted); }
        main { padding: 16px 20px; max-width: 1400px; margin: 0 auto; }
        a { color: var(--accent); }
        h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 0 0 8px; }
        .muted { color: var(--muted); }
        .card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; margin-bottom: 14px; }
        .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 10px; }
        .tile { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
        .tile span { display: block; font-size: 12px; color: var(--muted); }
        .tile b { font-size: 20px; font-weight: 600; }
        .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 14px; }
        svg.chart { width: 100%; height: auto; display: block; }
        svg.chart text { font-size: 11px; fill: var(--muted); }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); font-variant-numeric: tabular-nums; }
        th { font-weight: 600; color: var(--muted); font-size: 12px; }
        td.num, th.num { text-align: right; white-space: nowrap; }
        .state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e8eaed; }
        .state.running, .state.pending, .state.stopping { background: #e6f4ea; color: var(--ok); }
        .state.aborted, .state.failed { background: #fce8e6; color: var(--bad); }
        .pass { color: var(--ok); } .fail { color: var(--bad); }
        .bar { height: 6px; background: var(--line); border-radius: 3px; overflow: hidden; margin: 6px 0; }
        .bar i { display: block; height: 100%; background: var(--accent); }
        .controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
        button { font: inherit; padding: 4px 12px; border: 1px solid var(--line); border-radius: 4px; background: #fff; cursor: pointer; }
        button.danger { color: var(--bad); border-color: #f1b8b5; }
        input { font: inherit; padding: 3px 6px; width: 90px; border: 1px solid var(--line); border-radius: 4px; }
        .banner { padding: 8px 12px; border-radius: 4px; margin-bottom: 12px; background: #fef7e0; color: var(--warn); }
        .banner:empty { display: none; }
        .cols { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
        @media (max-width: 900px) { .cols { grid-template-columns: 1fr; } }
        .events { max-height: 340px; overflow: auto; }
        .ev { display: inline-block; min-width: 96px; font-weight: 600; }
        .ev.join { color: var(--ok); } .ev.loss { color: var(--bad); } .ev.control { color: var(--accent); } .ev.cluster { color: var(--warn); }
        code { font-size: 12px; }
        """#
}
