#!/usr/bin/env python3
"""Load generator and report of bench/soak.sh (standard library only).

  soak.py run CONFIG.json    feeds every dock, reads through every node's API and samples memory
                             for the configured time; writes fed.jsonl, requests.jsonl, rss.jsonl
                             and progress lines into the work dir
  soak.py report CONFIG.json writes the markdown report from those files and what soak.sh gathered
                             after the run (catalog rows, verify, reconcile, logs)

Feeders: one thread per dock writes a file every `interval` seconds (±30 %), named as body
cameras name them (`{device}/{device}_{officer}_{start}_{seq}.mp4`), first under a `.part` name
(which the daemon ignores), fsynced, then renamed into place. Random bytes (most 0.5–8 MiB, some
8–16 MiB, every 8th above the 16 MiB multipart threshold) and, every `video_every`-th file, a real
recording of the fixture corpus remuxed with a unique comment tag (`ffmpeg -c copy`), so every
file has bytes of its own and some recordings get a real proxy to play.

Readers: `readers` supervisor threads, each with a keep-alive connection to every node's API,
cycling over the nodes: a search (`GET /api/v1/recordings` newest first, by officer, device,
unit or the last five minutes; 50 per page), the details of one result (`GET
/api/v1/recordings/{id}`, an audited view), then `ranges` Range reads of a random 256 KiB window
of a playable proxy (never from byte 0, so not a new audited access, as a player seeking), then
a pause of 0.2–0.6 s.

Memory: VmRSS, RssAnon and RssFile of every node (and Garage process) from /proc/PID/status every
`sample` seconds.
"""

import hashlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

MIB = 1 << 20


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


# ---------------------------------------------------------------- run


class Feeder(threading.Thread):
    def __init__(self, cfg, idx, stop):
        super().__init__(daemon=True)
        self.cfg, self.idx, self.stop = cfg, idx, stop
        self.dock = cfg["nodes"][idx]["dock"]
        self.rng = random.Random(cfg["seed"] * 1000 + idx)
        self.fed, self.errors = [], []

    def size(self, n):
        if n % 8 == 0:
            return self.rng.randint(17 * MIB, 48 * MIB)
        if self.rng.random() < 0.2:
            return self.rng.randint(8 * MIB, 16 * MIB)
        return self.rng.randint(MIB // 2, 8 * MIB)

    def run(self):
        n = 0
        videos = self.cfg["videos"]
        every = self.cfg["video_every"]
        next_at = time.time()
        while not self.stop.is_set():
            n += 1
            device = f"BWC{self.idx}{n % 4:02d}"
            officer = f"P{self.idx}{n % 5:03d}"
            start = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
            d = os.path.join(self.dock, device)
            os.makedirs(d, exist_ok=True)
            video = videos[(n // every) % len(videos)] if videos and every > 0 and n % every == 0 else None
            ext = os.path.splitext(video)[1].lower().lstrip(".") if video else "mp4"
            name = f"{device}_{officer}_{start}_{n:04d}.{ext}"
            part = os.path.join(d, name + ".part")
            try:
                if video:
                    fmt = {"mov": "mov", "wav": "wav"}.get(ext, "mp4")
                    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", video, "-map", "0", "-c", "copy",
                                    "-metadata", f"comment=soak-{uuid.uuid4()}", "-f", fmt, part], check=True)
                    data = open(part, "rb").read()
                else:
                    data = os.urandom(self.size(n))
                    with open(part, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                sha = hashlib.sha256(data).hexdigest()
                t = time.time()
                os.rename(part, os.path.join(d, name))
                self.fed.append({"sha256": sha, "size": len(data), "at": t, "node": self.idx, "name": f"{device}/{name}",
                                 "video": bool(video)})
            except Exception as e:  # noqa: BLE001 - a feeder error is reported, not fatal
                self.errors.append(repr(e))
            next_at += self.cfg["interval"] * self.rng.uniform(0.7, 1.3)
            while not self.stop.is_set() and time.time() < next_at:
                time.sleep(min(0.2, max(0.0, next_at - time.time())))


class Reader(threading.Thread):
    def __init__(self, cfg, idx, stop, log):
        super().__init__(daemon=True)
        self.cfg, self.idx, self.stop, self.log = cfg, idx, stop, log
        self.rng = random.Random(cfg["seed"] * 7919 + idx)
        self.conns = {}
        self.sizes = {}  # recording id -> proxy size

    def request(self, node, path, headers=None):
        port = self.cfg["nodes"][node]["port"]
        h = {"Authorization": "Bearer " + self.cfg["token"]}
        h.update(headers or {})
        for attempt in (0, 1):
            conn = self.conns.get(node)
            if conn is None:
                conn = self.conns[node] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                t0 = time.perf_counter()
                conn.request("GET", path, headers=h)
                resp = conn.getresponse()
                body = resp.read()
                ms = (time.perf_counter() - t0) * 1000
                return resp.status, resp.getheader("Content-Range"), body, ms
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self.conns.pop(node, None)
                if attempt == 1:
                    return None, None, repr(e).encode(), 0.0
        return None, None, b"", 0.0

    def note(self, kind, node, status, ms, nbytes=0):
        self.log.append((time.time(), kind, node, status, round(ms, 3), nbytes))

    def run(self):
        nodes = len(self.cfg["nodes"])
        node = self.idx % nodes
        while not self.stop.is_set():
            node = (node + 1) % nodes
            q = self.rng.choice(["", "officer", "device", "unit", "recent"])
            i = self.rng.randrange(nodes)
            path = "/api/v1/recordings?limit=50"
            if q == "officer":
                path += f"&officer=P{i}{self.rng.randrange(5):03d}"
            elif q == "device":
                path += f"&device=BWC{i}{self.rng.randrange(4):02d}"
            elif q == "unit":
                path += f"&unit=JS/SOAK/S{i}"
            elif q == "recent":
                since = datetime.fromtimestamp(time.time() - 300, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                path += f"&from={since}"
            status, _, body, ms = self.request(node, path)
            self.note("search", node, status, ms, len(body))
            items = []
            if status == 200:
                try:
                    items = json.loads(body)["items"]
                except ValueError:
                    pass
            if items:
                rec = self.rng.choice(items)
                status, _, body, ms = self.request(node, f"/api/v1/recordings/{rec['id']}")
                self.note("details", node, status, ms, len(body))
                playable = [r["id"] for r in items if r.get("playable")]
                if not playable:
                    # Another page with playable ones: the newest, across units.
                    s2, _, b2, ms2 = self.request(node, "/api/v1/recordings?limit=50")
                    self.note("search", node, s2, ms2, len(b2))
                    if s2 == 200:
                        playable = [r["id"] for r in json.loads(b2)["items"] if r.get("playable")]
                if playable:
                    rid = self.rng.choice(playable)
                    for _ in range(self.cfg["ranges"]):
                        size = self.sizes.get(rid)
                        win = 256 * 1024
                        if size is None:
                            start = 1
                        elif size <= 2:
                            break
                        else:
                            start = self.rng.randrange(1, max(2, size - win))
                        end = start + win - 1 if size is None else min(start + win - 1, size - 1)
                        status, crange, body, ms = self.request(node, f"/api/v1/recordings/{rid}/proxy", {"Range": f"bytes={start}-{end}"})
                        self.note("range", node, status, ms, len(body))
                        if status == 206 and crange and "/" in crange:
                            try:
                                self.sizes[rid] = int(crange.rsplit("/", 1)[1])
                            except ValueError:
                                pass
            self.stop.wait(self.rng.uniform(0.2, 0.6))


def proc_status(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    except OSError:
        return None
    try:
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def host_ticks():
    """(busy, total) clock ticks of the whole machine so far."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
    return busy, busy + f[3] + f[4]


def proc_ticks(pid):
    """utime + stime + waited-for children's (the media workers), clock ticks."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    except (OSError, IndexError, ValueError):
        return 0


def postgres_ticks():
    t = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                raw = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if "(postgres)" in raw:
                f = raw.rsplit(")", 1)[1].split()
                t += int(f[11]) + int(f[12])
    return t


def self_cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(cfg_path):
    cfg = json.load(open(cfg_path))
    w = cfg["work"]
    stop = threading.Event()
    feeders = [Feeder(cfg, i, stop) for i in range(len(cfg["nodes"]))]
    logs = [[] for _ in range(cfg["readers"])]
    readers = [Reader(cfg, i, stop, logs[i]) for i in range(cfg["readers"])]
    rss = []
    t0 = time.time()
    deadline = t0 + cfg["duration"]

    def sample():
        t = time.time()
        for i, n in enumerate(cfg["nodes"]):
            st = proc_status(n["pid"])
            if st:
                rss.append({"t": t - t0, "what": f"node{i}", **st})
        for i, pid in enumerate(cfg["garage_pids"]):
            st = proc_status(pid)
            if st:
                rss.append({"t": t - t0, "what": f"garage{i}", **st})

    sample()
    pids = {f"node{i}": n["pid"] for i, n in enumerate(cfg["nodes"])}
    pids.update({f"garage{i}": p for i, p in enumerate(cfg["garage_pids"])})
    cpu0, host0, pg0, me0 = {k: proc_ticks(p) for k, p in pids.items()}, host_ticks(), postgres_ticks(), self_cpu()
    for th in feeders + readers:
        th.start()
    next_sample = t0 + cfg["sample"]
    next_progress = t0 + 30
    while time.time() < deadline:
        now = time.time()
        if now >= next_sample:
            sample()
            next_sample += cfg["sample"]
        if now >= next_progress:
            fed = sum(len(f.fed) for f in feeders)
            reqs = sum(len(lg) for lg in logs)
            node_rss = " ".join(f"{r['what']}={r['VmRSS'] / 1024:.1f}" for r in rss[-(len(cfg["nodes"]) + len(cfg["garage_pids"])):]
                                if r["what"].startswith("node"))
            print(f"[soak {time.strftime('%H:%M:%S')}] {now - t0:.0f}/{cfg['duration']} s: fed {fed} files, {reqs} requests; RSS MiB {node_rss}",
                  file=sys.stderr, flush=True)
            next_progress += 30
        for i, n in enumerate(cfg["nodes"]):
            if not os.path.exists(f"/proc/{n['pid']}"):
                print(f"node {i} (pid {n['pid']}) exited during the soak", file=sys.stderr)
                stop.set()
                deadline = 0
        time.sleep(0.2)
    stop.set()
    cpu1, host1, pg1, me1 = {k: proc_ticks(p) for k, p in pids.items()}, host_ticks(), postgres_ticks(), self_cpu()
    for th in feeders + readers:
        th.join(timeout=60)
    sample()
    write_jsonl(f"{w}/fed.jsonl", [r for f in feeders for r in f.fed])
    write_jsonl(f"{w}/requests.jsonl", [dict(zip(("t", "kind", "node", "status", "ms", "bytes"), e)) for lg in logs for e in lg])
    write_jsonl(f"{w}/rss.jsonl", rss)
    errors = [e for f in feeders for e in f.errors]
    hz = os.sysconf("SC_CLK_TCK")
    json.dump({"started": t0, "ended": time.time(), "feeder_errors": errors,
               "cpu_s": {**{k: (cpu1[k] - cpu0[k]) / hz for k in pids}, "postgres": (pg1 - pg0) / hz, "load generator": me1 - me0},
               "host_busy": (host1[0] - host0[0]) / max(1, host1[1] - host0[1])}, open(f"{w}/run.json", "w"))
    if errors:
        print(f"{len(errors)} feeder errors, first: {errors[0]}", file=sys.stderr)
    return 0 if os.path.exists(w) and all(os.path.exists(f"/proc/{n['pid']}") for n in cfg["nodes"]) else 1


# ---------------------------------------------------------------- report


def slope(xs, ys):
    """Theil–Sen: the median of the slopes between every two samples (a single spike cannot tilt it)."""
    ss = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i]]
    return statistics.median(ss) if ss else 0.0


def report(cfg_path):
    cfg = json.load(open(cfg_path))
    w = cfg["work"]
    fed = read_jsonl(f"{w}/fed.jsonl")
    reqs = read_jsonl(f"{w}/requests.jsonl")
    rss = read_jsonl(f"{w}/rss.jsonl")
    post = json.load(open(f"{w}/post.json"))
    runinfo = json.load(open(f"{w}/run.json"))
    cat = {}
    for line in open(f"{w}/catalog.tsv"):
        sha, archived_at, media_state = line.rstrip("\n").split("\t")
        cat[sha] = (int(archived_at) / 1e6, media_state)
    dur = runinfo["ended"] - runinfo["started"]
    p = print
    p(f"# Soak: {len(cfg['nodes'])} nodes, {cfg['duration'] / 60:.0f} minutes" if cfg["duration"] >= 120 else
      f"# Soak: {len(cfg['nodes'])} nodes, {cfg['duration']} s")
    p()
    for line in cfg["header"]:
        p(line)
    p()
    p(f"How: {len(cfg['nodes'])} `evidenced run` processes (release build) on one PostgreSQL catalog and "
      + ("a 3-node Garage cluster (replication factor 3, `consistent`; daemon i talks to Garage node i, as with a local gateway; "
         "the shape of `tests/it/cluster.rs` and of a multi-node deployment, affordable here because the soak's ingest rate is modest)"
         if cfg["garage"] == "cluster" else "one Garage node")
      + ", each node watching its own dock with a camera path pattern and its own unit (defaults otherwise: settle 3 s, "
      f"rescan every 10 s, 2 files at a time, one media job at a time). For {cfg['duration']} s a feeder per dock drops a file every "
      f"{cfg['interval']} s (±30 %): random bytes (mostly 0.5–8 MiB, some 8–16 MiB, every 8th 17–48 MiB and so multipart) and every "
      f"{cfg['video_every']}th a real corpus recording remuxed with a unique tag (so it gets a real proxy). Meanwhile {cfg['readers']} "
      "supervisor threads (one bearer token from `evidenced token create --role supervisor`, keep-alive connections, cycling over "
      "the nodes) search (newest, by officer, device, unit, last 5 minutes; 50 per page), open one result's details (an audited "
      f"view: a custody append), then make {cfg['ranges']} Range reads of a random 256 KiB window of a playable proxy, and pause "
      "0.2–0.6 s. Latencies are measured in the Python client (http.client), so they include its own overhead on the same 2 cores. "
      f"Memory: VmRSS/RssAnon of each daemon from `/proc/PID/status` every {cfg['sample']} s. Afterwards the feeders stop, the "
      "docks drain, every job finishes, the daemons get SIGTERM, and the archive is checked.")
    p()

    # Throughput
    p("## Throughput")
    p()
    fed_bytes = sum(f["size"] for f in fed)
    lat = [cat[f["sha256"]][0] - f["at"] for f in fed if f["sha256"] in cat]
    p("| fed files | fed MiB | files/min | MB/s | videos | dock → archived p50 / p95 / p99 / max s | drain after feeding stopped s | jobs done after s |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|")
    p(f"| {len(fed)} | {fed_bytes / MIB:,.0f} | {len(fed) / dur * 60:.1f} | {fed_bytes / dur / 1e6:.2f} | {sum(f['video'] for f in fed)} | "
      f"{pct(lat, 50):.1f} / {pct(lat, 95):.1f} / {pct(lat, 99):.1f} / {max(lat) if lat else float('nan'):.1f} | "
      f"{post['drain_s']:.1f} | {post['jobs_s']:.1f} |")
    p()
    p("*dock → archived*: from the rename into the dock to the recording's `archived_at` (includes the 3 s settle).")
    p()
    if "cpu_s" in runinfo:
        cpu = runinfo["cpu_s"]
        p(f"CPU during the soak: the machine was {runinfo['host_busy'] * 100:.0f} % busy (of {os.cpu_count()} cores); "
          + ", ".join(f"{k} {v / dur:.2f}" for k, v in cpu.items()) + " cores on average (the daemons with their media workers; "
          "the load generator: readers, feeders, their ffmpeg remuxes; what is left of the busy share is the kernel and anything else "
          "running on the machine).")
        p()

    # Requests
    p("## Supervisor requests")
    p()
    p("| request | count | per s | errors | p50 ms | p95 ms | p99 ms | max ms |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|")
    ok_status = {"search": {200}, "details": {200}, "range": {206}}
    summary = {}
    for kind in ("search", "details", "range"):
        rows = [r for r in reqs if r["kind"] == kind]
        good = [r["ms"] for r in rows if r["status"] in ok_status[kind]]
        errs = len(rows) - len(good)
        summary[kind] = (len(rows), errs, pct(good, 50), pct(good, 95), pct(good, 99))
        p(f"| {kind} | {len(rows)} | {len(rows) / dur:.1f} | {errs} | {pct(good, 50):.1f} | {pct(good, 95):.1f} | {pct(good, 99):.1f} | "
          f"{max(good) if good else float('nan'):.1f} |")
    bad = {}
    for r in reqs:
        if r["status"] not in ok_status[r["kind"]]:
            bad[(r["kind"], r["status"])] = bad.get((r["kind"], r["status"]), 0) + 1
    p()
    if bad:
        p("Errors by status: " + ", ".join(f"{k} → {s}: {n}" for (k, s), n in sorted(bad.items(), key=str)) + ".")
        p()
    # Latency over time: p95 of each fifth of the run (a slow drift would show here).
    fifths = []
    for kind in ("search", "range"):
        rows = [r for r in reqs if r["kind"] == kind and r["status"] in ok_status[kind]]
        parts = []
        for k in range(5):
            lo, hi = runinfo["started"] + dur * k / 5, runinfo["started"] + dur * (k + 1) / 5
            parts.append(pct([r["ms"] for r in rows if lo <= r["t"] < hi], 95))
        fifths.append((kind, parts))
    fmt = lambda v: "–" if v != v else f"{v:.1f}"
    p("p95 (ms) per fifth of the run (– : no request of that kind yet, e.g. before the first proxy was made): "
      + "; ".join(f"{k}: " + " → ".join(fmt(v) for v in parts) for k, parts in fifths) + ".")
    p()

    # Memory
    p("## Memory")
    p()
    warm = cfg["warmup"]
    p(f"RSS of each daemon, sampled every {cfg['sample']} s; the first {warm} s are warm-up and left out of the check. "
      "*first third* and *last third* are the median over the first and the last third of the remaining samples (a median, "
      "because an upload in flight holds up to (parts_in_flight + 1) × part_size = 32 MiB of part buffers for a moment and a single "
      "sample can catch it); the slope is the Theil–Sen estimate (the median of the slopes between every two samples) over all of them. The check passes when the last third is within "
      "10 % (and 4 MiB) of the first; it is applied to the daemons (Garage is shown for context: it grows its own caches).")
    p()
    p("| process | samples | start MiB | peak MiB | first third MiB | last third MiB | change | slope MiB/h | anon first → last MiB | fds first → last | no growth |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    verdicts = []
    whats = sorted({r["what"] for r in rss}, key=lambda s: (not s.startswith("node"), s))
    for what in whats:
        rows = [r for r in rss if r["what"] == what]
        after = [r for r in rows if r["t"] >= warm]
        if len(after) < 3:
            after = rows
        k = max(1, len(after) // 3)
        first, last = after[:k], after[-k:]
        m = lambda rs, key: statistics.median(r[key] for r in rs) / 1024
        f_rss, l_rss = m(first, "VmRSS"), m(last, "VmRSS")
        trend = slope([r["t"] / 3600 for r in after], [r["VmRSS"] / 1024 for r in after])
        ok = (l_rss - f_rss) <= max(0.10 * f_rss, 4.0)
        if what.startswith("node"):
            verdicts.append(ok)
            verdict = "yes" if ok else "**no**"
        else:
            verdict = "(not judged)"
        fds = f"{first[0].get('fds', '?')} → {last[-1].get('fds', '?')}"
        p(f"| {what} | {len(rows)} | {rows[0]['VmRSS'] / 1024:.1f} | {max(r['VmRSS'] for r in rows) / 1024:.1f} | {f_rss:.1f} | {l_rss:.1f} | "
          f"{(l_rss - f_rss) / f_rss * 100:+.1f} % | {trend:+.1f} | {m(first, 'RssAnon'):.1f} → {m(last, 'RssAnon'):.1f} | {fds} | "
          f"{verdict} |")
    p()
    series = {}
    for r in rss:
        if r["what"].startswith("node"):
            series.setdefault(r["what"], []).append(r)
    p("RSS over time (MiB, every sample): " + "; ".join(
        f"{k}: " + " ".join(f"{r['VmRSS'] / 1024:.0f}" for r in v) for k, v in sorted(series.items())) + ".")
    p()

    # Integrity
    p("## Afterwards")
    p()
    fed_sha = {f["sha256"] for f in fed}
    lost = sorted(fed_sha - set(cat))
    unexpected = sorted(set(cat) - fed_sha)
    p(f"- **Lost:** {len(lost)} (fed files whose SHA-256 is not in the catalog); **duplicated:** {post['duplicated']} "
      f"(recordings with more than one `archived` custody event) + {post['stray']} stray originals (reconcile's orphans); "
      f"unexpected recordings: {len(unexpected)}; files left on docks: {post['left_on_docks']}; feeder errors: {len(runinfo['feeder_errors'])}")
    ms = {}
    for sha in fed_sha & set(cat):
        ms[cat[sha][1]] = ms.get(cat[sha][1], 0) + 1
    p(f"- **Media:** " + ", ".join(f"{k} {v}" for k, v in sorted(ms.items())) + " (random bytes end `failed`: not decodable, as expected)")
    checked = post["verify_checked"]
    if isinstance(checked, dict):
        checked = ", ".join(f"{v:,} {k}" for k, v in checked.items())
    p(f"- **`evidenced verify`:** exit {post['verify_exit']}, checked {checked}, {post['verify_discrepancies']} discrepancies, "
      f"{post['verify_warnings']} warnings ({post['verify_s']:.0f} s); **`evidenced reconcile`:** exit {post['reconcile_exit']}, "
      f"{post['stray']} orphans, {post['missing']} missing")
    p(f"- **Custody log:** {post['custody_events']} entries, {post['checkpoints']} signed checkpoints")
    p(f"- **Stop:** " + ", ".join(f"node{i} exit {s}" for i, s in enumerate(post["stops"])) + " after SIGTERM")
    p(f"- **Daemon logs:** " + "; ".join(f"node{i}: {l['warn']} WARN, {l['error']} ERROR, {l['panics']} panics" for i, l in enumerate(post["logs"])))
    if post["log_messages"]:
        p()
        p("Distinct WARN/ERROR messages (count, level, message without time and fields):")
        p()
        for m in post["log_messages"]:
            p(f"    {m}")
    p()
    clean = not lost and post["duplicated"] == 0 and post["stray"] == 0 and post["verify_discrepancies"] == 0 and post["verify_exit"] == 0
    p(f"**Result:** lost {len(lost)}, duplicated {post['duplicated'] + post['stray']}, verify "
      f"{'clean' if post['verify_exit'] == 0 and post['verify_discrepancies'] == 0 else 'NOT clean'}; memory "
      f"{'no growth on any node' if all(verdicts) else 'GROWS on at least one node'}"
      f"{'' if clean else ' — see above'}.")
    # Headline for docs/benchmarks.md.
    s = summary
    head = {
        "files": len(fed), "mib": fed_bytes / MIB, "files_min": len(fed) / dur * 60,
        "search": s["search"], "range": s["range"], "details": s["details"], "lost": len(lost),
        "duplicated": post["duplicated"] + post["stray"], "verify_clean": post["verify_exit"] == 0 and post["verify_discrepancies"] == 0,
        "no_growth": all(verdicts), "lat_p50": pct(lat, 50), "lat_p99": pct(lat, 99),
    }
    json.dump(head, open(f"{w}/headline.json", "w"))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "report"):
        sys.exit(__doc__)
    sys.exit(run(sys.argv[2]) if sys.argv[1] == "run" else report(sys.argv[2]))
