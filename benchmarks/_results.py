"""The one result writer of the benchmarks: `write_result(name, payload)` writes `benchmarks/results/<name>.json`
(or the `--output` given) with the facts of the machine it was measured on under `"machine"`."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


RESULTS = Path(__file__).resolve().parent / "results"


def result_path(name: str, output: str | Path | None = None) -> Path:
    """Where the result of benchmark `name` goes: `output` when given, else `benchmarks/results/<name>.json`."""
    return Path(output) if output else RESULTS / f"{name}.json"


def machine_facts() -> dict:
    """The date and what decides the figures: the CPU (torch's vector capability, e.g. AVX2 or AVX512), cores,
    threads and versions. torch is imported here, not at import: some benchmarks keep it out of their parent
    process."""
    import torch

    facts = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        facts["onnxruntime"] = None
    return facts


def write_result(name: str, payload: dict, output: str | Path | None = None) -> dict:
    """Write `payload` and the machine's facts (`"machine"`) as JSON to [`result_path`]; returns what was written."""
    written = {**payload, "machine": machine_facts()}
    path = result_path(name, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(written, indent=2))
    return written
