#!/usr/bin/env python
"""Every performance benchmark in one run: prints the tables, writes JSON and plots to `benchmarks/results/`, and
checks that the package's defaults are the fastest correct choices measured.

    python benchmarks/run_all.py            # every benchmark at full size
    python benchmarks/run_all.py --quick    # small sizes: a smoke run, not figures to quote
    python benchmarks/run_all.py --only embedding_throughput gallery_search
    python benchmarks/run_all.py --results_dir benchmarks/results/avx512-bf16   # another kind of machine's results

Run it on an otherwise idle machine: every figure is a ratio measured side by side, but a busy CPU still skews them.
The figures, and how long a run takes, are in `benchmarks/README.md`; each JSON result records the machine's facts
(`_results.write_result`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import data_pipeline
import embedding_throughput
import frozen_phase
import gallery_search
import memory
import scaling
from _results import RESULTS, write_result


# name -> (module, arguments of the full run, arguments of the quick run)
BENCHMARKS = {
    "embedding_throughput": (embedding_throughput, [], ["--batch_sizes", "1", "16", "--min_seconds", "1"]),
    "data_pipeline": (
        data_pipeline,
        [],
        ["--brands", "12", "--images_per_brand", "4", "--brands_per_batch", "4", "--steps", "2", "--fed_rounds", "1"],
    ),
    "frozen_phase": (frozen_phase, ["--epochs", "3"], ["--epochs", "2", "--views", "2"]),
    "gallery_search": (
        gallery_search,
        [],  # HNSW included: about 10 minutes to build over a million brands on 2 cores
        ["--num_vectors", "100000", "--num_queries", "200", "--hnsw_m", "0"],
    ),
    "memory": (memory, [], None),
    "scaling": (scaling, [], ["--brands", "100", "1000"]),
}


def plot_throughput(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch_sizes = sorted({row["batch_size"] for row in result["rows"]})
    names = list(dict.fromkeys(row["path"] for row in result["rows"]))
    figure, axis = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(names)
    for offset, name in enumerate(names):
        rates = {row["batch_size"]: row["images_per_second"] for row in result["rows"] if row["path"] == name}
        axis.bar(
            [i + offset * width for i in range(len(batch_sizes))], [rates[b] for b in batch_sizes], width, label=name
        )
    axis.axhline(result["limit_images_per_second"], color="black", linestyle="--", label="GEMM limit")
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(batch_sizes))], [f"batch {b}" for b in batch_sizes])
    axis.set(ylabel="images/s", title=f"{result['backbone']} at {result['image_size']} px")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def check_defaults(results: dict) -> list[tuple[str, str, str, bool]]:
    """(setting, the default, what was measured fastest, whether they agree) for each measured default."""
    checks = []
    if "embedding_throughput" in results:
        from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel
        from modeling_logo.few_shot import embedding_function
        from modeling_logo.onnx import OnnxLogoEmbedder

        rows = results["embedding_throughput"]["rows"]
        config = LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64)
        default = embedding_function(LogoEmbeddingModel(config).eval(), "auto")
        default_name = "onnxruntime fp32" if isinstance(default, OnnxLogoEmbedder) else "channels_last fp32"
        for batch_size in sorted({row["batch_size"] for row in rows}):
            correct = [row for row in rows if row["batch_size"] == batch_size and row["max_abs_error"] <= 1e-4]
            fastest = max(correct, key=lambda row: row["images_per_second"])["path"]
            checks.append((f"inference runtime, batch {batch_size}", default_name, fastest, fastest == default_name))
    if "data_pipeline" in results:
        rows = results["data_pipeline"]["rows"]
        fastest = max(rows, key=lambda row: row["fed_training_images_per_second"])
        default = next(r for r in rows if r["crops"] != "full size" and r["workers"] == 2)  # train.py's defaults
        agree = default["fed_training_images_per_second"] >= 0.95 * fastest["fed_training_images_per_second"]
        checks.append(
            (
                "training crops and DataLoader workers",
                f"{default['crops']}, 2 workers",
                f"{fastest['crops']}, {fastest['workers']} workers",
                agree,
            )
        )
    if "gallery_search" in results:
        rows = results["gallery_search"]["rows"]
        exact = [row for row in rows if row["recall"] == 1.0]
        fastest = min(exact, key=lambda row: row["single_query_ms"])["index"]
        checks.append(
            (
                "exact search of a large gallery, one query",
                "faiss IndexFlatIP",
                fastest,
                fastest.startswith("faiss IndexFlatIP"),
            )
        )
        checks += hnsw_check(rows)
    return checks


def hnsw_check(rows: list[dict]) -> list[tuple[str, str, str, bool]]:
    """Whether LogoGallery's HNSW efSearch is the fastest measured one that keeps recall@10 at 0.99 (none: not run)."""
    from modeling_logo.few_shot import HNSW_EF_SEARCH

    measured = [row for row in rows if row.get("ef_search") and "tombstones" not in row["index"]]
    good = [row for row in measured if row["recall"] >= 0.99]
    if not good:
        return []
    fastest = min(good, key=lambda row: row["single_query_ms"])
    return [
        (
            "gallery search above HNSW_MIN_BRANDS: HNSW efSearch",
            f"efSearch {HNSW_EF_SEARCH}",
            f"efSearch {fastest['ef_search']} ({fastest['single_query_ms']:.2f} ms, recall@10 {fastest['recall']:.3f})",
            fastest["ef_search"] == HNSW_EF_SEARCH,
        )
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that everything runs")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    parser.add_argument(
        "--results_dir",
        type=Path,
        default=RESULTS,
        help="where the JSON results and plots go, and the earlier results the defaults are checked against "
        "(default: benchmarks/results; a folder of its own for another kind of machine)",
    )
    args = parser.parse_args(argv)

    results, seconds, failed = {}, {}, []
    for name in [name for name in BENCHMARKS if name in args.only]:
        module, full, quick = BENCHMARKS[name]
        if args.quick and quick is None:
            print(f"\n=== {name}: skipped in --quick")
            continue
        print(f"\n=== {name} ({module.__file__})")
        start = time.perf_counter()
        output = ["--output", str(args.results_dir / f"{name}{'_quick' if args.quick else ''}.json")]
        try:
            results[name] = module.main([*(quick if args.quick else full), *output])
        except Exception:  # one broken benchmark must not lose the others' results
            traceback.print_exc()
            failed.append(name)
        seconds[name] = time.perf_counter() - start
    # The defaults are checked against every result at hand: this run's, else an earlier full run's.
    for name in BENCHMARKS:
        if name not in results and not args.quick and (args.results_dir / f"{name}.json").is_file():
            results[name] = json.loads((args.results_dir / f"{name}.json").read_text())
    if "embedding_throughput" in results:
        plot_throughput(results["embedding_throughput"], args.results_dir / "embedding_throughput.png")

    print("\n=== Defaults\n\n| setting | default | fastest correct, measured | agree |\n| --- | --- | --- | --- |")
    checks = check_defaults(results)
    for setting, default, fastest, agree in checks:
        print(f"| {setting} | {default} | {fastest} | {'yes' if agree else '**no**'} |")
    print("\n" + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()))
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    summary = {
        "seconds": seconds,
        "defaults": [dict(zip(("setting", "default", "fastest", "agree"), c)) for c in checks],
    }
    write_result("run_all", summary, args.results_dir / f"run_all{'_quick' if args.quick else ''}.json")
    if failed:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
