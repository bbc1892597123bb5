#!/usr/bin/env python
"""What DDP's search for unused parameters costs (issue 20): `train.py` turns `find_unused_parameters` on when a run
freezes backbone stages, so that stages frozen or unfrozen after DDP wraps the model stay correct and in sync.

    python benchmarks/ddp_freezing.py                          # 2 CPU processes, resnet-small at 96 px
    python benchmarks/ddp_freezing.py --backbone resnet50 --image_size 224 --batch_size 64   # e.g. on GPUs

Launches itself with `torch.distributed.run`; each process times training steps (forward, backward, AdamW) of the
same model wrapped in DDP with `find_unused_parameters` off and on, in alternating rounds (so that drift in the
machine's speed hits both), every parameter trainable. Reports the median milliseconds per step of each and their
ratio. Writes `benchmarks/results/ddp_freezing.json`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--backbone", default="resnet-small")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=32, help="images per process and step")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of each setting")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round (after 2 warm-up steps)")
    parser.add_argument("--output", default=None)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> None:
    """One process of the launched job."""
    import torch
    import torch.distributed as dist
    from _results import write_result
    from torch.nn.parallel import DistributedDataParallel

    from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    torch.manual_seed(0)
    model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone=args.backbone, image_size=args.image_size)).to(device)
    pixels = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for find_unused in (False, True):
            wrapped = DistributedDataParallel(model, find_unused_parameters=find_unused)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            for step in range(2 + args.steps):
                if step == 2:
                    if cuda:
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                wrapped(pixels).embeddings.sum().backward()
                optimizer.step()
                optimizer.zero_grad()
            if cuda:
                torch.cuda.synchronize()
            times[find_unused].append((time.perf_counter() - start) / args.steps * 1000)
    if dist.get_rank() == 0:
        off, on = statistics.median(times[False]), statistics.median(times[True])
        result = write_result(
            "ddp_freezing",
            {
                "settings": {**vars(args), "device": device.type, "world_size": dist.get_world_size()},
                "ms_per_step": {
                    "find_unused_parameters=False": round(off, 1),
                    "find_unused_parameters=True": round(on, 1),
                },
                "ms_per_step_rounds": {
                    str(key): [round(value, 1) for value in values] for key, values in times.items()
                },
                "overhead_ratio": round(on / off, 3),
            },
            args.output,
        )
        print(result)
    dist.destroy_process_group()


def main(argv=None) -> None:
    args = parse_args(argv)
    if "LOCAL_RANK" in os.environ:
        measure(args)
        return
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(args.processes),
        __file__,
        *(argv if argv is not None else sys.argv[1:]),
    ]
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


if __name__ == "__main__":
    main()
