#!/usr/bin/env python
"""Gallery search at scale (issue 8, part 4): exact matrix product vs faiss flat, IVF and HNSW indexes.

    python benchmarks/gallery_search.py                    # 1,000,000 × 128 gallery vectors, 1,000 queries
    python benchmarks/gallery_search.py --num_vectors 200000

Vectors are clustered like real galleries (shots of one brand near its centre): unit vectors around 50,000 brand
centres, each at a distance of about 0.5 from its centre. Recall@10 of an approximate index is the share of the exact top-10 it returns. Prints a table and writes
`benchmarks/results/gallery_search.json`.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
import torch
from _results import write_result


def clustered_unit_vectors(count: int, dim: int, centres: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    centre = rng.standard_normal((centres, dim), dtype=np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    noise = rng.standard_normal((count, dim), dtype=np.float32) * (spread / np.sqrt(dim))  # |noise| ≈ spread
    vectors = centre[rng.integers(centres, size=count)] + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_vectors", type=int, default=1_000_000)
    parser.add_argument("--num_queries", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single_queries", type=int, default=100, help="queries timed one at a time")
    parser.add_argument("--hnsw_m", type=int, default=16, help="HNSW links per node (0: skip HNSW)")
    parser.add_argument("--hnsw_ef_construction", type=int, default=40)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/gallery_search.json")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    gallery = clustered_unit_vectors(args.num_vectors, args.dim, 50_000, 0.5, rng)
    queries = clustered_unit_vectors(args.num_queries, args.dim, 50_000, 0.5, np.random.default_rng(args.seed))
    print(
        f"{args.num_vectors:,} gallery vectors × {args.dim}, {args.num_queries:,} queries, top-{args.k}, "
        f"{faiss.omp_get_max_threads()} threads"
    )

    rows = []
    gallery_t, queries_t = torch.from_numpy(gallery), torch.from_numpy(queries)

    def exact_search():  # 64 queries at a time: 1,000 × 1M scores would take 4 GB
        return torch.cat([torch.topk(chunk @ gallery_t.T, args.k, dim=1).indices for chunk in queries_t.split(64)])

    seconds, exact = timed(exact_search)
    exact = exact.numpy()
    single = [
        timed(lambda q: torch.topk(gallery_t @ q, args.k), query)[0] for query in queries_t[: args.single_queries]
    ]
    rows.append(
        {
            "index": "torch matmul + topk (exact)",
            "build_s": 0.0,
            "ms_per_query": 1000 * seconds / args.num_queries,
            "single_query_ms": 1000 * float(np.median(single)),
            "recall": 1.0,
        }
    )

    def add(name, index, build_seconds, **search_params):
        for key, value in search_params.items():
            faiss.ParameterSpace().set_index_parameter(index, key, value)
        seconds, (_, found) = timed(index.search, queries, args.k)
        # A demo answers one query at a time: latency without batching.
        single = [timed(index.search, query[None], args.k)[0] for query in queries[: args.single_queries]]
        rows.append(
            {
                "index": name,
                "build_s": build_seconds,
                "ms_per_query": 1000 * seconds / args.num_queries,
                "single_query_ms": 1000 * float(np.median(single)),
                "recall": recall_at_k(found, exact),
            }
        )
        print(rows[-1])

    flat = faiss.IndexFlatIP(args.dim)
    build, _ = timed(flat.add, gallery)
    add("faiss IndexFlatIP (exact; LogoGallery's)", flat, build)

    nlist = int(4 * np.sqrt(args.num_vectors))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(args.dim), args.dim, nlist, faiss.METRIC_INNER_PRODUCT)
    training_sample = gallery[rng.choice(len(gallery), min(len(gallery), 50 * nlist), replace=False)]
    build, _ = timed(lambda: (ivf.train(training_sample), ivf.add(gallery)))
    for nprobe in (16, 64, 128, 256):
        add(f"faiss IVF{nlist},Flat nprobe={nprobe}", ivf, build, nprobe=nprobe)
    ivf.reset()  # free its vectors before HNSW's build

    if args.hnsw_m:
        hnsw = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = args.hnsw_ef_construction
        build, _ = timed(hnsw.add, gallery)
        for ef in (32, 64, 128, 256):
            add(
                f"faiss HNSW{args.hnsw_m} (efConstruction {args.hnsw_ef_construction}) efSearch={ef}",
                hnsw,
                build,
                efSearch=ef,
            )

    print(
        f"\n| index | build s | ms/query (batch of {args.num_queries}) | ms, one query alone | recall@{args.k} of exact |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['index']} | {row['build_s']:.1f} | {row['ms_per_query']:.3f} | {row['single_query_ms']:.2f} | "
            f"{row['recall']:.3f} |"
        )
    result = {"num_vectors": args.num_vectors, "dim": args.dim, "k": args.k, "rows": rows}
    write_result("gallery_search", result, args.output)
    return result


if __name__ == "__main__":
    main()
