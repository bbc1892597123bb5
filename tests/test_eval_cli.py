"""`logo-eval` end to end on a small LogoDet-3K-layout tree: tables printed, report written."""

import json

from modeling_logo import eval_cli

from .test_logodet3k import write_tree


def parse_markdown_table(text: str, title: str) -> list[list[str]]:
    """The rows of the first Markdown table after `title`."""
    lines = text[text.index(title) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert rows[1][0].startswith("---")
    return [rows[0], *rows[2:]]


def test_logo_eval_compares_a_model_with_baselines_and_writes_the_report(tmp_path, saved_model_dir, capsys):
    data_dir = write_tree(tmp_path / "data")
    results = eval_cli.run(
        eval_cli.parse_args([
            "--model", str(saved_model_dir), "--data_dir", str(data_dir), "--cache_dir", str(tmp_path / "cache"), "--split_scheme", "brands",
            "--shots", "1", "--ways", "2", "--episodes", "20", "--train_sample", "10",
            "--baselines", "untrained", "imagenet", "histogram", "--report", str(tmp_path / "report"),
        ])
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "Skipping the ImageNet baseline" in printed  # offline: said, not crashed
    assert list(results) == [str(saved_model_dir), "untrained (random init)", "colour histogram"]

    report = (tmp_path / "report" / "report.md").read_text()
    paper = parse_markdown_table(report, "## The paper's protocol")
    assert paper[0][:3] == ["model", "1-shot accuracy", "1-shot precision"]
    assert [row[0] for row in paper[1:4]] == list(results)
    assert all(0.0 <= float(cell) <= 1.0 for cell in paper[1][1:7])
    assert paper[4][0] == "paper: triplet loss"
    honest = parse_markdown_table(report, "## The honest protocol")
    assert {row[0] for row in honest[1:]} == set(results) and "±" in honest[1][4]
    retrieval = parse_markdown_table(report, "## Retrieval")
    assert retrieval[0][1] == "train-brand mAP" and len(retrieval) == 4
    for figure in ("pr_curves.png", "distances.png", "tsne.png", "retrieval_grid.png"):
        assert (tmp_path / "report" / figure).stat().st_size > 1000
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert saved["colour histogram"]["paper"][0]["threshold_tuned_on"].startswith("test brands")
    assert saved[str(saved_model_dir)]["honest"][0]["threshold_tuned_on"] == "validation brands"
    assert "## Retrieval" in printed
