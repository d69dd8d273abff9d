"""The size report as one self-contained HTML page: inline CSS, JS and SVG, nothing fetched.

The page is built from the report's JSON object (schema_version 1) alone, so a saved ``--json`` could be
drawn again. Tables are written here, readable without JS; the charts (a budget bar and a treemap of
where the bytes go, and the changes against another build) are drawn by the inline script, which
marks the page with ``#lf-chart-ready`` once they are drawn (tests look for it).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .size_report import LIMIT_LABELS, human_bytes, limit_state, percent, signed


def page(data: dict[str, Any], headline: str) -> str:
    over = bool(data["over_budget"])
    status = (
        '<span class="pill over">over budget</span>' if over else '<span class="pill ok">within budget</span>'
    )
    body = "\n".join(
        [
            f"<header><h1>Lambda size report {status}</h1>"
            f'<p class="sub">{_e(headline)}</p>{_error(data)}</header>',
            _cards(data),
            # The picture first: where the bytes go, then how they stand against the limits.
            _section(
                "Where the bytes go",
                '<p class="hint">Area is unzipped size. Hover a block for details.</p>'
                '<div id="lf-treemap" class="chart treemap"></div>' + _dists_table(data["distributions"]),
            ),
            _section("Budget", '<div id="lf-budget" class="chart"></div>' + _limits_table(data)),
            _comparison(data),
            _top_files(data),
            _removed(data),
            _duplicates(data),
            f"<footer>layerforge {_e(data['layerforge_version'])} · size-report schema "
            f"{data['schema_version']}</footer>",
        ]
    )
    title = "Lambda size report: " + ("over budget" if over else "within budget")
    return (
        _TEMPLATE.replace("@@TITLE@@", _e(title))
        .replace("@@CSS@@", _CSS)
        .replace("@@BODY@@", body)
        .replace("@@JS@@", _JS)
        # The data goes in last, so that nothing in it is ever taken for a placeholder.
        .replace("@@DATA@@", _script_json(data))
    )


def _script_json(data: dict[str, Any]) -> str:
    # Inside <script>, "</script>" or "<!--" in a file name would end the script early: escape < > &.
    text = json.dumps(data, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _section(title: str, inner: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{inner}</section>"


def _error(data: dict[str, Any]) -> str:
    error = data.get("error")
    if not error:
        return ""
    hint = f'<div class="hint">hint: {_e(error["hint"])}</div>' if error.get("hint") else ""
    return f'<div class="error">{_e(error["message"])}{hint}</div>'


def _pct(value: float) -> str:
    return html.escape(percent(value))


def _card(label: str, value: str, note: str, tone: str = "") -> str:
    return (
        f'<div class="card {tone}"><div class="label">{_e(label)}</div>'
        f'<div class="value">{value}</div><div class="note">{note}</div></div>'
    )


def _cards(data: dict[str, Any]) -> str:
    lambda_limit = next(line for line in data["limits"] if line["name"] == "lambda_unzipped")
    budget = next((line for line in data["limits"] if line["name"] == "budget_unzipped"), None)
    tightest = budget if budget and budget["headroom"] < lambda_limit["headroom"] else lambda_limit
    layers = next(line for line in data["limits"] if line["name"] == "layer_count")
    zipped = data["zipped_bytes"]
    cards = [
        _card(
            "Unzipped",
            _e(human_bytes(data["unzipped_bytes"])),
            f"{_pct(data['unzipped_bytes'] / lambda_limit['value'])} of Lambda's "
            f"{_e(human_bytes(lambda_limit['value']))}",
            "bad" if lambda_limit["exceeded"] else "",
        ),
        _card(
            "Headroom",
            _e(signed(tightest["headroom"], human_bytes, plus="")),
            "under the team budget" if tightest is budget else "under Lambda's limit",
            "bad" if tightest["headroom"] < 0 else "good",
        ),
        _card("Zipped", _e(human_bytes(zipped)) if zipped is not None else "?", "sum of the zips"),
        _card("Files", f"{data['files']:,}", f"{len(data['distributions']):,} distributions"),
        _card(
            "Layers",
            f"{layers['actual']}",
            f"of at most {layers['value']}",
            "bad" if layers["exceeded"] else "",
        ),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _table(header: Sequence[tuple[str, str]], rows: Iterable[Sequence[str]], css: str = "") -> str:
    head = "".join(f'<th class="{align}">{_e(name)}</th>' for name, align in header)
    aligns = [align for _, align in header]
    body = "".join(
        "<tr>" + "".join(f'<td class="{aligns[i]}">{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _meter(fraction: float, tone: str = "", dist: str | None = None) -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    tag = f' data-dist="{_e(dist)}"' if dist is not None else ""
    return f'<span class="meter {tone}"{tag}><span style="width:{width:.2f}%"></span></span>'


def _limits_table(data: dict[str, Any]) -> str:
    rows = []
    for line in data["limits"]:
        count = line["name"] == "layer_count"
        size: Callable[[int], str] = str if count else human_bytes
        state = limit_state(line["exceeded"], line["hard"])
        used = line["actual"] / line["value"] if line["value"] else 1.0
        known = LIMIT_LABELS.get(line["name"])
        label = known[:1].upper() + known[1:] if known else line["name"]
        label += f": {line['subject']}" if line["subject"] else ""
        headroom = signed(line["headroom"], size, plus="")
        rows.append(
            [
                f'<span class="state {state}">{ {"ok": "✓", "over": "✗", "warn": "!"}[state] }</span>',
                f'<span title="{_e(line["description"])}">{_e(label)}</span>',
                _e(size(line["actual"])),
                _e(size(line["value"])),
                _e(headroom),
                _meter(used, state) + f' <span class="muted">{_pct(used)}</span>',
            ]
        )
    header = [("", "c"), ("limit", "l"), ("actual", "r"), ("limit", "r"), ("headroom", "r"), ("used", "l")]
    return _table(header, rows, "limits")


def _dists_table(dists: Sequence[dict[str, Any]]) -> str:
    top = max((d["unzipped_bytes"] for d in dists), default=0) or 1
    rows = [
        [
            f'<span class="swatch" data-dist="{_e(d["name"])}"></span>'
            + (
                _e(d["name"])
                if d["owned"]
                else f'<i>{_e(d["name"])}</i> <span class="muted">no distribution</span>'
            ),
            _e(d["version"] or ""),
            _e(", ".join(d["sources"])),
            _e(human_bytes(d["unzipped_bytes"])),
            _e(human_bytes(d["compressed_bytes"])),
            f"{d['files']:,}",
            _pct(d["share"]),
            _meter(d["unzipped_bytes"] / top, dist=d["name"]),
        ]
        for d in dists
    ]
    header = [
        ("distribution", "l"),
        ("version", "l"),
        ("in", "l"),
        ("unzipped", "r"),
        ("compressed", "r"),
        ("files", "r"),
        ("share", "r"),
        ("", "l"),
    ]
    return _table(header, rows, "dists")


def _top_files(data: dict[str, Any]) -> str:
    if not data["top_files"]:
        return ""
    multi = len(data["sources"]) > 1
    rows = [
        [
            f"<code>{_e(item['path'])}</code>"
            + (f' <span class="muted">in {_e(item["source"])}</span>' if multi else ""),
            _e(item["distribution"]),
            _e(human_bytes(item["unzipped_bytes"])),
            _e(human_bytes(item["compressed_bytes"])),
            _pct(item["share"]),
        ]
        for item in data["top_files"]
    ]
    header = [("file", "l"), ("distribution", "l"), ("unzipped", "r"), ("compressed", "r"), ("share", "r")]
    return _section(f"The {len(rows)} biggest files", _table(header, rows, "files"))


def _removed(data: dict[str, Any]) -> str:
    parts = []
    for source in data["sources"]:
        removed = source["removed"]
        if not removed:
            continue
        tables = []
        for key, title in (("by_rule", "rule"), ("by_package", "distribution")):
            items = sorted(removed[key].items(), key=lambda item: -item[1])
            top = max((size for _, size in items), default=0) or 1
            rows = [[_e(name), _e(human_bytes(size)), _meter(size / top, "removed")] for name, size in items]
            if rows:
                tables.append(_table([(title, "l"), ("removed", "r"), ("", "l")], rows, "half"))
        heading = (
            f"<p>{_e(human_bytes(removed['bytes']))} in {removed['files']:,} files removed from "
            f"<b>{_e(source['label'])}</b> before zipping.</p>"
        )
        parts.append(heading + f'<div class="pair">{"".join(tables)}</div>')
    return _section("What slimming removed", "".join(parts)) if parts else ""


def _comparison(data: dict[str, Any]) -> str:
    compare = data["compare"]
    if not compare:
        return ""
    delta = compare["delta_unzipped"]
    tone = "bad" if delta > 0 else "good" if delta < 0 else ""
    summary = (
        f"<p>Against <b>{_e(', '.join(compare['baseline']))}</b>: "
        f"{_e(human_bytes(compare['before_unzipped']))} → {_e(human_bytes(compare['after_unzipped']))} "
        f'<span class="delta {tone}">{_e(signed(delta, human_bytes))}</span></p>'
    )
    changed = [
        row for row in compare["distributions"] if row["delta"] or row["files_before"] != row["files_after"]
    ]
    rows = [
        [
            _e(row["name"]),
            f'<span class="status {row["status"]}">{_e(row["status"])}</span>',
            _e(human_bytes(row["before"])),
            _e(human_bytes(row["after"])),
            f'<span class="delta {"bad" if row["delta"] > 0 else "good" if row["delta"] < 0 else ""}">'
            f"{_e(signed(row['delta'], human_bytes))}</span>",
            f"{row['files_after'] - row['files_before']:+,}",
        ]
        for row in changed
    ]
    header = [
        ("distribution", "l"),
        ("change", "l"),
        ("before", "r"),
        ("after", "r"),
        ("delta", "r"),
        ("files", "r"),
    ]
    table = _table(header, rows, "compare") if rows else "<p>No distribution changed size.</p>"
    return _section("What changed", summary + '<div id="lf-compare" class="chart"></div>' + table)


def _duplicates(data: dict[str, Any]) -> str:
    if not data["duplicates"]:
        return ""
    items = "".join(
        f"<li><b>{_e(d['name'])}</b> is in {_e(', '.join(d['sources']))}</li>" for d in data["duplicates"]
    )
    note = "<p>Only the copy first on <code>sys.path</code> is imported; the others are dead weight.</p>"
    return _section("Distributions in more than one zip", note + f"<ul>{items}</ul>")


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
  content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>@@TITLE@@</title>
<script>
window.addEventListener("error", function (e) {
  var d = document.createElement("div"); d.id = "lf-js-error"; d.hidden = true;
  d.textContent = String(e.message); (document.body || document.documentElement).appendChild(d);
});
</script>
<style>@@CSS@@</style>
</head>
<body>
<main>
@@BODY@@
</main>
<div id="lf-tip" role="tooltip" hidden></div>
<script type="application/json" id="lf-data">@@DATA@@</script>
<script>@@JS@@</script>
</body>
</html>
"""

_CSS = """
:root { --bg:#f6f7f9; --panel:#fff; --ink:#1d2430; --muted:#6b7585; --line:#e3e7ed; --good:#1f9d55;
  --bad:#d64545; --warn:#d98a00; --accent:#3b6fd8; --track:#edf0f4; }
@media (prefers-color-scheme: dark) { :root { --bg:#12151a; --panel:#1a1f27; --ink:#e6e9ee; --muted:#98a2b3;
  --line:#2a313c; --track:#262d38; } }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 24px 40px; }
header h1 { font-size:22px; margin:0 0 4px; display:flex; align-items:center; gap:12px; }
.sub { color:var(--muted); margin:0 0 18px; }
.pill { font-size:12px; font-weight:600; padding:3px 10px; border-radius:999px; letter-spacing:.02em; }
.pill.ok { background:#e3f5ea; color:var(--good); } .pill.over { background:#fde8e8; color:var(--bad); }
.error { background:#fde8e8; color:#8a1f1f; border-radius:8px; padding:10px 14px; margin:0 0 16px; }
.error .hint { color:#8a1f1f; opacity:.85; margin-top:4px; }
.cards { display:grid; grid-template-columns:repeat(5,1fr); gap:12px; margin-bottom:18px; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.06em; }
.card .value { font-size:24px; font-weight:650; margin:2px 0; font-variant-numeric:tabular-nums; }
.card .note { color:var(--muted); font-size:12px; }
.card.good .value { color:var(--good); } .card.bad .value { color:var(--bad); }
section { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:16px 18px;
  margin-bottom:16px; }
section h2 { font-size:16px; margin:0 0 10px; }
.hint { color:var(--muted); font-size:12px; margin:-4px 0 8px; }
.chart { width:100%; }
.treemap { height:440px; margin-bottom:12px; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th { font-weight:600; color:var(--muted); font-size:12px; border-bottom:1px solid var(--line);
  padding:6px 8px; }
td { border-bottom:1px solid var(--line); padding:5px 8px; vertical-align:middle; }
tr:last-child td { border-bottom:none; }
.l { text-align:left; } .r { text-align:right; white-space:nowrap; } .c { text-align:center; width:24px; }
table.limits { margin-top:10px; }
td code { font-size:12px; word-break:break-all; }
.muted { color:var(--muted); font-size:12px; }
.meter { display:inline-block; width:140px; height:8px; border-radius:4px; background:var(--track);
  overflow:hidden; vertical-align:middle; }
.meter span { display:block; height:100%; background:var(--accent); border-radius:4px; }
.meter.ok span { background:var(--good); } .meter.over span { background:var(--bad); }
.meter.warn span { background:var(--warn); } .meter.removed span { background:#8a94a6; }
.state { font-weight:700; } .state.ok { color:var(--good); } .state.over { color:var(--bad); }
.state.warn { color:var(--warn); }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:7px;
  background:#c5ccd6; vertical-align:baseline; }
.pair { display:grid; grid-template-columns:1fr 1fr; gap:20px; }
.delta.bad, .status.grew, .status.added { color:var(--bad); font-weight:600; }
.delta.good, .status.shrank, .status.removed { color:var(--good); font-weight:600; }
tr.hl td { background:rgba(59,111,216,.08); }
#lf-tip { position:fixed; pointer-events:none; z-index:10; background:#1d2430; color:#fff; padding:8px 10px;
  border-radius:6px; font-size:12px; line-height:1.4; box-shadow:0 4px 14px rgba(0,0,0,.25);
  max-width:340px; }
#lf-tip b { font-size:13px; }
svg text { font-family:inherit; }
.tm-cell { stroke:var(--panel); stroke-width:1.5; cursor:default; }
.tm-cell:hover { filter:brightness(1.08) saturate(1.1); }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:8px; }
@media (max-width:800px) {
  .cards { grid-template-columns:repeat(2,1fr); } .pair { grid-template-columns:1fr; }
}
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("lf-data").textContent);
  var SVGNS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                 "#ff9da7", "#9c755f", "#3b9ab2", "#a0cbe8", "#ffbe7d", "#8cd17d", "#d4a6c8", "#86bcb6"];
  var colours = {};
  data.distributions.forEach(function (d, i) {
    colours[key(d)] = d.owned ? PALETTE[i % PALETTE.length] : "#aab2bf";
  });

  function key(d) { return (d.owned ? "d:" : "u:") + d.name; }
  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB"], v = Math.abs(n), u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return (n < 0 ? "\u2212" : "") + (u === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[u];
  }
  function pct(f) { return f > 0 && f < 0.001 ? "<0.1%" : (f * 100).toFixed(1) + "%"; }
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function ink(hex) {
    var r = parseInt(hex.substr(1, 2), 16), g = parseInt(hex.substr(3, 2), 16);
    var b = parseInt(hex.substr(5, 2), 16);
    return (0.299 * r + 0.587 * g + 0.114 * b) > 160 ? "#1d2430" : "#ffffff";
  }
  function fit(text, width, px) {
    var max = Math.floor(width / (px * 0.62));
    if (max < 3) return "";
    return text.length <= max ? text : text.slice(0, max - 1) + "\u2026";
  }

  // Tooltip --------------------------------------------------------------------------------------
  var tip = document.getElementById("lf-tip");
  function showTip(html, event) {
    tip.innerHTML = html; tip.hidden = false;
    var x = event.clientX + 14, y = event.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth - 8) x = event.clientX - tip.offsetWidth - 14;
    if (y + tip.offsetHeight > window.innerHeight - 8) y = event.clientY - tip.offsetHeight - 14;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  function hideTip() { tip.hidden = true; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c];
    });
  }
  function hover(node, html) {
    node.addEventListener("mousemove", function (e) { showTip(html, e); });
    node.addEventListener("mouseleave", hideTip);
  }

  // Squarified treemap (Bruls, Huizing, van Wijk) -----------------------------------------------
  function worst(areas, side) {
    var sum = 0, max = 0, min = Infinity;
    areas.forEach(function (a) { sum += a; if (a > max) max = a; if (a < min) min = a; });
    return Math.max(side * side * max / (sum * sum), (sum * sum) / (side * side * min));
  }
  function squarify(items, x, y, w, h) {
    var total = items.reduce(function (s, it) { return s + it.value; }, 0);
    var out = [];
    if (total <= 0 || w <= 0 || h <= 0) return out;
    var scale = (w * h) / total, rest = items.slice();
    while (rest.length) {
      var side = Math.min(w, h), row = [rest[0]], areas = [rest[0].value * scale], i = 1;
      while (i < rest.length) {
        var next = areas.concat([rest[i].value * scale]);
        if (worst(next, side) > worst(areas, side)) break;
        row.push(rest[i]); areas = next; i++;
      }
      var rowArea = areas.reduce(function (s, a) { return s + a; }, 0);
      var offset = 0;
      if (w >= h) {
        var colW = rowArea / h;
        row.forEach(function (it, k) {
          var hh = areas[k] / colW;
          out.push({ item: it, x: x, y: y + offset, w: colW, h: hh }); offset += hh;
        });
        x += colW; w -= colW;
      } else {
        var rowH = rowArea / w;
        row.forEach(function (it, k) {
          var ww = areas[k] / rowH;
          out.push({ item: it, x: x + offset, y: y, w: ww, h: rowH }); offset += ww;
        });
        y += rowH; h -= rowH;
      }
      rest = rest.slice(i);
    }
    return out;
  }

  function drawTreemap() {
    var box = document.getElementById("lf-treemap");
    if (!box) return 0;
    box.innerHTML = "";
    var W = box.clientWidth || 1000, H = box.clientHeight || 460;
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                          "aria-label": "Treemap of unzipped bytes by distribution" }, box);
    var multi = data.sources.length > 1, count = 0;
    var groups = data.sources.filter(function (s) { return s.unzipped_bytes > 0; })
      .map(function (s) { return { value: s.unzipped_bytes, source: s }; });
    squarify(groups, 0, 0, W, H).forEach(function (g) {
      var header = multi && g.h > 40 && g.w > 60 ? 20 : 0, pad = multi ? 2 : 0;
      if (multi) {
        el("rect", { x: g.x + 1, y: g.y + 1, width: Math.max(0, g.w - 2), height: Math.max(0, g.h - 2),
                     rx: 4, fill: "#2b3442" }, svg);
        if (header) {
          var label = el("text", { x: g.x + 8, y: g.y + 14, fill: "#fff", "font-size": 12,
                                   "font-weight": 600 }, svg);
          label.textContent = fit(g.item.source.label + " \u00b7 " + g.item.source.kind + " \u00b7 " +
                                  human(g.item.source.unzipped_bytes), g.w - 16, 12);
        }
      }
      var dists = g.item.source.distributions.filter(function (d) { return d.unzipped_bytes > 0; })
        .map(function (d) { return { value: d.unzipped_bytes, dist: d }; });
      var inner = squarify(dists, g.x + pad, g.y + pad + header, g.w - 2 * pad, g.h - 2 * pad - header);
      inner.forEach(function (c) { count += drawCell(svg, c, g.item.source); });
    });
    return count;
  }

  function drawCell(svg, c, source) {
    var d = c.item.dist, fill = colours[key(d)] || "#aab2bf";
    var cell = el("rect", { class: "tm-cell", x: c.x, y: c.y, width: Math.max(0, c.w),
                            height: Math.max(0, c.h), fill: fill, "data-dist": d.name }, svg);
    hover(cell, "<b>" + esc(d.name) + "</b>" + (d.version ? " " + esc(d.version) : "") +
          (d.owned ? "" : " <i>(no distribution)</i>") + "<br>" + human(d.unzipped_bytes) +
          " unzipped \u00b7 " + human(d.compressed_bytes) + " compressed<br>" +
          d.files.toLocaleString() + " files \u00b7 " + pct(d.share) + " of the total<br>" +
          "<span style=\"opacity:.7\">in " + esc(source.label) + "</span>");
    if (c.w > 46 && c.h > 22) {
      var colour = ink(fill), big = c.w > 90 && c.h > 44;
      var name = el("text", { x: c.x + 7, y: c.y + (big ? 20 : 15), fill: colour, "font-size": big ? 13 : 11,
                              "font-weight": 600, "pointer-events": "none" }, svg);
      name.textContent = fit(d.name, c.w - 12, big ? 13 : 11);
      if (big) {
        var size = el("text", { x: c.x + 7, y: c.y + 37, fill: colour, "font-size": 11, opacity: 0.85,
                                "pointer-events": "none" }, svg);
        size.textContent = fit(human(d.unzipped_bytes) + " \u00b7 " + pct(d.share), c.w - 12, 11);
      }
    }
    return 1;
  }

  // Budget bar: the distributions stacked against Lambda's limit and the team budget ----------
  function drawBudget() {
    var box = document.getElementById("lf-budget");
    if (!box) return 0;
    box.innerHTML = "";
    var limits = {};
    data.limits.forEach(function (l) { limits[l.name] = l; });
    var lambda = limits.lambda_unzipped, budget = limits.budget_unzipped;
    var total = data.unzipped_bytes;
    var scaleMax = Math.max(total, lambda.value, budget ? budget.value : 0) * 1.04;
    var W = box.clientWidth || 1000, H = 92, barY = 30, barH = 28, left = 0, right = W;
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                          "aria-label": "Unzipped bytes against the limits" }, box);
    var px = function (v) { return left + (right - left) * v / scaleMax; };
    el("rect", { x: left, y: barY, width: right - left, height: barH, rx: 5,
                 style: "fill:var(--track)" }, svg);
    var shown = data.distributions.slice(0, 12), other = 0, x = left, drawn = 0;
    data.distributions.slice(12).forEach(function (d) { other += d.unzipped_bytes; });
    var segments = shown.map(function (d) { return { d: d, v: d.unzipped_bytes }; });
    if (other > 0) {
      segments.push({ d: { name: "other", owned: false, share: other / total, files: 0 }, v: other });
    }
    segments.forEach(function (s) {
      var w = px(s.v) - left;
      if (w <= 0) return;
      var seg = el("rect", { x: x, y: barY, width: w, height: barH, fill: colours[key(s.d)] || "#aab2bf",
                             style: "stroke:var(--panel)", "stroke-width": 1 }, svg);
      hover(seg, "<b>" + esc(s.d.name) + "</b><br>" + human(s.v) + " \u00b7 " + pct(s.v / total));
      x += w; drawn++;
    });
    marker(svg, px(lambda.value), "Lambda " + human(lambda.value), lambda.exceeded ? "#d64545" : "#1d2430",
           barY, barH, W, true);
    if (budget) {
      marker(svg, px(budget.value), "budget " + human(budget.value), budget.exceeded ? "#d64545" : "#d98a00",
             barY, barH, W, false);
    }
    var t = el("text", { x: Math.min(px(total), W - 4), y: barY + barH + 18, "font-size": 12,
                         "text-anchor": px(total) > W - 120 ? "end" : "middle", style: "fill:var(--ink)",
                         "font-weight": 600 }, svg);
    t.textContent = human(total) + " used";
    return drawn;
  }

  function marker(svg, x, text, colour, barY, barH, W, above) {
    el("line", { x1: x, x2: x, y1: barY - 6, y2: barY + barH + 6, stroke: colour, "stroke-width": 2,
                 "stroke-dasharray": "4 3" }, svg);
    var t = el("text", { x: x, y: above ? barY - 10 : barY + barH + 34, "font-size": 11, fill: colour,
                         "text-anchor": x > W - 90 ? "end" : x < 90 ? "start" : "middle",
                         "font-weight": 600 }, svg);
    t.textContent = text;
  }

  // What changed: a diverging bar per distribution ------------------------------------------
  function drawCompare() {
    var box = document.getElementById("lf-compare");
    if (!box || !data.compare) return 0;
    box.innerHTML = "";
    var rows = data.compare.distributions.filter(function (r) { return r.delta !== 0; }).slice(0, 14);
    if (!rows.length) return 0;
    var W = box.clientWidth || 1000, rowH = 22, H = rows.length * rowH + 10, mid = W * 0.5, label = 170;
    var maxAbs = Math.max.apply(null, rows.map(function (r) { return Math.abs(r.delta); })) || 1;
    var span = (W - label) / 2 - 70;
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                          "aria-label": "Change per distribution" }, box);
    mid = label + (W - label) / 2;
    el("line", { x1: mid, x2: mid, y1: 0, y2: H, style: "stroke:var(--line)", "stroke-width": 1 }, svg);
    rows.forEach(function (r, i) {
      var y = 4 + i * rowH, w = Math.max(1, span * Math.abs(r.delta) / maxAbs), grew = r.delta > 0;
      var name = el("text", { x: label - 10, y: y + 14, "font-size": 12, "text-anchor": "end",
                              style: "fill:var(--ink)" }, svg);
      name.textContent = fit(r.name, label - 16, 12);
      var bar = el("rect", { x: grew ? mid : mid - w, y: y + 3, width: w, height: rowH - 8, rx: 3,
                             fill: grew ? "#e15759" : "#59a14f" }, svg);
      hover(bar, "<b>" + esc(r.name) + "</b> " + r.status + "<br>" + human(r.before) + " \u2192 " +
                 human(r.after));
      var value = el("text", { x: grew ? mid + w + 6 : mid - w - 6, y: y + 14, "font-size": 11,
                               "text-anchor": grew ? "start" : "end", style: "fill:var(--muted)" }, svg);
      value.textContent = (grew ? "+" : "\u2212") + human(Math.abs(r.delta)).replace("\u2212", "");
    });
    return rows.length;
  }

  function paintSwatches() {
    var byName = {};
    data.distributions.forEach(function (d) { byName[d.name] = colours[key(d)]; });
    Array.prototype.forEach.call(document.querySelectorAll(".swatch[data-dist]"), function (s) {
      var c = byName[s.getAttribute("data-dist")];
      if (c) s.style.background = c;
    });
    Array.prototype.forEach.call(document.querySelectorAll(".meter[data-dist] > span"), function (s) {
      var c = byName[s.parentNode.getAttribute("data-dist")];
      if (c) s.style.background = c;
    });
  }

  function render() {
    var cells = drawTreemap(), segments = drawBudget(), bars = drawCompare();
    paintSwatches();
    var ready = document.getElementById("lf-chart-ready");
    if (!ready) {
      ready = document.createElement("div");
      ready.id = "lf-chart-ready"; ready.hidden = true;
      document.body.appendChild(ready);
    }
    ready.setAttribute("data-cells", String(cells));
    ready.setAttribute("data-segments", String(segments));
    ready.setAttribute("data-compare", String(bars));
  }

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending); pending = setTimeout(render, 120);
  });
  render();
})();
"""
