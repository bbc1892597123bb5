#!/usr/bin/env python
"""The Space under load (issue 22, item 4): one session's search latency, then concurrent sessions' latency,
throughput and isolation, on 127.0.0.1.

    python benchmarks/space_load.py                          # the working tree's space/
    python benchmarks/space_load.py --compare_with fd4ffab   # ... and that commit's space/, alternately, in one run
    python benchmarks/space_load.py --client browser gradio_client   # searching both ways
    python benchmarks/space_load.py --sessions 5 --searches 2 --localizer none   # smaller; the window search

Each app is served by a fresh subprocess of this script (`--_serve`) bound to 127.0.0.1, with the shipped embedder
and, by default, the shipped localiser (as the Space runs them); `--compare_with REV` serves the `space/` package of
git revision REV the same way (with the working tree's `modeling_logo`), so that both are measured in one run on the
same machine load. Nothing leaves the loopback interface.

Every session is its own `gradio_client.Client` (so its own `gr.State`). It registers `--brands` brands from
`--shots` synthetic logo images each: the same logos in every session, under names of its own (`s3-brand1`), so
that a gallery leaking from one session to another would show up as another session's names. It then searches
whole photos (one of its logos pasted on a plain 320×240 background), one request after the other, making a
browser's requests (`--client browser`, [`BrowserSearch`]: upload the photo, join the queue, read the session's event
stream, fetch the answer's files) or through `gradio_client.Client.predict` (`--client gradio_client`, which polls
for the answer every 50 ms, so its latencies include up to 50 ms of its own). `--photos distinct`: every search has a
photo of its own (nothing can be answered from a cache); `--photos repeated`: all sessions search the same few
photos, as visitors clicking the example scenes do. Both by default, on the same server. Every photo is written
before the searches are timed, as a visitor's photo exists before they search (writing one costs this process about
3 ms of CPU that would otherwise be taken from the server's cores).

- single session: `--single_searches` searches after two warm-ups; median and p95 latency.
- concurrent: `--sessions` sessions register their brands, then all search at once (`--searches` each); latency
  p50/p95 from the start of each request to its answer, requests/s over the wall time of the searches, errors.
- isolation: every brand of every answer is one of the session's own (a leak otherwise), and the best-ranked one is
  the brand of the logo in the photo (counted apart: `wrong`). Whether it clears the threshold is the model's
  business, not the Space's.
- CPU: the server process's CPU time (all threads) and this process's (the clients') per search, the cores a search
  costs whatever else runs on the machine. The clients pass `ssl_verify=False` (plain HTTP on the loopback): by
  default gradio_client builds a TLS context, loading the CA bundle, for each of its HTTP requests, which cost
  0.3 s of CPU per search on a busy 2-core machine, more than the server's work. While the sessions search at once,
  the shares of all cores' time that were busy, idle and stolen (by the hypervisor, for other machines: the figures
  of a run with much stolen time are not this machine's) are recorded from `/proc/stat`.

Prints a table and writes `benchmarks/results/space_load.json` (`--output` elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _results import write_result
from PIL import Image, ImageDraw


REPO = Path(__file__).resolve().parents[1]
EMBEDDER = REPO / "checkpoints" / "logo-embedding-resnet-small"
LOCALIZER = REPO / "checkpoints" / "logo-localizer-resnet-small"
SCENE_SIZE, SCENE_BACKGROUND = (320, 240), (128, 128, 128)
READY = "space_load: serving"
REPEATED_PHOTOS = 3  # per brand, with --photos repeated
WARM_UP_SEARCHES = 2  # the single session's first uploads and answers, not timed


# ---------------------------------------------------------------------------------------------------------------------
# The server (a subprocess)


def serve(args) -> None:
    """Serve `space.app` from `args.app_dir` on 127.0.0.1:`args.port` until stdin closes."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, args.app_dir)  # the `space` package to serve: the working tree's or a revision's
    import space.app as app_module
    from modeling_logo import LogoEmbedder

    if not Path(app_module.__file__).resolve().is_relative_to(Path(args.app_dir).resolve()):
        raise RuntimeError(f"space.app came from {app_module.__file__}, not from {args.app_dir}")
    localizer = None if args.localizer == "none" else args.localizer
    demo = app_module.build_demo(LogoEmbedder.from_pretrained(EMBEDDER), localizer=localizer)
    demo.launch(server_name="127.0.0.1", server_port=args.port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    print(READY, flush=True)
    sys.stdin.read()
    demo.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_app(app_dir: Path, localizer: str, log_dir: Path, start_timeout_s: float = 180):
    """`(URL, process id)` of `app_dir`'s `space.app` served by a subprocess of this script; stopped on exit."""
    port = _free_port()
    log = open(log_dir / f"server-{port}.log", "w+")
    command = [sys.executable, __file__, "--_serve", "--app_dir", str(app_dir), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--localizer", localizer],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    ready = threading.Event()
    threading.Thread(target=lambda: process.stdout.readline().startswith(READY) and ready.set(), daemon=True).start()
    try:
        if not ready.wait(start_timeout_s):
            log.seek(0)
            raise RuntimeError(f"the server did not start in {start_timeout_s:.0f} s:\n{log.read()[-4000:]}")
        yield f"http://127.0.0.1:{port}/", process.pid
    except Exception:
        log.seek(0)
        print(f"The server's log:\n{log.read()[-4000:]}", file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def app_of_revision(revision: str, directory: Path):
    """A folder holding the `space/` package of git `revision` (for `served_app`)."""
    target = directory / f"space-{revision}"
    target.mkdir()
    archive = subprocess.run(["git", "archive", revision, "space"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    yield target


# ---------------------------------------------------------------------------------------------------------------------
# Images: the same synthetic logos for every session


def logo_image(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A synthetic logo: a coloured background with four random shapes."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        x1, y1 = x0 + rng.integers(10, size[0] // 2), y0 + rng.integers(10, size[1] // 2)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def write_shots(directory: Path, brands: int, shots: int) -> list[list[str]]:
    """Per brand, `shots` files of its logo at a few scales."""
    paths = []
    for brand in range(brands):
        logo = logo_image(1000 + brand)
        paths.append([])
        for shot in range(shots):
            path = directory / f"brand{brand}-shot{shot}.png"
            scale = 1 + 0.15 * shot
            logo.resize((round(logo.width * scale), round(logo.height * scale))).save(path)
            paths[-1].append(str(path))
    return paths


def write_scene(directory: Path, brand: int, session: int, number: int, seed: int = 0) -> str:
    """A whole photo: `brand`'s logo pasted on a plain background at a place drawn from `(seed, session, number)`
    (each measurement on a server has a seed of its own, so that its photos are new to the server's cache)."""
    rng = np.random.default_rng([seed, session, number])
    logo = logo_image(1000 + brand)
    photo = Image.new("RGB", SCENE_SIZE, SCENE_BACKGROUND)
    photo.paste(
        logo, (int(rng.integers(0, SCENE_SIZE[0] - logo.width)), int(rng.integers(0, SCENE_SIZE[1] - logo.height)))
    )
    path = directory / f"scene-brand{brand}-s{session}-n{number}-seed{seed}.png"
    photo.save(path)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------------
# The client side


class BrowserSearch:
    """A search as a browser makes it, on one kept-alive HTTP connection: upload the photo, join the queue, read the
    session's event stream until the answer, fetch the answer's files. `gradio_client` does the same requests but
    looks for the answer every 50 ms (`time.sleep(0.05)` in its `stream_sse_v1plus`), which adds 0-50 ms to a
    search's wait that a browser's event stream does not."""

    def __init__(self, url: str, session_hash: str, fn_index: int):
        import httpx

        self.http = httpx.Client(base_url=f"{url.rstrip('/')}/gradio_api/", timeout=300)
        self.session_hash, self.fn_index = session_hash, fn_index

    @classmethod
    def in_session_of(cls, client, url: str) -> BrowserSearch:
        """Searches in the session (the `gr.State`) of `gradio_client.Client` `client`, connected to `url`."""
        (fn_index,) = [d["id"] for d in client.config["dependencies"] if d.get("api_name") == "search"]
        return cls(url, client.session_hash, fn_index)

    def __call__(self, photo: str, threshold: float) -> list:
        """The endpoint's outputs for `photo` at `threshold`, its files fetched."""
        with open(photo, "rb") as file:
            (path,) = self.http.post("upload", files={"files": (Path(photo).name, file)}).raise_for_status().json()
        query = {"path": path, "orig_name": Path(photo).name, "meta": {"_type": "gradio.FileData"}}
        joined = self.http.post(
            "queue/join",
            json={"data": [query, threshold, None], "fn_index": self.fn_index, "session_hash": self.session_hash},
        )
        event_id = joined.raise_for_status().json()["event_id"]
        with self.http.stream("GET", "queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    break
            else:
                raise RuntimeError("the event stream ended without the answer")
        if not message.get("success"):
            raise RuntimeError(f"the app answered with an error: {message.get('output')}"[:200])
        outputs = message["output"]["data"]
        for url in _file_urls(outputs):  # the answer's files (the annotated photo, a gallery's images) to show
            self.http.get(url).raise_for_status()
        return outputs


def _file_urls(value) -> list[str]:
    """The URLs of the files (gradio `FileData`) anywhere in an answer."""
    if isinstance(value, dict):
        if value.get("url") and value.get("meta", {}).get("_type") == "gradio.FileData":
            return [value["url"]]
        value = list(value.values())
    if isinstance(value, list):
        return [url for item in value for url in _file_urls(item)]
    return []


class Session:
    """One visitor: a `gradio_client.Client` with brands of its own (`s<index>-brand<j>`), which searches as a browser
    does (`client="browser"`, [`BrowserSearch`]) or through `gradio_client` (`client="gradio_client"`)."""

    def __init__(
        self,
        url: str,
        index: int,
        shots: list[list[str]],
        scene_dir: Path,
        shared: list[list[str]] | None = None,
        client: str = "browser",
        seed: int = 0,
    ):
        from gradio_client import Client

        self.client = Client(url, verbose=False, ssl_verify=False, httpx_kwargs={"timeout": 300})
        self.browser = BrowserSearch.in_session_of(self.client, url) if client == "browser" else None
        self.index, self.names = index, [f"s{index}-brand{brand}" for brand in range(len(shots))]
        # `shared`: the photos every session searches (per brand); None: a new photo for every search.
        self.shots, self.scene_dir, self.shared, self.seed = shots, scene_dir, shared, seed
        # The slider's default: the shipped model's calibrated threshold.
        self.threshold = json.loads((EMBEDDER / "config.json").read_text())["similarity_threshold"]
        self.leaks = self.wrong = 0
        self.photos: dict[int, str] = {}

    def register(self) -> list[float]:
        from gradio_client import handle_file

        seconds = []
        for name, paths in zip(self.names, self.shots):
            start = time.perf_counter()
            self.client.predict(name=name, files=[handle_file(p) for p in paths], api_name="/add_brand")
            seconds.append(time.perf_counter() - start)
        return seconds

    def photo(self, number: int) -> str:
        """The `number`-th query photo (of brand `number % brands`), written the first time it is asked for."""
        brand = number % len(self.names)
        if self.shared is not None:  # every session searches the same few photos, as visitors clicking the examples
            return self.shared[brand][(number // len(self.names)) % len(self.shared[brand])]
        if number not in self.photos:  # no two requests upload the same photo: nothing can come from a cache
            self.photos[number] = write_scene(self.scene_dir, brand, self.index, number, self.seed)
        return self.photos[number]

    def search(self, number: int) -> float:
        """Search the `number`-th query photo; returns its latency, after checking the answer."""
        from gradio_client import handle_file

        brand = number % len(self.names)
        photo = self.photo(number)
        start = time.perf_counter()
        if self.browser is not None:
            ranking, _verdict, _shots, _annotated, _rows = self.browser(photo, self.threshold)
        else:
            ranking, _verdict, _shots, _annotated, _rows = self.client.predict(
                handle_file(photo), self.threshold, api_name="/search"
            )
        seconds = time.perf_counter() - start
        labels = {confidence["label"] for confidence in ranking["confidences"]}
        self.leaks += not labels <= set(self.names)
        self.wrong += ranking["confidences"][0]["label"] != self.names[brand]
        return seconds


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system, all threads) process `pid` has used: unlike latencies, it does not grow when
    other processes take the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_cpu_shares() -> dict[str, int] | None:
    """The machine's CPU time so far by state (`/proc/stat`, in clock ticks summed over cores), or None off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = values
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal}


def _shares_between(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, float] | None:
    """The share of all cores' time each state took between two `machine_cpu_shares`."""
    if before is None or after is None:
        return None
    spent = {state: after[state] - before[state] for state in before}
    total = sum(spent.values()) or 1
    return {state: round(ticks / total, 3) for state, ticks in spent.items()}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure(
    url: str, server_pid: int, args, shots: list[list[str]], scene_dir: Path, photos: str, client: str, seed: int
) -> dict:
    """The single-session and concurrent figures of the app at `url` (served by process `server_pid`), searching
    `photos` ("distinct" or "repeated") photos made with `seed` (`write_scene`) with `client` ("browser" or
    "gradio_client")."""
    shared = None
    if photos == "repeated":  # written once, before any upload
        shared = [
            [write_scene(scene_dir, brand, 0, k, seed) for k in range(REPEATED_PHOTOS)] for brand in range(len(shots))
        ]
    single = Session(url, 0, shots, scene_dir, shared, client, seed)
    single.register()
    for number in range(WARM_UP_SEARCHES + args.single_searches):  # photos are written before any search is timed
        single.photo(number)
    for number in range(WARM_UP_SEARCHES):
        single.search(number)
    server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
    # The timed photos come after the warm-ups' (a photo searched again is answered from the analysis cache).
    single_seconds = [single.search(WARM_UP_SEARCHES + number) for number in range(args.single_searches)]
    single_server_cpu = (cpu_seconds(server_pid) - server_cpu) / len(single_seconds)
    single_client_cpu = (time.process_time() - client_cpu) / len(single_seconds)

    with ThreadPoolExecutor(max_workers=args.sessions) as pool:
        sessions = list(
            pool.map(
                lambda index: Session(url, index + 1, shots, scene_dir, shared, client, seed), range(args.sessions)
            )
        )
        register_seconds = [s for seconds in pool.map(Session.register, sessions) for s in seconds]
        for session in sessions:  # the photos a visitor holds exist before the load starts
            for number in range(args.searches):
                session.photo(number)
        errors, latencies = [], []
        barrier = threading.Barrier(args.sessions)

        def run(session: Session) -> None:
            barrier.wait()
            for number in range(args.searches):
                try:
                    latencies.append(session.search(number))
                except Exception as error:  # counted: a load test reports failures, it does not stop at the first
                    errors.append(f"{type(error).__name__}: {error}"[:200])

        start, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
        machine = machine_cpu_shares()
        list(pool.map(run, sessions))
        wall = time.perf_counter() - start
        machine = _shares_between(machine, machine_cpu_shares())
        load_server_cpu = (cpu_seconds(server_pid) - server_cpu) / max(1, len(latencies))
        load_client_cpu = (time.process_time() - client_cpu) / max(1, len(latencies))
    return {
        "single_session": {
            "searches": len(single_seconds),
            "search_ms_median": 1000 * statistics.median(single_seconds),
            "search_ms_p95": 1000 * _percentile(single_seconds, 95),
            "server_cpu_ms_per_search": 1000 * single_server_cpu,
            "client_cpu_ms_per_search": 1000 * single_client_cpu,
            "leaks": single.leaks,
            "wrong_top_brand": single.wrong,
        },
        "concurrent": {
            "sessions": args.sessions,
            "requests": args.sessions * args.searches,
            "answered": len(latencies),
            "errors": len(errors),
            "first_errors": errors[:3],
            "search_ms_p50": 1000 * _percentile(latencies, 50),
            "search_ms_p95": 1000 * _percentile(latencies, 95),
            "requests_per_s": len(latencies) / wall,
            "wall_s": wall,
            "server_cpu_ms_per_search": 1000 * load_server_cpu,
            "client_cpu_ms_per_search": 1000 * load_client_cpu,
            "add_brand_ms_median": 1000 * statistics.median(register_seconds),
            # busy / idle / stolen (by the hypervisor for other machines) shares of all cores while they searched
            "machine_cpu_shares": machine,
            "leaks": sum(session.leaks for session in sessions),
            "wrong_top_brand": sum(session.wrong for session in sessions),
        },
    }


def _git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def working_tree_name() -> str:
    """`working tree (<HEAD>)`, with a `+` when space/ has changes not committed."""
    changed = "+" if _git("status", "--porcelain", "space") else ""
    return f"working tree ({_git('rev-parse', '--short', 'HEAD')}{changed})"


def print_table(runs: list[dict]) -> None:
    sessions = runs[0]["concurrent"]["sessions"]
    print(
        f"| app | photos | client | 1 session: search ms (median / p95) | {sessions} sessions: p50 / p95 ms | requests/s | "
        f"CPU ms per search (server + client, 1 / {sessions} sessions) | cores idle / stolen, {sessions} sessions | "
        "errors | leaks | wrong top brand |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        single, load = run["single_session"], run["concurrent"]
        cpu = [
            f"{phase['server_cpu_ms_per_search']:.0f} + {phase['client_cpu_ms_per_search']:.0f}"
            for phase in (single, load)
        ]
        print(
            f"| {run['app']} | {run['photos']} | {run['client']} | {single['search_ms_median']:.0f} / {single['search_ms_p95']:.0f} | "
            f"{load['search_ms_p50']:.0f} / {load['search_ms_p95']:.0f} | {load['requests_per_s']:.1f} | "
            f"{cpu[0]} / {cpu[1]} | {_idle_and_stolen(load)} | {load['errors']} | {single['leaks'] + load['leaks']} | "
            f"{single['wrong_top_brand'] + load['wrong_top_brand']} |"
        )


def _idle_and_stolen(load: dict) -> str:
    shares = load["machine_cpu_shares"]  # None off Linux
    return "-" if shares is None else f"{100 * shares['idle']:.0f}% / {100 * shares['steal']:.0f}%"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions")
    parser.add_argument("--searches", type=int, default=4, help="searches per concurrent session")
    parser.add_argument("--single_searches", type=int, default=20, help="searches timed in the single session")
    parser.add_argument("--brands", type=int, default=2, help="brands each session registers")
    parser.add_argument("--shots", type=int, default=2, help="shots per brand")
    parser.add_argument(
        "--localizer", default=str(LOCALIZER.relative_to(REPO)), help="a saved localiser, or 'none' (window search)"
    )
    parser.add_argument(
        "--photos",
        nargs="+",
        choices=["distinct", "repeated"],
        default=["distinct", "repeated"],
        help="distinct: a photo of its own for every search; repeated: every session searches the same few photos",
    )
    parser.add_argument(
        "--client",
        nargs="+",
        choices=["browser", "gradio_client"],
        default=["browser"],
        help="browser: searches make a browser's requests, answers read from the event stream as they come; "
        "gradio_client: through gradio_client, which looks for the answer every 50 ms",
    )
    parser.add_argument("--compare_with", default=None, help="a git revision whose space/ is measured too")
    parser.add_argument("--rounds", type=int, default=1, help="times each app is measured (alternately)")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/space_load.json")
    parser.add_argument("--_serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--app_dir", default=str(REPO), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._serve:
        serve(args)
        return {}

    import torch

    runs, load_before = [], os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="space-load-") as scratch, contextlib.ExitStack() as stack:
        scratch = Path(scratch)
        shots = write_shots(scratch, args.brands, args.shots)
        apps = [(working_tree_name(), REPO)]
        if args.compare_with:
            revision = _git("rev-parse", "--short", args.compare_with)
            apps.insert(0, (revision, stack.enter_context(app_of_revision(revision, scratch))))
        for _round in range(args.rounds):
            for name, app_dir in apps:
                with served_app(app_dir, args.localizer, scratch) as (url, server_pid):
                    for photos in args.photos:
                        for client in args.client:
                            scene_dir = Path(tempfile.mkdtemp(dir=scratch))  # fresh photos for each run
                            figures = measure(url, server_pid, args, shots, scene_dir, photos, client, len(runs))
                            runs.append({"app": name, "photos": photos, "client": client, **figures})
                            print_table(runs[-1:])
    print()
    print_table(runs)
    payload = {
        "settings": {
            key: getattr(args, key)
            for key in (
                "sessions",
                "searches",
                "single_searches",
                "brands",
                "shots",
                "photos",
                "client",
                "localizer",
                "compare_with",
            )
        },
        "runs": runs,
        # The machine's 1-minute load average when the run began and ended: how much else was running.
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "note": (
            f"{os.cpu_count()} cores (torch CPU capability {torch.backends.cpu.get_cpu_capability()}) shared by the "
            "server, the clients and whatever else runs on the machine"
        ),
    }
    write_result("space_load", payload, args.output)
    return payload


if __name__ == "__main__":
    main()
