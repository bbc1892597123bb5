"""The benchmarks' one result writer: `benchmarks/_results.write_result`."""

import importlib.util
import json
from pathlib import Path

import torch


def load_results_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "_results.py"
    spec = importlib.util.spec_from_file_location("benchmark_results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_result_adds_the_machine_and_writes_name_json(tmp_path, monkeypatch):
    results = load_results_module()
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results")
    written = results.write_result("gallery_search", {"rows": [{"index": "exact", "recall": 1.0}]})
    saved = json.loads((tmp_path / "results" / "gallery_search.json").read_text())
    assert saved == written and saved["rows"] == [{"index": "exact", "recall": 1.0}]
    machine = saved["machine"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["torch"] == torch.__version__ and machine["cpu_count"] >= 1 and len(machine["date"]) == 10
    # an explicit --output wins over the default path
    results.write_result("gallery_search", {"rows": []}, tmp_path / "elsewhere" / "quick.json")
    assert json.loads((tmp_path / "elsewhere" / "quick.json").read_text())["rows"] == []
    assert results.result_path("scaling") == tmp_path / "results" / "scaling.json"


def test_run_all_checks_the_hnsw_default_against_the_committed_measurement():
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("run_all", benchmarks / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)  # it puts benchmarks/ on sys.path for its own imports
    from modeling_logo.few_shot import HNSW_EF_SEARCH

    rows = json.loads((benchmarks / "results" / "gallery_search.json").read_text())["rows"]
    [(setting, default, fastest, agree)] = run_all.hnsw_check(rows)
    assert default == f"efSearch {HNSW_EF_SEARCH}" and agree, fastest  # 128: the fastest at recall@10 >= 0.99
    slower = [dict(row, single_query_ms=0.1) if row.get("ef_search") == 192 else row for row in rows]
    assert not run_all.hnsw_check(slower)[0][3]  # a faster good setting would show as a disagreement
    assert run_all.hnsw_check([row for row in rows if not row.get("ef_search")]) == []  # HNSW not run


def test_run_all_writes_into_results_dir_and_checks_the_defaults_there(tmp_path, monkeypatch):
    """`--results_dir`: another kind of machine's results go to a folder of their own, and the defaults are checked
    against the results there, not against benchmarks/results/ (the committed figures stay as they were)."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("run_all", benchmarks / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    committed = {path: path.stat().st_mtime_ns for path in (benchmarks / "results").glob("*.json")}
    # The smallest gallery search there is, through run_all's own entry (its quick arguments, made smaller).
    name, (module, full, _quick) = "gallery_search", run_all.BENCHMARKS["gallery_search"]
    small = ["--num_vectors", "2000", "--num_queries", "20", "--single_queries", "5", "--hnsw_m", "0"]
    monkeypatch.setitem(run_all.BENCHMARKS, name, (module, full, small))
    results = run_all.main(["--quick", "--only", name, "--results_dir", str(tmp_path / "other-machine")])

    written = json.loads((tmp_path / "other-machine" / "gallery_search_quick.json").read_text())
    assert written["rows"] == results[name]["rows"] and written["machine"]["cpu_count"] >= 1
    summary = json.loads((tmp_path / "other-machine" / "run_all_quick.json").read_text())
    exact = [check for check in summary["defaults"] if check["setting"].startswith("exact search")]
    assert exact and exact[0]["agree"], summary["defaults"]  # checked on this run's rows
    assert {path: path.stat().st_mtime_ns for path in (benchmarks / "results").glob("*.json")} == committed
