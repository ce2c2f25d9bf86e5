"""Many browser sessions reading the Runs and Run pages of a served lab while two runs train.

Starts a real lab (``streamlit run app.py -- --db TMP/lab.duckdb``, headless, file watcher off as for
hosting) on a temporary database. Before the server starts, four runs are queued through the run
manager's own ``submit`` (paused, so nothing trains in this process): two Home-page demos
(configs/replay-demo.yaml: 5-task Split-Digits, Experience Replay, evaluated every step, 225 steps)
and two runs of the same config with ``--epochs`` epochs a task (45,000 steps at the default). The lab
picks up queued runs when it opens (a lab that stopped resumes its queue); its two CPU workers train
the demos to the end, then the two long runs, which are still training for the whole measured minute
(checked: their status and steps are read at the start and the end of the minute from snapshots the
lab serves, store/snapshot.py).

Then ``--sessions`` browser sessions (one headless Chromium, one browser context each: separate
cookies, cache and Streamlit sessions; Playwright's async API, one task a session) loop for
``--seconds``: open the Runs page (``/runs``), wait until it is drawn, open a Run page
(``/run?run=ID``, in turn a finished demo and a training run), wait until it is drawn, and so on.
``--navigation in-app`` (the default): each session keeps its tab, one Streamlit session, and moves
within the app (the sidebar's Runs link; a Run page by the browser's history navigation, as back and
forward do); the time runs from the click to the drawn page. ``--navigation fresh``: each read is a
new page load and a new Streamlit session. ``--think S`` keeps a session on a drawn page S seconds
(default 0: no pause between reads, the worst case of 20 readers). Before the minute each session loads the Runs
page, a finished Run page and the Runs page again, four sessions at a time (its browser then holds
the app's JavaScript and Vega's, as for a user who has the lab open); those loads are not timed, but
their errors count. The sessions' first
measured loads are spread over 2 s.

Drawn means, checked in the page every 100 ms:
- Runs page: the "Runs" title, the table with a row for every run in the lab (its grid cells) and the
  caption under it ("N run(s).", the fragment's last element).
- Run page: the "Run ID: name" title, the six summary figures with values, the first chart (the
  accuracy panels) rendered by Vega with its lines drawn (an SVG path with data, or, for a live run,
  whose panels are a canvas, coloured pixels on it), and the Config expander (the page's last
  element, below the live fragment). A live page reruns its fragment every ``pages.ui.lab.live_refresh()`` (2 s, 0.25 s a
  session past 8 sessions: about 5 s with 20), so the Streamlit
  "running" indicator is not a usable signal; these elements are. A page not drawn in time is
  reported with what it lacked.
The time is the browser's own clock (performance.now(), from navigation start) when drawn; the
table also gives the median time to the page's title (the app booted in the browser and the server's
first answer drawn), which tells the browser's start-up apart from the rest.

Errors, each counted against the page being read: an uncaught JavaScript error (pageerror), an HTTP
response of 400 or more, a failed request (but the ones aborted by leaving the page), a Streamlit
exception, error or warning box, a dialog (Streamlit's "Connection error"), and a page not drawn
within ``--timeout`` seconds. Timed-out loads are left out of the times (and fail the bench).

Also printed: the steps the two training runs made during the minute, the server's resident memory
(the Streamlit process; its workers apart), and the CPU time the server, its workers, the browser and
everything else on the machine used during the minute (/proc), which tells who was short of CPU; the
browser's share is split by Chromium process kind (the tabs' renderers, the one GPU process that
composites every tab, the main process). ``--trace reads.csv`` writes every measured read with its
start and end in the minute, to see whether slow reads came together (a stall) or apart.

    python bench/sessions.py [--sessions 20] [--seconds 60] [--pages runs,run] [--epochs 1000] [--timeout 30]
                             [--navigation in-app|fresh] [--think 0] [--browser-nice 0] [--trace reads.csv]

``--browser-nice 10`` runs the browsers below the lab's server (its workers are at nice 10 too):
the browsers then take only the CPU the server leaves, as when they run on the users' machines.

The browsers run on the lab's machine: each page load costs Chromium one to two CPU seconds (booting
Streamlit's app, drawing the table or the Vega charts), more than it costs the server. Read the times
with the CPU lines: on a small or shared machine they measure the browsers' wait for a core.

Exit code 1 if any error happened (or a training run was not training for the whole minute).

Target (issue 13): 20 sessions on the Runs and Run pages for a minute while 2 runs train: 0 errors,
and the time to a drawn page (median and 95th percentile).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from store import Store  # noqa: E402
from store.store import open_snapshot  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402  (the browser tests' Chromium)

WARM_UP_TIMEOUT = 120  # s: a session's first load (its browser cache cold), not timed
WARMING_AT_ONCE = 4  # sessions loading their first page at the same time
STAGGER = 2.0  # s: the sessions' first measured loads are spread over this
FINISHED, TRAINING = ("finished-1", "finished-2"), ("training-1", "training-2")

DRAWN_LINE = """  // the panels drawn: an SVG with a line path, or (a live run's, and Streamlit's past 2,000 marks) a
  // canvas with coloured pixels on it (axes and bands are grey; the lines are coloured)
  const drawnLine = (chart) => {
    const svg = chart && chart.querySelector('svg');
    if (svg) return [...svg.querySelectorAll('.mark-line path')].some((p) => (p.getAttribute('d') || '').length > 10);
    const canvas = chart && chart.querySelector('canvas');
    if (!canvas || !canvas.width || !canvas.height) return false;
    if (canvas.__drawn) return true;  // read once: a live chart is updated in place, on the same canvas
    const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < px.length; i += 12) {
      if (px[i + 3] > 0 && Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]) > 60) {
        canvas.__drawn = true;
        return true;
      }
    }
    return false;
  };
"""

# In the page, every 100 ms: null until drawn; then {t: ms since navigation start, title: ms until its
# title was seen} or {error: what the page shows}. It reads textContent, never innerText: innerText
# lays the page out, and 20 tabs doing that ten times a second while they draw slowed the pages it
# measures (the check is the bench's cost, not a reader's).
PAGE_CHECK = """({page, runs, run}) => {
  const q = (s) => document.querySelectorAll(s);
""" + DRAWN_LINE + """  for (const [sel, what] of [['[data-testid="stException"]', 'exception'], ['[data-testid="stAlertContentError"]', 'error box'],
                             ['[data-testid="stAlertContentWarning"]', 'warning box'], ['[role="dialog"]', 'dialog']]) {
    const el = document.querySelector(sel);
    if (el) return {error: what + ': ' + el.textContent.slice(0, 200).replace(/\\s+/g, ' ')};
  }
  const title = [...q('h1')].map((h) => h.textContent.trim());
  const titled = page === 'runs' ? title.includes('Runs') : title.some((t) => t.startsWith(`Run ${run}: `));
  const since = window.__nav || 0;  // an in-app read: when it was asked for; a fresh load: navigation start
  if (titled && window.__titled === undefined) window.__titled = performance.now() - since;
  if (page === 'runs') {
    const rows = new Set([...q('[data-testid^="glide-cell-2-"]')].map((c) => c.dataset.testid));
    const caption = [...q('[data-testid="stCaptionContainer"]')].some((c) => /\\d+ run\\(s\\)\\./.test(c.textContent));
    if (!titled || rows.size < runs || !caption) return null;
  } else {
    if (!titled) return null;
    const values = [...q('[data-testid="stMetricValue"]')].filter((v) => v.textContent.trim());
    const config = [...q('[data-testid="stExpander"]')].some((e) => e.textContent.includes('Config'));
    // the chart last: reading a canvas's pixels is the check's one costly part
    if (values.length < 6 || !config || !drawnLine(document.querySelector('[data-testid="stVegaLiteChart"]'))) return null;
  }
  return {t: performance.now() - since, title: window.__titled};
}"""

# At a timeout: the parts of PAGE_CHECK's drawn page that were missing, in a few words.
LACKING = """({page, run}) => {
  const q = (s) => document.querySelectorAll(s);
""" + DRAWN_LINE + """  const title = [...q('h1')].map((h) => h.textContent.trim());
  const lacking = [];
  if (!(page === 'runs' ? title.includes('Runs') : title.some((t) => t.startsWith(`Run ${run}: `)))) lacking.push('title');
  if (page === 'runs') {
    if (!q('[data-testid^="glide-cell-2-"]').length) lacking.push('rows');
  } else {
    if ([...q('[data-testid="stMetricValue"]')].filter((v) => v.textContent.trim()).length < 6) lacking.push('figures');
    const chart = document.querySelector('[data-testid="stVegaLiteChart"]');
    if (!chart) lacking.push('chart');
    else if (!chart.querySelector('svg, canvas')) lacking.push('panels (no svg or canvas yet)');
    else if (!drawnLine(chart)) lacking.push('panels (a ' + chart.querySelector('svg, canvas').tagName.toLowerCase() + ' with no line)');
    if (![...q('[data-testid="stExpander"]')].some((e) => e.textContent.includes('Config'))) lacking.push('config');
  }
  // and the page's state, which tells a slow tab from a stuck one
  const n = (sel) => q(sel).length;
  const state = `elements ${n('[data-testid="stElementContainer"]')}, stale ${n('[data-stale="true"]')}, ` +
    `charts ${n('[data-testid="stVegaLiteChart"]')}, skeletons ${n('[data-testid="stSkeleton"]')}, ` +
    `status ${(document.querySelector('[data-testid="stStatusWidget"]') || {}).textContent || 'idle'}`;
  return (lacking.join(', ') || 'nothing (drawn just now)') + '; ' + state;
}"""

# An in-app read, in the page: the Runs page by its sidebar link (the user's click); a Run page by the
# browser's history navigation (what back and forward do: history.pushState and a popstate event),
# which Streamlit answers in the same session, as it does the Runs page's Open button.
NAVIGATE = """({page, path}) => {
  window.__titled = undefined;
  window.__nav = performance.now();
  if (page === 'runs') {
    document.querySelector('[data-testid="stSidebar"] a[href="runs"], [data-testid="stSidebar"] a[href$="/runs"]').click();
  } else {
    history.pushState({}, '', path);
    dispatchEvent(new PopStateEvent('popstate', {state: {}}));
  }
}"""


START = time.monotonic()


def progress(what: str) -> None:
    print(f"[{time.monotonic() - START:5.0f} s] {what}", flush=True)


@contextmanager
def lab_server(db: Path, log_path: Path):
    """`streamlit run app.py` over ``db`` on a free port, as a hosted lab runs it; yields (URL, process)."""
    port = free_port()
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none", "--", "--db", str(db)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CL_LAB_DB": ""})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise SystemExit("the lab did not start:\n" + log.read())
                    time.sleep(0.2)
            yield url, proc
        finally:
            proc.terminate()  # SIGTERM: the lab commits what it received, then stops its workers
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def queue_runs(db: Path, epochs: int) -> None:
    """Two demo runs, then two long ones, queued in ``db`` through the run manager (paused: the lab trains them)."""
    from engine.config import load_config, parse_config
    from engine.runs.manager import RunManager

    demo = load_config(ROOT / "configs" / "replay-demo.yaml").model_dump(mode="json")
    with Store(db, serve=False) as store:
        manager = RunManager(store, paused=True, warm_workers=0)
        try:
            for seed, name in enumerate(FINISHED):
                manager.submit(parse_config({**demo, "name": name, "seed": seed}))
            for seed, name in enumerate(TRAINING):
                train = {**demo["train"], "epochs_per_task": epochs}
                manager.submit(parse_config({**demo, "name": name, "seed": seed, "train": train}))
        finally:
            manager.shutdown()


def read_runs(db: Path) -> dict[str, tuple]:
    """name -> (id, status, last step, total steps), from a snapshot the lab serves ({} if it does not answer)."""
    snapshot = open_snapshot(db)
    if snapshot is None:
        return {}
    try:
        return {r[0]: r[1:] for r in snapshot.sql("SELECT name, id, status, coalesce(last_step, 0), total_steps FROM runs")}
    finally:
        snapshot.close()


def wait_until_training(db: Path, timeout: float = 300) -> dict[str, tuple]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = read_runs(db)
        if (all(runs.get(n, (0, ""))[1] == "finished" for n in FINISHED)
                and all(runs.get(n, (0, ""))[1] == "running" and runs[n][2] > 0 for n in TRAINING)):
            return runs
        time.sleep(1)
    raise SystemExit(f"the runs did not reach the state to measure in {timeout:.0f} s: {read_runs(db)}")


# ---- processes, from /proc ------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_seconds(pids) -> dict[int, float]:
    """CPU time (user + system) of each live process in ``pids``."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, ValueError):
            pass
    return out


def rss_mib(pids) -> float:
    total = 0
    for pid in pids:
        try:
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
            total += int(line.split()[1])
        except (OSError, StopIteration):
            pass
    return total / 1024


def process_kind(pid: int) -> str:
    """What a browser-side process is: Chromium's own ``--type`` (renderer, gpu-process, utility), its
    main process ("chromium"), or "driver" (Playwright's driver and this script)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()  # Chromium rewrites it
    except OSError:
        return "gone"
    if not argv or "chrom" not in Path(argv[0].decode(errors="replace")).name:
        return "driver"
    return next((a[7:].decode() for a in argv if a.startswith(b"--type=")), "chromium")


def machine_busy() -> float:
    """CPU seconds every core has spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # less idle and iowait


class Processes:
    """The server process, its workers and the browser (this process, and its other descendants:
    Playwright's driver and Chromium); their CPU time over the minute and resident memory."""

    def __init__(self, server: int):
        self.server = server
        self.peak = {"server": 0.0, "workers": 0.0, "browser": 0.0}

    def groups(self) -> dict[str, list[int]]:
        children = _children()
        workers = descendants(self.server, children)
        browser = [os.getpid(), *(p for p in descendants(os.getpid(), children) if p != self.server and p not in workers)]
        return {"server": [self.server], "workers": workers, "browser": browser}

    def sample(self) -> dict[str, float]:
        now = {name: rss_mib(pids) for name, pids in self.groups().items()}
        for name, mib in now.items():
            self.peak[name] = max(self.peak[name], mib)
        return now

    def start(self) -> None:
        self.cpu0 = {name: cpu_seconds(pids) for name, pids in self.groups().items()}
        self.busy0, self.t0 = machine_busy(), time.monotonic()

    def stop(self) -> dict[str, float]:
        """CPU seconds each group used since ``start`` (processes that ended meanwhile are missed: the
        others' share is an upper bound), and the whole machine's."""
        used = {}
        for name, pids in self.groups().items():
            used[name] = sum(s - self.cpu0[name].get(pid, 0.0) for pid, s in cpu_seconds(pids).items())
        # the browser's share by process kind: 20 tabs share one main browser process and one GPU
        # process (compositing), each tab has its renderer; a kind near a whole core is a bottleneck
        kinds: dict[str, float] = {}
        for pid, s in cpu_seconds(self.groups()["browser"]).items():
            kind = process_kind(pid)
            kinds[kind] = kinds.get(kind, 0.0) + s - self.cpu0["browser"].get(pid, 0.0)
        used["browser kinds"] = kinds
        used["machine"] = machine_busy() - self.busy0
        used["elapsed"] = time.monotonic() - self.t0
        return used


# ---- the sessions ---------------------------------------------------------------------------------
# Streamlit's client looks for the server below the page's path first (/runs/_stcore/health), then
# at the root: those 404s are its discovery, not errors.
PROBE = re.compile(r"^/[^/?]+/_stcore/(health|host-config)$")


class Tally:
    def __init__(self):
        self.times: dict[str, list[float]] = {}  # ms from navigation start to drawn
        self.titles: dict[str, list[float]] = {}  # ms to the page's title
        self.errors: dict[str, list[str]] = {}
        self.notes: dict[str, list[str]] = {}  # not errors: what failed outside the lab, console lines
        self.reads: list[tuple] = []  # (session, page, began, ended (monotonic s), ms drawn or the error)

    def read(self, session: int, page: str, began: float, result: dict) -> None:
        self.reads.append((session, page, began, time.monotonic(), result.get("t", result.get("error"))))

    def loaded(self, page: str, ms: float, title_ms: float) -> None:
        self.times.setdefault(page, []).append(ms)
        self.titles.setdefault(page, []).append(title_ms)

    def error(self, page: str, what: str) -> None:
        self.errors.setdefault(page, []).append(what)

    def note(self, page: str, what: str) -> None:
        self.notes.setdefault(page, []).append(what)


async def read_page(tab, url: str, page: str, runs: int, timeout: float, in_app: bool = False) -> dict:
    """Open ``url`` (a fresh page load, or ``in_app``: a navigation in the open app, NAVIGATE) and
    wait until it is drawn (PAGE_CHECK); {"t": ms, "title": ms} or {"error": ...}."""
    from playwright.async_api import Error as PlaywrightError

    run = parse_qs(urlsplit(url).query).get("run", [""])[0]
    try:
        if in_app:
            split = urlsplit(url)
            await tab.evaluate(NAVIGATE, {"page": page, "path": f"{split.path}?{split.query}" if split.query else split.path})
        else:
            await tab.goto(url, wait_until="commit", timeout=timeout * 1000)
        handle = await tab.wait_for_function(PAGE_CHECK, arg={"page": page, "runs": runs, "run": run}, polling=100,
                                             timeout=timeout * 1000)
        return await handle.json_value()
    except PlaywrightError as err:  # TimeoutError is one
        first = str(err).splitlines()[0]
        if "Timeout" not in first:
            return {"error": first}
        try:  # what the page lacked, so that the error says where the time went
            lacked = await asyncio.wait_for(tab.evaluate(LACKING, {"page": page, "run": run}), 5)
        except (PlaywrightError, asyncio.TimeoutError):
            lacked = "unknown"
        return {"error": f"not drawn in {timeout:.0f} s (lacking: {lacked})"}


def failed(request, url: str, page: str, tally: Tally) -> None:
    """A request that failed: an error if it went to the lab (but one aborted by leaving the page);
    a note if it went elsewhere (offline, Streamlit's Material icons from fonts.gstatic.com fail)."""
    if not request.url.startswith(url + "/"):
        tally.note(page, f"request to another host failed: {request.failure} {request.url}")
    elif "ERR_ABORTED" not in (request.failure or ""):
        tally.error(page, f"request failed: {request.failure} {request.url}")


async def session(n: int, browser, base: str, plan: list[tuple[str, str]], runs: int, args, warming: asyncio.Semaphore,
                  ready: list, start: asyncio.Event, stop_at: list[float], tally: Tally) -> None:
    """One user: warm up (one Runs page), wait for ``start``, then read the pages of ``plan`` in turn."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        tab = await context.new_page()
        current = ["warm-up"]
        tab.on("pageerror", lambda err: tally.error(current[0], f"pageerror: {err}"))
        tab.on("response", lambda r: r.status >= 400 and not PROBE.match(r.url[len(base):])
               and tally.error(current[0], f"HTTP {r.status} {r.url}"))
        tab.on("requestfailed", lambda r: failed(r, base, current[0], tally))
        tab.on("console", lambda m: m.type == "error" and tally.note(current[0], f"console error: {m.text}"))
        async with warming:  # a few at a time: 20 cold browser caches at once is no reader's case
            # the Runs page, a finished Run page (Vega's code is loaded by the first chart) and Runs again
            finished_run = next(url for page, url in plan if page == "run (finished)") if "run" in args.pages else None
            for page, url, in_app in (("runs", plan[0][1], False), ("run", finished_run, args.in_app),
                                      ("runs", plan[0][1], args.in_app)):
                result = await read_page(tab, url, page, runs, WARM_UP_TIMEOUT, in_app) if url else {}
                if "error" in result:
                    tally.error("warm-up", result["error"])
                    break
        if not args.in_app:
            await tab.goto("about:blank")  # an open Runs page refreshes every 2 s: no load before the minute
    finally:
        ready.append(n)
    try:
        await start.wait()
        await asyncio.sleep(STAGGER * n / args.sessions)  # users do not all click in the same millisecond
        i = n  # sessions start at different places of the plan
        if args.in_app and plan[i % len(plan)][0] == "runs":
            i += 1  # the session is on the Runs page: its first read is a Run page
        while time.monotonic() < stop_at[0]:
            page, url = plan[i % len(plan)]
            current[0] = page
            began = time.monotonic()
            result = await read_page(tab, url, page.split()[0], runs, args.timeout, args.in_app)
            tally.read(n, page, began, result)
            if "error" in result:
                tally.error(page, result["error"])
                if args.in_app:  # as a user would: reload the lab (the Runs page), then go on from there
                    await read_page(tab, f"{base}/runs", "runs", runs, args.timeout)
                    if plan[(i + 1) % len(plan)][0] == "runs":
                        i += 1
            else:
                tally.loaded(page, result["t"], result["title"])
                await asyncio.sleep(args.think)  # the user reads the page (a live one keeps refreshing)
            i += 1
    finally:
        await context.close()


def plan_of(url: str, ids: dict[str, int], pages: list[str]) -> list[tuple[str, str]]:
    """The pages a session reads in turn: Runs, a finished run, Runs, a training run, ..."""
    plan = []
    for finished, training in zip(FINISHED, TRAINING):
        for name in (finished, training):
            kind = "finished" if name in FINISHED else "training"
            plan += [("runs", f"{url}/runs")] * ("runs" in pages)
            plan += [(f"run ({kind})", f"{url}/run?run={ids[name]}")] * ("run" in pages)
    return plan


async def drive(url: str, args, db: Path, processes: Processes) -> dict:
    """Open the lab and wait for its runs, warm the sessions up, then the measured minute: its loads
    and errors, the runs before and after it, the CPU time used and the memory sampled every second."""
    from playwright.async_api import async_playwright

    tally, warming, ready, start, stop_at = Tally(), asyncio.Semaphore(WARMING_AT_ONCE), [], asyncio.Event(), [0.0]
    os.nice(args.browser_nice)  # this script, Playwright's driver and Chromium (the lab was started before)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        opener = await browser.new_page()  # the lab opens (store, run manager, workers) on its first page load
        await opener.goto(url, timeout=args.timeout * 1000)
        await opener.get_by_role("heading", name="CL Lab", level=1).wait_for(timeout=args.timeout * 1000)
        await opener.close()
        progress("the lab is open; its workers train the demos, then the long runs")
        runs = await asyncio.to_thread(wait_until_training, db)
        progress(f"the demos finished and the long runs train; {args.sessions} sessions warm up")
        plan = plan_of(url, {name: runs[name][0] for name in (*FINISHED, *TRAINING)}, args.pages)
        tasks = [asyncio.create_task(session(n, browser, url, plan, len(runs), args, warming, ready, start, stop_at, tally))
                 for n in range(args.sessions)]
        while len(ready) < len(tasks):
            await asyncio.sleep(0.2)
        progress(f"the sessions are ready; the measured {args.seconds:g} s begin")
        before = read_runs(db)
        processes.start()
        stop_at[0] = time.monotonic() + args.seconds
        start.set()
        memory = [processes.sample()]
        while time.monotonic() < stop_at[0] and not all(t.done() for t in tasks):
            await asyncio.sleep(1)
            memory.append(processes.sample())
        cpu = processes.stop()  # the minute is over: a load still under way finishes and is counted
        cpu["began"] = stop_at[0] - args.seconds
        after = read_runs(db)
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):  # a session that broke down is an error, reported
                tally.error("session", f"{type(result).__name__}: {result}")
        await browser.close()
    return {"tally": tally, "runs": len(runs), "before": before, "after": after, "cpu": cpu, "memory": memory}


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1] if len(values) > 1 else values[0]


def report(args, out: dict) -> int:
    """Print the figures; the number of problems (errors, and training runs that were not training)."""
    tally, cpu = out["tally"], out["cpu"]
    print(f"\n{args.sessions} sessions for {args.seconds:g} s on {', '.join(args.pages)} ({args.navigation} reads, "
          f"{args.think:g} s on each page); "
          f"{out['runs']} runs in the lab; machine: {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"\n{'page':18s} {'loads':>6s} {'errors':>6s} {'median ms':>10s} {'p95 ms':>8s} {'max ms':>8s}"
          f" {'title, median ms':>17s}")
    pages = [*tally.times, *(p for p in tally.errors if p not in tally.times)]
    everything = [t for times in tally.times.values() for t in times]
    all_titles = [t for titles in tally.titles.values() for t in titles]
    for page, times, titles in [*((p, tally.times.get(p, []), tally.titles.get(p, [])) for p in pages),
                                ("all", everything, all_titles)]:
        errors = len(tally.errors.get(page, [])) if page != "all" else sum(map(len, tally.errors.values()))
        figures = (f"{statistics.median(times):10.0f} {percentile(times, 95):8.0f} {max(times):8.0f}"
                   f" {statistics.median(titles):17.0f}" if times else f"{'-':>10s} {'-':>8s} {'-':>8s} {'-':>17s}")
        print(f"{page:18s} {len(times):6d} {errors:6d} {figures}")
    print(f"(throughput: {len(everything) / args.seconds:.1f} page reads/s)")

    problems = sum(map(len, tally.errors.values()))
    print("\ntraining runs during the minute (from the lab's snapshots at its start and end):")
    for name in TRAINING:
        (run_id, status0, step0, total), (_, status1, step1, _) = out["before"][name], out["after"][name]
        print(f"  run {run_id} {name}: step {step0} -> {step1} of {total} (+{step1 - step0}, "
              f"{(step1 - step0) / cpu['elapsed']:.0f} steps/s), {status0} -> {status1}")
        if not (status0 == status1 == "running" and step1 > step0):
            print(f"  PROBLEM: run {run_id} was not training for the whole minute")
            problems += 1

    memory = out["memory"]
    print("\nresident memory (MiB), at the minute's start and its peak:")
    for group in ("server", "workers", "browser"):
        print(f"  {group:8s} {memory[0][group]:7.0f} {max(m[group] for m in memory):7.0f}"
              + ("  (the Streamlit process)" if group == "server" else
                 "  (the lab's worker processes)" if group == "workers" else "  (Chromium, Playwright's driver, this script)"))
    ours = cpu["server"] + cpu["workers"] + cpu["browser"]
    print(f"\nCPU during the minute (seconds of CPU; {os.cpu_count()} cores x {cpu['elapsed']:.0f} s = "
          f"{os.cpu_count() * cpu['elapsed']:.0f} available):")
    for group in ("server", "workers", "browser"):
        print(f"  {group:8s} {cpu[group]:6.1f}")
    for kind, seconds in sorted(cpu["browser kinds"].items(), key=lambda k: -k[1]):
        print(f"    {kind:14s} {seconds:6.1f}")
    print(f"  {'others':8s} {max(0.0, cpu['machine'] - ours):6.1f}  (the rest of the machine: other users' processes)")
    print(f"  {'busy':8s} {cpu['machine']:6.1f}  ({100 * cpu['machine'] / (os.cpu_count() * cpu['elapsed']):.0f}% of the machine)")

    for title, found in (("errors", tally.errors), ("not counted as errors", tally.notes)):
        if found:
            print(f"\n{title}, by kind (at most 20 kinds):")
            kinds: dict[tuple[str, str], int] = {}
            for page, whats in found.items():
                for what in whats:
                    kinds[(page, what[:200])] = kinds.get((page, what[:200]), 0) + 1
            for (page, what), count in list(kinds.items())[:20]:
                print(f"  {page}: {count} x {what}")
    if args.trace:
        with open(args.trace, "w", newline="") as f:
            out_csv = csv.writer(f)
            out_csv.writerow(["session", "page", "began_s", "ended_s", "drawn_ms_or_error"])
            for n, page, began, ended, what in sorted(tally.reads, key=lambda r: r[2]):
                out_csv.writerow([n, page, f"{began - cpu['began']:.2f}", f"{ended - cpu['began']:.2f}",
                                  f"{what:.0f}" if isinstance(what, float | int) else what])
        print(f"\nevery read, with its start and end in the minute: {args.trace}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--pages", default="runs,run", help="the pages each session reads in turn: runs, run or both")
    parser.add_argument("--epochs", type=int, default=1000,
                        help="epochs a task of the two training runs (45 steps a task an epoch): long enough to outlast the minute")
    parser.add_argument("--timeout", type=float, default=30, help="seconds a page may take to be drawn")
    parser.add_argument("--navigation", choices=["in-app", "fresh"], default="in-app",
                        help="in-app: each session keeps its tab (one Streamlit session) and moves between pages in "
                             "it; fresh: every read is a new page load (a new Streamlit session)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds a session stays on a page once it is drawn, before the next read")
    parser.add_argument("--browser-nice", type=int, default=0, choices=range(0, 20), metavar="0-19",
                        help="the browsers' CPU priority below the lab's server (nice); 10: the browsers take only "
                             "the CPU the server leaves, as when they run on the users' own machines")
    parser.add_argument("--trace", metavar="CSV", help="write every measured read (session, page, start and end in "
                                                         "the minute, time to drawn or the error) to this CSV file")
    args = parser.parse_args()
    args.pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    if not args.pages or set(args.pages) - {"runs", "run"}:
        parser.error(f"--pages {','.join(args.pages)!r}: a comma-separated list of runs and run")
    if args.sessions < 1 or args.seconds <= 0 or args.timeout <= 0 or args.think < 0 or not 1 <= args.epochs <= 10000:
        parser.error("--sessions at least 1, --seconds and --timeout above 0, --think 0 or more, --epochs from 1 to 10000")
    if args.trace and not Path(args.trace).resolve().parent.is_dir():
        parser.error(f"--trace {args.trace!r}: its folder does not exist")
    args.in_app = args.navigation == "in-app"
    if args.in_app and args.pages == ["runs"]:
        parser.error("--pages runs: in-app reads need two pages to move between (add run, or --navigation fresh)")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is not installed (Debian's chromium; Playwright's own download does not work here)")
    with tempfile.TemporaryDirectory(prefix="cl-lab-sessions-") as tmp:
        db = Path(tmp) / "lab.duckdb"
        queue_runs(db, args.epochs)
        progress("four runs queued; the lab starts")
        with lab_server(db, Path(tmp) / "streamlit.log") as (url, proc):
            out = asyncio.run(drive(url, args, db, Processes(proc.pid)))
            progress("the minute is over; the lab stops")
        problems = report(args, out)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
