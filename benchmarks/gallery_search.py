#!/usr/bin/env python
"""Gallery search at a million brands (issues 8 and 22): exact search against `LogoGallery`'s approximate HNSW index.

    python benchmarks/gallery_search.py                                  # 1,000,000 brands × 128, 1,000 queries
    python benchmarks/gallery_search.py --num_vectors 100000 --num_queries 200 --ef_search 32 64   # a smoke run
    python benchmarks/gallery_search.py --distribution isotropic --ivf_nlist 4000   # the earlier, harder data; IVF

The gallery holds one prototype per brand and each query is a new shot of one of its brands. By default both are
drawn like the shipped checkpoint's embeddings (`--distribution embedding`): the unit prototypes of LogoDet-3K-style
brands (`data/synthetic-logos`, 247 training brands, 3,767 crops) lie in a narrow cone (mean vector of norm 0.82,
mean pairwise cosine 0.67) with a steep covariance spectrum (participation ratio 12.7, 97% of the variance in 32
directions), and a shot is at cosine 0.92 of its brand's prototype. Prototypes are Gaussian with that mean and a
spectrum fitted to the measured one (`a·exp(-i/τ) + floor`, see `EMBEDDING_MOMENTS`), then normalised; a query adds
within-brand noise with the measured within-brand spectrum along the same directions (85% of the checkpoint's
within-brand variance lies in the 32 main between-brand directions; 25% would by chance). The fit's floor gives the
tail more variance than measured, and a million brands crowd this space (a query's own brand is the exact top-1 for
about two thirds of the queries: the result's `own_brand_is_exact_top1`), so the data are, if anything, harder than real
embeddings. Uniform noise (`--distribution isotropic`: 50,000 isotropic clusters, the earlier run's data) has no
structure for an index to use and is not what a trained embedder produces.

Measured, in one run: the exact top-10 of every query (faiss `IndexFlatIP`, the ground truth); the latency of one
query alone by exact search at growing gallery sizes (which sets `HNSW_MIN_BRANDS`); the gallery's own
`"faiss-hnsw"` index, built once at the full size through `LogoGallery.add_brands` and its first search (wall and CPU
seconds, resident memory added), then searched at each `--ef_search` with recall@10 against the exact top-10, one
query at a time on 1 and on 2 threads (the index alone, and `LogoGallery.search` end to end) and in batches; and the
same after `--remove_fraction` of the brands are removed (tombstones filtered out, no rebuild). Prints tables and
writes `benchmarks/results/gallery_search.json`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from _results import write_result

from modeling_logo import LogoGallery
from modeling_logo.few_shot import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, HNSW_MIN_BRANDS, _HnswIndex


# The shipped checkpoint's embeddings of data/synthetic-logos (its training brands), as fitted for this benchmark:
# total variance, norm of the mean, and the spectrum a·exp(-i/τ) + floor (i = 1..128) of the unit prototypes, and of
# the shots around their brand's prototype.
EMBEDDING_MOMENTS = {
    "prototypes": {"variance": 0.326, "mean_norm": 0.82, "a": 0.182, "tau": 5.61, "floor": 5.3e-4},
    "shots_around_prototype": {"variance": 0.176, "a": 0.0757, "tau": 13.0, "floor": 3.9e-4},
}
EXACT_SIZES = (10_000, 20_000, 30_000, 100_000, 300_000, 1_000_000)
GOAL_MS = 1.0


def _standard_deviations(moments: dict, dim: int) -> np.ndarray:
    spectrum = moments["a"] * np.exp(-np.arange(1, dim + 1) / moments["tau"]) + moments["floor"]
    return np.sqrt(moments["variance"] * spectrum / spectrum.sum()).astype(np.float32)


def _random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def embedding_like(count: int, num_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit prototypes distributed like the checkpoint's brand prototypes, queries that are new shots of some, and the
    brand each query is a shot of."""
    rng = np.random.default_rng(seed)
    prototypes_moments, shots_moments = EMBEDDING_MOMENTS["prototypes"], EMBEDDING_MOMENTS["shots_around_prototype"]
    mean = _random_rotation(dim, rng)[0] * prototypes_moments["mean_norm"]
    directions = _random_rotation(dim, rng)  # shared: a brand's shots vary along the directions brands differ in
    between = _standard_deviations(prototypes_moments, dim)[:, None] * directions
    within = _standard_deviations(shots_moments, dim)[:, None] * directions
    prototypes = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):  # in chunks: the Gaussian draws of 1M × 128 at once would double memory
        size = min(100_000, count - start)
        prototypes[start : start + size] = _normalised(mean + rng.standard_normal((size, dim), np.float32) @ between)
    owners = rng.integers(count, size=num_queries)
    queries = _normalised(prototypes[owners] + rng.standard_normal((num_queries, dim), np.float32) @ within)
    return prototypes, queries.astype(np.float32), owners


def isotropic_clusters(count: int, num_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, None]:
    """The earlier run's data: unit vectors at distance ~0.5 around 50,000 isotropic centres, queries likewise (of no
    particular brand)."""

    def draw(size, rng):
        centres = _normalised(rng.standard_normal((50_000, dim), dtype=np.float32))
        noise = rng.standard_normal((size, dim), dtype=np.float32) * (0.5 / np.sqrt(dim))
        return _normalised(centres[rng.integers(50_000, size=size)] + noise)

    return draw(count, np.random.default_rng(seed)), draw(num_queries, np.random.default_rng(seed)), None


def recall_at_k(found, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def median_ms(function, items, clock=time.perf_counter) -> float:
    """The median time of `function(item)` by `clock` (default: the wall clock), in milliseconds."""
    times = []
    for item in items:
        start = clock()
        function(item)
        times.append(clock() - start)
    return 1000 * float(np.median(times))


def median_cpu_ms(function, items) -> float:
    """The median CPU time of the calling thread in `function(item)`, in milliseconds: on a shared machine, what one
    query costs when it is not waiting for a core (single-threaded searches run in the calling thread)."""
    return median_ms(function, items, clock=time.thread_time)


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def with_threads(threads: int, function, *args):
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        return function(*args)
    finally:
        faiss.omp_set_num_threads(previous)


def one_query_ms(index, queries: np.ndarray, k: int, threads: int, params=None, clock=median_ms) -> float:
    """The median time of a faiss index's search for one query alone, on `threads` threads."""
    return with_threads(threads, clock, lambda query: index.search(query[None], k, params=params), queries)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_vectors", type=int, default=1_000_000, help="brands (one prototype each)")
    parser.add_argument("--num_queries", type=int, default=1_000)
    parser.add_argument("--single_queries", type=int, default=200, help="queries timed one at a time")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distribution", choices=("embedding", "isotropic"), default="embedding")
    parser.add_argument("--ef_search", type=int, nargs="+", default=[48, 64, 96, 128, 192])
    parser.add_argument("--hnsw_m", type=int, default=HNSW_M, help="HNSW links per node (0: skip HNSW)")
    parser.add_argument("--hnsw_ef_construction", type=int, default=HNSW_EF_CONSTRUCTION)
    parser.add_argument("--ivf_nlist", type=int, default=0, help="also measure faiss IVF with this many lists")
    parser.add_argument("--remove_fraction", type=float, default=0.05, help="brands removed to measure tombstones")
    parser.add_argument(
        "--machine_note", default="", help="recorded with the figures, e.g. 'shared: other jobs ran on the same cores'"
    )
    parser.add_argument("--output", default=None, help="default: benchmarks/results/gallery_search.json")
    args = parser.parse_args(argv)

    threads = faiss.omp_get_max_threads()
    capability = torch.backends.cpu.get_cpu_capability()
    print(
        f"{args.num_vectors:,} brands × {args.dim} ({args.distribution}), {args.num_queries:,} queries, top-{args.k}; "
        f"{threads} threads, CPU capability {capability}; load average {os.getloadavg()[0]:.1f}"
        + (f" ({args.machine_note})" if args.machine_note else "")
    )
    generate = embedding_like if args.distribution == "embedding" else isotropic_clusters
    prototypes, queries, owners = generate(args.num_vectors, args.num_queries, args.dim, args.seed)
    single = queries[: args.single_queries]
    result = {
        "num_vectors": args.num_vectors,
        "dim": args.dim,
        "k": args.k,
        "distribution": args.distribution,
        "machine_note": args.machine_note,
        "load_average_before": os.getloadavg(),
        "rows": [],
    }
    rows = result["rows"]

    # Exact search: the ground truth, and one query's latency as the gallery grows.
    flat = faiss.IndexFlatIP(args.dim)
    start = time.perf_counter()
    flat.add(prototypes)
    build = time.perf_counter() - start
    start = time.perf_counter()
    _, exact = flat.search(queries, args.k)
    batch_seconds = time.perf_counter() - start
    if owners is not None:
        result["own_brand_is_exact_top1"] = float(np.mean(exact[:, 0] == owners))
    rows.append(
        {
            "index": "faiss IndexFlatIP (exact)",
            "build_s": build,
            "ms_per_query": 1000 * batch_seconds / args.num_queries,
            "single_query_ms": one_query_ms(flat, single[:50], args.k, 1),
            "single_query_ms_2_threads": one_query_ms(flat, single[:50], args.k, 2),
            "recall": 1.0,
        }
    )
    prototypes_t = torch.from_numpy(prototypes)
    rows.append(
        {
            "index": "torch matmul + topk (exact)",
            "build_s": 0.0,
            "single_query_ms": median_ms(
                lambda q: torch.topk(prototypes_t @ q, args.k), torch.from_numpy(single[:20])
            ),
            "recall": 1.0,
        }
    )
    result["exact_one_query"] = []
    for size in [size for size in EXACT_SIZES if size < args.num_vectors] + [args.num_vectors]:
        part = faiss.IndexFlatIP(args.dim)
        part.add(prototypes[:size])
        result["exact_one_query"].append(
            {
                "brands": size,
                "faiss_ms_1_thread": one_query_ms(part, single[:50], args.k, 1),
                "faiss_ms_2_threads": one_query_ms(part, single[:50], args.k, 2),
            }
        )
        print(result["exact_one_query"][-1])
        del part
    over_goal = [row["brands"] for row in result["exact_one_query"] if row["faiss_ms_1_thread"] > GOAL_MS]
    result["smallest_size_exact_over_1ms"] = over_goal[0] if over_goal else None

    if args.ivf_nlist:
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(args.dim), args.dim, args.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
        sample = prototypes[np.random.default_rng(args.seed).choice(args.num_vectors, 50 * args.ivf_nlist)]
        start = time.perf_counter()
        ivf.train(sample)
        ivf.add(prototypes)
        build = time.perf_counter() - start
        for nprobe in (16, 64, 128):
            ivf.nprobe = nprobe
            start = time.perf_counter()
            _, found = ivf.search(queries, args.k)
            rows.append(
                {
                    "index": f"faiss IVF{args.ivf_nlist},Flat nprobe={nprobe}",
                    "build_s": build,
                    "ms_per_query": 1000 * (time.perf_counter() - start) / args.num_queries,
                    "single_query_ms": one_query_ms(ivf, single, args.k, 1),
                    "recall": recall_at_k(found, exact),
                }
            )
            print(rows[-1])
        del ivf

    if args.hnsw_m:
        measure_hnsw(args, prototypes, queries, exact, flat, result)
    del flat

    print(f"\n| index | build s | ms/query, batch | ms, one query, 1 thread | 2 threads | recall@{args.k} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        batch = f"{row['ms_per_query']:.3f}" if "ms_per_query" in row else "-"
        two = f"{row['single_query_ms_2_threads']:.3f}" if "single_query_ms_2_threads" in row else "-"
        print(
            f"| {row['index']} | {row['build_s']:.1f} | {batch} | {row['single_query_ms']:.3f} | {two} | "
            f"{row['recall']:.4f} |"
        )
    print("\n| brands | exact, one query, 1 thread ms | 2 threads ms |\n| --- | --- | --- |")
    for row in result["exact_one_query"]:
        print(f"| {row['brands']:,} | {row['faiss_ms_1_thread']:.3f} | {row['faiss_ms_2_threads']:.3f} |")
    result["load_average_after"] = os.getloadavg()
    write_result("gallery_search", result, args.output)
    return result


def measure_hnsw(args, prototypes: np.ndarray, queries: np.ndarray, exact: np.ndarray, flat, result: dict) -> None:
    """Build the gallery's `"faiss-hnsw"` index once and search it at each efSearch; then remove brands."""
    names = [f"brand {i}" for i in range(args.num_vectors)]
    gallery = LogoGallery(search_backend="faiss-hnsw")
    gallery._hnsw_index = _HnswIndex(args.hnsw_m, args.hnsw_ef_construction)  # the gallery's, unless asked otherwise
    memory_before = resident_mib()
    start = time.perf_counter()
    gallery.add_brands(dict(zip(names, torch.from_numpy(prototypes))))
    register_seconds = time.perf_counter() - start
    memory_registered = resident_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    gallery.search(queries[0], top_k=1)  # the first search builds the index
    build_seconds, build_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    index = gallery._hnsw_index
    result["hnsw_build"] = {
        "register_brands_s": register_seconds,
        "build_s": build_seconds,
        "build_cpu_s": build_cpu_seconds,
        "gallery_rss_mib": memory_registered - memory_before,
        "index_rss_mib": resident_mib() - memory_registered,
        "auto_chooses_hnsw": args.num_vectors >= HNSW_MIN_BRANDS,
        "m": args.hnsw_m,
        "ef_construction": args.hnsw_ef_construction,
    }
    print(result["hnsw_build"])
    single = queries[: args.single_queries]
    position = {name: i for i, name in enumerate(names)}

    def measure(label: str, truth: np.ndarray) -> None:
        for ef in args.ef_search:
            gallery.hnsw_ef_search = ef
            start = time.perf_counter()
            found = gallery.search(queries, top_k=args.k)
            batch_ms = 1000 * (time.perf_counter() - start) / args.num_queries
            found = [[position[match.brand] for match in row] for row in found]
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            result["rows"].append(
                {
                    "index": f"LogoGallery faiss-hnsw{label}, efSearch={ef}",
                    "ef_search": ef,
                    "build_s": build_seconds,
                    "ms_per_query": batch_ms,
                    "single_query_ms": one_query_ms(index.index, single, args.k, 1, params),
                    "single_query_cpu_ms": one_query_ms(index.index, single, args.k, 1, params, median_cpu_ms),
                    "single_query_ms_2_threads": one_query_ms(index.index, single, args.k, 2, params),
                    "gallery_search_ms": with_threads(1, median_ms, lambda q: gallery.search(q, top_k=args.k), single),
                    "recall": recall_at_k(found, truth),
                    "top1_agrees": float(np.mean([f[0] == t[0] for f, t in zip(found, truth)])),
                }
            )
            print(result["rows"][-1])

    measure("", exact)
    if args.remove_fraction:
        removed = np.random.default_rng(args.seed + 1).choice(
            args.num_vectors, int(args.remove_fraction * args.num_vectors), replace=False
        )
        for i in removed:
            gallery.remove_brand(names[i])
        start = time.perf_counter()
        gallery.search(queries[0], top_k=1)
        result["hnsw_build"]["sync_after_removal_s"] = time.perf_counter() - start
        flat.remove_ids(removed.astype("int64"))  # flat ids shift: map back to the original positions
        kept = np.setdiff1d(np.arange(args.num_vectors), removed)
        _, truth = flat.search(queries, args.k)
        args.ef_search = [HNSW_EF_SEARCH]
        measure(f" after removing {args.remove_fraction:.0%} (tombstones)", kept[truth])
    result["hnsw_min_brands"], result["hnsw_ef_search"] = HNSW_MIN_BRANDS, HNSW_EF_SEARCH


if __name__ == "__main__":
    main()
