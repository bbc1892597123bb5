#!/usr/bin/env python
"""Scaling (issue 8, part 6): time and memory of gallery building, search and evaluation as the brands grow.

    python benchmarks/scaling.py                         # 100, 300, 1,000, 3,000 and 10,000 brands
    python benchmarks/scaling.py --brands 100 300 1000

Each size runs in a fresh Python process, on random clustered unit embeddings (128-d, 6 images per brand at a
distance of about 0.5 from the brand's centre) rather than a model's, so that only the gallery and evaluation code
is timed:

- gallery: `LogoGallery()` without a model, `add_brand_embeddings` per brand from 5 shots; `save` and `LogoGallery.load`; the
  first search, which stacks the prototypes (and builds the faiss index from `FAISS_MIN_BRANDS` brands on); then a
  batch of 100 queries (each brand's sixth image) with the default search backend;
- evaluation on an `EmbeddedSplit` of brands × 6 images (and a second, independent one as the honest protocol's
  validation split): the honest protocol (5- and 20-way, 1- and 5-shot, 100 episodes), its all-way row (1-shot,
  10 episodes), the paper protocol (1-shot) and retrieval mAP (`retrieval_protocol`).

Per operation: its time and the memory it added (peak RSS while it ran, `VmHWM` reset just before it, minus the RSS
before it); per size, the process's peak RSS. Build, save, load and search are timed as the median of 3 to 5 runs, as
the machine is noisy. An evaluation is skipped, with the reason, where the sizes before
predict (log-log extrapolation) more than `--max_seconds` or more than `--max_memory_gib` of added memory. Prints
tables and the log-log slope of each operation between the two largest sizes it ran at (1: linear, 2: quadratic),
writes `benchmarks/results/scaling.json` and the log-log plot `benchmarks/results/scaling.png`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))  # memory.py, beside this file, wherever this runs from
from _results import result_path, write_result
from memory import peak_rss_mib, reset_peak_rss, rss_mib, run_child


#: (key, label) of every operation, in the order they run; EVALUATIONS may be skipped when they would explode.
OPERATIONS = (
    ("build", "gallery build (add_brand_embeddings × brands)"),
    ("save", "gallery save"),
    ("load", "gallery load"),
    ("index", "first search (stacks prototypes / faiss index)"),
    ("search", "search, 100 queries"),
    ("honest", "honest protocol (5/20-way, 1/5-shot)"),
    ("honest_all", "honest protocol (all-way, 1-shot)"),
    ("paper", "paper protocol (1-shot)"),
    ("retrieval", "retrieval mAP"),
)
EVALUATIONS = ("honest", "honest_all", "paper", "retrieval")
LABELS = dict(OPERATIONS)
HEADERS = {
    "build": "build",
    "save": "save",
    "load": "load",
    "index": "first search",
    "search": "search",
    "honest": "honest 5/20-way",
    "honest_all": "honest all-way",
    "paper": "paper",
    "retrieval": "retrieval",
}


# ---------------------------------------------------------------------------------------------------------------------
# One size (child)


def clustered_split(brands: int, per_brand: int, dim: int, spread: float, rng):
    """An `EmbeddedSplit` of `brands × per_brand` unit vectors, each about `spread` away from its brand's centre."""
    import numpy as np

    from modeling_logo.evaluation import EmbeddedSplit

    centres = rng.standard_normal((brands, 1, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=-1, keepdims=True)
    vectors = centres + rng.standard_normal((brands, per_brand, dim), dtype=np.float32) * (spread / np.sqrt(dim))
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    return EmbeddedSplit(vectors.reshape(brands * per_brand, dim), np.repeat(np.arange(brands), per_brand))


def build_gallery(shots):
    from modeling_logo import LogoGallery

    gallery = LogoGallery()
    for brand, brand_shots in enumerate(shots):
        gallery.add_brand_embeddings(f"brand-{brand}", brand_shots)
    return gallery


def child(args) -> dict:
    import numpy as np
    import torch

    from modeling_logo import LogoGallery
    from modeling_logo.evaluation import honest_protocol, paper_protocol, retrieval_protocol
    from modeling_logo.few_shot import FAISS_MIN_BRANDS

    brands, per_brand = args.num_brands, args.images_per_brand
    rng = np.random.default_rng(args.seed)
    test = clustered_split(brands, per_brand, args.dim, args.spread, rng)
    validation = clustered_split(brands, per_brand, args.dim, args.spread, rng)
    skip = dict(item.split("=", 1) for item in args.skip)
    operations, peaks = {}, [peak_rss_mib()]

    def measure(key: str, function, repeats: int = 1):
        """Run `function` (`repeats` times: its time is the median) and record its time and added memory."""
        if key in skip:
            operations[key] = {"skipped": skip[key]}
            return None
        can_reset = reset_peak_rss()
        before, times = rss_mib(), []
        for _ in range(repeats):
            start = time.perf_counter()
            value = function()
            times.append(time.perf_counter() - start)
        peak = peak_rss_mib()
        peaks.append(peak)
        operations[key] = {
            "seconds": statistics.median(times),
            "repeats": repeats,
            "rss_before_mib": before,
            "extra_mib": peak - before if can_reset else None,
        }
        return value

    vectors = torch.from_numpy(test.embeddings.reshape(brands, per_brand, args.dim))
    # Cheap operations are repeated (median time): the machine is noisy. The first search happens once, by definition.
    gallery = measure("build", lambda: build_gallery(vectors[:, : args.shots]), repeats=3)
    with tempfile.TemporaryDirectory(prefix="logo-scaling-") as directory:
        measure("save", lambda: gallery.save(directory), repeats=5)
        measure("load", lambda: LogoGallery.load(directory), repeats=5)
    query_brands = rng.choice(brands, min(brands, args.queries), replace=False)
    queries = vectors[query_brands, -1]  # an image of each brand that is not among its shots
    measure("index", lambda: gallery.search(queries[:1], top_k=5))
    matches = measure("search", lambda: gallery.search(queries, top_k=5), repeats=5)
    top1 = float(np.mean([m[0].brand == f"brand-{b}" for m, b in zip(matches, query_brands)]))

    ways = {"ways": (5, 20), "shots": (1, 5), "episodes": args.episodes, "seed": args.seed}
    all_ways = {"ways": ("all",), "shots": (1,), "episodes": args.all_way_episodes, "seed": args.seed}
    measure("honest", lambda: honest_protocol(validation, test, **ways))
    measure("honest_all", lambda: honest_protocol(validation, test, **all_ways))
    measure("paper", lambda: paper_protocol(test, shots=1))
    measure("retrieval", lambda: retrieval_protocol(test))
    return {
        "brands": brands,
        "images": len(test.labels),
        "search_backend": "faiss" if brands >= FAISS_MIN_BRANDS else "torch",
        "search_ms_per_query": 1000 * operations["search"]["seconds"] / len(queries),
        "search_top1": top1,
        "peak_rss_mib": max(peaks),
        "operations": operations,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Planning, tables and plot (parent)


def log_slope(first: tuple[float, float], second: tuple[float, float]) -> float:
    """The exponent b of y ∝ x^b through two points (x, y)."""
    return math.log(max(second[1], 1e-9) / max(first[1], 1e-9)) / math.log(second[0] / first[0])


def measured(points: list[dict], key: str, field: str = "seconds") -> list[tuple[int, float]]:
    values = [(p["brands"], p.get("operations", {}).get(key, {}).get(field)) for p in points]
    return [(brands, value) for brands, value in values if value is not None]


def skip_reason(points: list[dict], key: str, brands: int, args) -> str | None:
    """Why an evaluation should not run at `brands`: what the sizes before predict exceeds a cap (or it was skipped
    at a smaller size already). Extrapolates from the two largest sizes measured, with a slope between 1 and 3 (2 when
    there is one size)."""
    if any("skipped" in p.get("operations", {}).get(key, {}) for p in points):
        return "skipped at a smaller size"
    reasons = []
    for field, cap, unit, scale in (
        ("seconds", args.max_seconds, "s", 1),
        ("extra_mib", args.max_memory_gib, "GiB", 1024),
    ):
        history = measured(points, key, field)
        if not history:
            continue
        slope = min(3.0, max(1.0, log_slope(history[-2], history[-1]))) if len(history) > 1 else 2.0
        prediction = max(history[-1][1], 1e-3) * (brands / history[-1][0]) ** slope / scale
        if prediction > cap:
            what = "time" if field == "seconds" else "added memory"
            reasons.append(
                f"predicted {what} {prediction:,.1f} {unit} (log-log slope {slope:.1f} from "
                f"{history[-1][0]:,} brands) > cap {cap:g} {unit}"
            )
    return "; ".join(reasons) or None


def available_memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return 8.0


def cell(operation: dict | None, field: str, fmt: str, notes: list[str] | None = None, label: str = "") -> str:
    """A table cell: the value, or "skipped" (with a numbered note giving the reason, when `notes` is given)."""
    if not operation:
        return "error"
    if "skipped" in operation:
        if notes is None:
            return "skipped"
        notes.append(f"{label}: {operation['skipped']}")
        return f"skipped [{len(notes)}]"
    return format(operation[field], fmt) if operation.get(field) is not None else "n/a"


def print_tables(points: list[dict]) -> None:
    notes: list[str] = []
    header = " | ".join(f"{HEADERS[key]} s" if key != "search" else "search ms/query" for key, _ in OPERATIONS)
    print("\nSeconds per operation (search: ms per query, the queries in one batch):\n")
    print(f"| brands | images | {header} | peak RSS MiB |")
    print("| --- " * (len(OPERATIONS) + 3) + "|")
    for point in points:
        if "error" in point:
            print(f"| {point['brands']:,} | | {point['error'][-200:]!r} |")
            continue
        ops, cells = point["operations"], []
        for key, _ in OPERATIONS:
            label = f"{LABELS[key]} at {point['brands']:,}"
            if key == "search":
                cells.append(f"{point['search_ms_per_query']:.3f} ({point['search_backend']})")
            else:
                cells.append(cell(ops.get(key), "seconds", ".3f", notes, label))
        print(f"| {point['brands']:,} | {point['images']:,} | {' | '.join(cells)} | {point['peak_rss_mib']:.0f} |")
    print("\nMemory added by each operation (peak RSS while it ran minus the RSS before it), MiB:\n")
    print(f"| brands | {' | '.join(HEADERS[key] for key, _ in OPERATIONS)} |")
    print("| --- " * (len(OPERATIONS) + 1) + "|")
    for point in points:
        if "error" not in point:
            cells = [cell(point["operations"].get(key), "extra_mib", ".0f") for key, _ in OPERATIONS]
            print(f"| {point['brands']:,} | {' | '.join(cells)} |")
    for number, note in enumerate(notes, 1):
        print(f"\n[{number}] {note}", end="")
    print()


def slopes(points: list[dict]) -> list[dict]:
    """Per operation, the log-log slope of its time between the two largest sizes it ran at."""
    rows = []
    for key, label in OPERATIONS:
        history = measured(points, key)
        if len(history) >= 2:
            (n1, t1), (n2, t2) = history[-2], history[-1]
            rows.append(
                {
                    "operation": key,
                    "label": label,
                    "from_brands": n1,
                    "to_brands": n2,
                    "from_seconds": t1,
                    "to_seconds": t2,
                    "slope": log_slope(history[-2], history[-1]),
                }
            )
    return rows


def print_slopes(rows: list[dict]) -> None:
    print("\n| operation | brands | seconds | log-log slope | reads as |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        slope = row["slope"]
        reading = (
            "sub-linear"
            if slope < 0.8
            else "linear"
            if slope < 1.3
            else "n log n to quadratic"
            if slope < 1.8
            else "quadratic"
            if slope < 2.4
            else "super-quadratic"
        )
        if min(row["from_seconds"], row["to_seconds"]) < 0.01:
            reading += " (under 10 ms: noisy)"
        print(
            f"| {row['label']} | {row['from_brands']:,} → {row['to_brands']:,} | {row['from_seconds']:.3g} → "
            f"{row['to_seconds']:.3g} | {slope:.2f} | {reading} |"
        )


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, memory) = plt.subplots(1, 2, figsize=(13, 6.5))
    for key, label in OPERATIONS:
        for axis, field in ((times, "seconds"), (memory, "extra_mib")):
            history = [(n, max(v, 1e-3 if field == "extra_mib" else 1e-6)) for n, v in measured(points, key, field)]
            if history:
                axis.loglog(*zip(*history), marker="o", label=label, color=f"C{list(LABELS).index(key)}")
    peaks = [(p["brands"], p["peak_rss_mib"]) for p in points if "peak_rss_mib" in p]
    if peaks:
        memory.loglog(*zip(*peaks), marker="s", color="black", linewidth=2.5, label="process peak RSS")
    sizes = sorted({p["brands"] for p in points})
    if len(sizes) > 1:  # guides: what linear and quadratic growth look like
        for exponent, style in ((1, ":"), (2, "--")):
            ys = [(n / sizes[0]) ** exponent * 1e-3 for n in sizes]
            times.loglog(sizes, ys, style, color="grey", label=f"∝ brands{'²' if exponent == 2 else ''} (guide)")
    times.set(xlabel="brands", ylabel="seconds", title="Time per operation")
    memory.set(xlabel="brands", ylabel="MiB", title="Memory added per operation; process peak RSS (black)")
    for axis in (times, memory):
        axis.grid(True, which="both", alpha=0.3)
        axis.set_xticks(sizes, [f"{n:,}" for n in sizes])
        axis.minorticks_off()
    handles = {}
    for axis in (times, memory):
        handles.update(zip(*reversed(axis.get_legend_handles_labels())))
    figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.suptitle(
        f"Scaling with the number of brands ({points[0].get('images', 0) // points[0]['brands']} images "
        "per brand, 128-d random clustered embeddings)"
    )
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brands", type=int, nargs="+", default=[100, 300, 1_000, 3_000, 10_000])
    parser.add_argument("--images_per_brand", type=int, default=6)
    parser.add_argument("--shots", type=int, default=5, help="shots per brand in the gallery")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--spread", type=float, default=0.5, help="distance of images from their brand's centre")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=100, help="of the honest protocol's 5/20-way rows")
    parser.add_argument("--all_way_episodes", type=int, default=10)
    parser.add_argument("--max_seconds", type=float, default=60.0, help="skip an evaluation predicted to take longer")
    parser.add_argument(
        "--max_memory_gib",
        type=float,
        default=None,
        help="skip an evaluation predicted to add more memory; default: 6 or 40%% of what is free",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/scaling.json")
    parser.add_argument("--plot", default=None, help="default: scaling.png beside --output")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_result", help=argparse.SUPPRESS)
    parser.add_argument("--num_brands", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip", action="append", default=[], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args._child:
        result = child(args)
        Path(args._result).write_text(json.dumps(result))
        return result
    if args.images_per_brand <= args.shots:
        raise ValueError("--images_per_brand must exceed --shots: each brand's last image is its search query.")
    if args.max_memory_gib is None:
        args.max_memory_gib = min(6.0, round(0.4 * available_memory_gib(), 1))

    start, points = time.perf_counter(), []
    for brands in sorted(set(args.brands)):
        arguments = ["--_child", "--num_brands", str(brands)]
        for name in ("images_per_brand", "shots", "dim", "spread", "queries", "episodes", "all_way_episodes", "seed"):
            arguments += [f"--{name}", str(getattr(args, name))]
        for key in EVALUATIONS:
            if reason := skip_reason(points, key, brands, args):
                arguments += ["--skip", f"{key}={reason}"]
        try:
            point = run_child(__file__, arguments)
        except RuntimeError as error:  # e.g. killed for memory: keep the other sizes
            point = {"brands": brands, "error": str(error)}
        points.append(point)
        done = {k: round(v["seconds"], 2) for k, v in point.get("operations", {}).items() if "seconds" in v}
        print(f"{brands:,} brands ({time.perf_counter() - start:.0f} s): {done or point.get('error')}", flush=True)

    print_tables(points)
    fitted = slopes(points)
    print_slopes(fitted)
    output = result_path("scaling", args.output)
    plot_path = Path(args.plot) if args.plot else output.with_suffix(".png")
    plot(points, plot_path)
    print(f"\n{time.perf_counter() - start:.0f} s in all; plot: {plot_path}")
    result = {
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("num_brands", "skip")},
        "points": points,
        "slopes": fitted,
    }
    write_result("scaling", result, output)
    return result


if __name__ == "__main__":
    main()
