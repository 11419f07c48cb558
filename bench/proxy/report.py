#!/usr/bin/env python3
"""Turns the raw records of bench/proxy.sh into the markdown table.

usage: report.py RESULTS.jsonl META.json [--runs]

RESULTS.jsonl holds one record per measurement: {"round": R, "target": T, "test": NAME, "data":
{...}}, data being loadgen's JSON or the fields the script parsed from wrk and h2load. Every number
in the table is the median over rounds; added latency is paired per round (target minus direct in
the same round) before the median is taken. With --runs, each metric's per-round values follow.
"""

import json
import statistics
import sys

NAMES = {"direct": "direct", "haproxy": "haproxy", "nginx": "nginx", "weft": "weft-proxy"}


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Values:
    """value[(test, target)][round] = data dict."""

    def __init__(self, records):
        self.by = {}
        for r in records:
            self.by.setdefault((r["test"], r["target"]), {})[r["round"]] = r["data"]

    def per_round(self, test, target, fn):
        out = {}
        for rnd, data in self.by.get((test, target), {}).items():
            try:
                v = fn(data)
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            if v is not None:
                out[rnd] = v
        return out


def kib_to_mb(k):
    return k / 1024.0


def fmt_num(v, kind):
    if v is None:
        return "—"
    if kind == "us":
        return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "vcpu":
        return f"{v:.3f}"
    if kind == "mb":
        return f"{v:.1f}"
    if kind == "cpu_us":
        return f"{v:.1f}"
    return f"{v}"


# (label, test, value of one round's data, format, ratio vs direct, ratio vs haproxy, paired-with-direct)
def metrics(meta):
    lat = f"{meta.get('lat_rps', '?')} rps, 1 conn"
    load = f"{meta.get('load_rps', '?')} rps, {meta.get('load_conns', '?')} conns"
    sat = f"wrk -t{meta.get('wrk_threads', '?')} -c{meta.get('sat_conns', '?')}"
    h2 = f"h2load -c4 -m25, {meta.get('h2_upstream', 'h1')} upstream"
    svc = meta.get("services", "1000")
    return [
        ("Latency", None),
        (f"p50 latency, µs ({lat})", "latency", lambda d: d["p50_us"], "us", True, True, False),
        (f"p90 latency, µs ({lat})", "latency", lambda d: d["p90_us"], "us", True, True, False),
        ("added p50 per hop, µs", "latency", lambda d: d["p50_us"], "us", False, True, True),
        ("added p90 per hop, µs", "latency", lambda d: d["p90_us"], "us", False, True, True),
        ("Throughput (HTTP/1.1)", None),
        (f"saturation, requests/s ({sat})", "saturation", lambda d: d["rps"], "rps", True, True, False),
        ("proxy vCPU used at saturation", "saturation", lambda d: d["vcpu"], "vcpu", False, True, False),
        ("requests/s per proxy core", "saturation", lambda d: d["rps"] / d["vcpu"], "rps", False, True, False),
        ("CPU and memory", None),
        (f"vCPU per 1,000 requests/s ({load})", "load",
         lambda d: d["vcpu"] / (d["rps"] / 1000.0), "vcpu", False, True, False),
        ("CPU µs per request", "load", lambda d: d["cpu_s"] * 1e6 / d["count"], "cpu_us", False, True, False),
        ("RSS idle, MB", "idle", lambda d: kib_to_mb(d["rss_kib"]), "mb", False, True, False),
        ("of which anonymous (RssAnon), MB", "idle", lambda d: kib_to_mb(d["anon_kib"]), "mb", False, True, False),
        (f"RSS under load, MB ({load})", "load", lambda d: kib_to_mb(d["rss_kib"]), "mb", False, True, False),
        (f"RSS idle with {svc} services, MB", "many_idle", lambda d: kib_to_mb(d["rss_kib"]), "mb", False, True, False),
        ("of which anonymous (RssAnon), MB", "many_idle", lambda d: kib_to_mb(d["anon_kib"]), "mb", False, True, False),
        (f"RSS with {svc} services after traffic to all, MB", "many_load",
         lambda d: kib_to_mb(d["rss_kib"]), "mb", False, True, False),
        ("HTTP/2 (h2c)", None),
        (f"h2 requests/s ({h2})", "h2", lambda d: d["rps"], "rps", True, True, False),
        ("proxy vCPU used during h2 run", "h2", lambda d: d["vcpu"], "vcpu", False, True, False),
    ]


def goals():
    """weft-proxy's targets, keyed by metric label prefix: (text, reference target or None,
    check(weft, reference))."""
    return {
        "added p50": ("≤ haproxy", "haproxy", lambda w, r: w <= r),
        "added p90": ("≤ 1.2× haproxy", "haproxy", lambda w, r: w <= 1.2 * r),
        "saturation": ("≥ haproxy", "haproxy", lambda w, r: w >= r),
        "requests/s per proxy core": ("≥ haproxy", "haproxy", lambda w, r: w >= r),
        "vCPU per 1,000": ("≤ 0.05", None, lambda w, r: w <= 0.05),
        "RSS idle, MB": ("≤ 8 MB", None, lambda w, r: w <= 8),
        "RSS under load": ("≤ 15 MB", None, lambda w, r: w <= 15),
        "RSS idle with": ("≤ 40 MB", None, lambda w, r: w <= 40),
        "RSS with": ("≤ 40 MB", None, lambda w, r: w <= 40),
        "h2 requests/s": ("≥ nginx", "nginx", lambda w, r: w >= r),
    }


def table(values, meta, show_runs):
    targets = [t for t in meta["targets"].split(",") if t]
    lines = []
    header = ["metric"] + [NAMES.get(t, t) for t in targets]
    has_weft = "weft" in targets
    if has_weft:
        header += ["weft goal", "met"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * len(targets) + (["---", ":---:"] if has_weft else [])) + "|")
    runs = []
    for m in metrics(meta):
        if m[1] is None:
            lines.append("| **" + m[0] + "** |" + " |" * (len(header) - 1))
            continue
        label, test, fn, kind, vs_direct, vs_haproxy, paired = m
        rounds = {t: values.per_round(test, t, fn) for t in targets}
        if paired:
            base = rounds.get("direct", {})
            rounds = {
                t: {r: v - base[r] for r, v in rs.items() if r in base} if "direct" in targets else {}
                for t, rs in rounds.items()
            }
        med = {t: (statistics.median(rs.values()) if rs else None) for t, rs in rounds.items()}
        # Rows about proxies have no direct value: the direct path has no proxy process.
        cells = []
        for t in targets:
            v = med[t]
            if t == "direct" and (paired or not vs_direct):
                cells.append("—" if not paired else "0")
                continue
            s = fmt_num(v, kind)
            ratios = []
            if v is not None and t != "direct":
                if vs_direct and med.get("direct"):
                    ratios.append(f"{v / med['direct']:.2f}×d")
                if vs_haproxy and t != "haproxy" and med.get("haproxy"):
                    ratios.append(f"{v / med['haproxy']:.2f}×h")
            if ratios:
                s += " (" + ", ".join(ratios) + ")"
            cells.append(s)
        row = [label] + cells
        if has_weft:
            goal = next((g for k, g in goals().items() if label.startswith(k)), None)
            if goal is None:
                row += ["", ""]
            else:
                text, ref, check = goal
                w, r = med.get("weft"), (med.get(ref) if ref else 0)
                if w is None or r is None:
                    row += [text, "n/a"]
                else:
                    row += [text, "yes" if check(w, r) else "**no**"]
        lines.append("| " + " | ".join(row) + " |")
        if show_runs:
            for t in targets:
                rs = rounds[t]
                if rs and not (t == "direct" and (paired or not vs_direct)):
                    vals = ", ".join(fmt_num(rs[r], kind) for r in sorted(rs))
                    runs.append(f"- {label}, {NAMES.get(t, t)}: {vals}")
    return lines, runs


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    values = Values(load(sys.argv[1]))
    with open(sys.argv[2]) as f:
        meta = json.load(f)
    show_runs = "--runs" in sys.argv[3:]
    lines, runs = table(values, meta, show_runs)
    out = [
        f"## {' vs '.join(NAMES.get(t, t) for t in meta['targets'].split(',') if t)} "
        f"({meta.get('date', '?')})",
        "",
        f"Machine: {meta.get('nproc', '?')} vCPU, {meta.get('cpu', '?')}, Linux {meta.get('kernel', '?')}; "
        f"{meta.get('pinning', '')}; load average {meta.get('loadavg', '?')}.",
        f"Versions: {meta.get('versions', '?')}.",
        f"Medians of {meta.get('runs', '?')} runs, {meta.get('duration', '?')} s windows, all targets "
        "interleaved in one run. `×d`: ratio to direct, `×h`: ratio to haproxy. Backend: nginx, 1 KB "
        "responses, HTTP/1.1 keep-alive; proxies: 1 worker thread, keep-alive to the backend.",
        "",
    ] + lines
    notes = meta.get("notes") or []
    if notes:
        out += ["", "Problems during the run:", ""] + [f"- {n}" for n in notes]
    if show_runs and runs:
        out += ["", "<details><summary>Per-run values</summary>", ""] + runs + ["", "</details>"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
