"""`logo-eval` end to end on a small LogoDet-3K-layout tree: tables printed, report written; and its typed
entry point, `logo_evaluation.evaluate_model`, called directly."""

import json
import subprocess
import sys

import pytest

from logo_evaluation import EvaluationSettings, evaluate_model
from logo_evaluation.cli import parse_args

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
    results = evaluate_model(
        parse_args(
            [
                "--model",
                str(saved_model_dir),
                "--data_dir",
                str(data_dir),
                "--cache_dir",
                str(tmp_path / "cache"),
                "--split_scheme",
                "brands",
                "--shots",
                "1",
                "--ways",
                "2",
                "--episodes",
                "20",
                "--train_sample",
                "10",
                "--baselines",
                "untrained",
                "imagenet",
                "histogram",
                "--report",
                str(tmp_path / "report"),
            ]
        )
    )
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


def test_logo_eval_measures_localisation_and_whole_photos(tmp_path, saved_model_dir, capsys):
    import torch

    from modeling_logo import LogoLocalizerConfig, LogoLocalizerImageProcessor, LogoLocalizerModel

    torch.manual_seed(0)
    localizer_dir = tmp_path / "localizer"
    LogoLocalizerModel(LogoLocalizerConfig(backbone="resnet-tiny", image_size=64)).save_pretrained(localizer_dir)
    LogoLocalizerImageProcessor(size=64).save_pretrained(localizer_dir)
    from dataset_scripts.synthesize import synthesize

    data_dir = tmp_path / "data"  # generated scenes: several logos each, distractors of no brand boxed too
    synthesize(data_dir, 24, 3, seed=0, workers=1, image_size=128, progress=False)
    # the typed entry point, as train.py calls it: the split given as training had it
    results = evaluate_model(
        EvaluationSettings(
            data_dir=data_dir,
            models=(saved_model_dir,),
            baselines=(),
            cache_dir=tmp_path / "cache",
            split_scheme="brands",
            train_fraction=0.5,
            validation_fraction=0.25,
            shots=(1,),
            ways=(2,),
            episodes=10,
            train_sample=10,
            runtime="torch",
            localizer=localizer_dir,
            photo_methods=("localizer", "whole-image"),
            photo_scenes=20,
            photo_episodes=10,
            report_dir=tmp_path / "report",
        )
    )
    printed = capsys.readouterr().out
    assert "## Whole photos" in printed and "| class-agnostic |" in printed
    photos = results[str(saved_model_dir)]["photos"]
    assert set(photos) == {"localizer", "whole-image"}
    (whole,) = photos["whole-image"]
    # logos cover 3-50% of a scene: the whole image rarely overlaps one at IoU 0.5, so few of its answers count,
    # while the same scenes' crops are recognised (the box is required, not only the brand)
    assert whole["closed_set_accuracy"][0] < whole["crop_recall_at_1"][0]
    assert 0.0 <= results[str(saved_model_dir)]["localization"]["AP50"] <= 1.0
    assert "## Whole photos" in (tmp_path / "report" / "report.md").read_text()


def test_all_test_measures_a_model_on_brands_of_ones_own_with_its_calibrated_threshold(tmp_path, capsys):
    import torch

    from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel, LogoImageProcessor

    from .test_logodet3k import OWN_CROPS

    torch.manual_seed(1)
    config = LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64, similarity_threshold=0.42)
    model_dir = tmp_path / "downloaded-model"
    LogoEmbeddingModel(config).save_pretrained(model_dir)
    LogoImageProcessor.from_model_config(config).save_pretrained(model_dir)
    data_dir = write_tree(tmp_path / "my-brands")
    argv = [
        "--model",
        str(model_dir),
        "--data_dir",
        str(data_dir),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--split_scheme",
        "all-test",
        "--shots",
        "1",
        "--ways",
        "2",
        "4",
        "--episodes",
        "10",
        "--baselines",
        "histogram",
        "--runtime",
        "torch",
        "--report",
        str(tmp_path / "report"),
    ]
    results = evaluate_model(parse_args(argv))
    printed = capsys.readouterr().out
    # every crop of every brand is a test crop: the brands' own, the Ben & Jerry's logo in a McDonald's photo, and the
    # 300 x 300 image that only the builder test's pixel limit refuses
    assert f"{{'test': {sum(OWN_CROPS.values()) + 2}}}" in printed
    model_rows = results[str(model_dir)]["honest"]
    assert [(row["ways"], row["threshold"]) for row in model_rows] == [(2, 0.42), (4, 0.42)]  # calibrated, not tuned
    assert all(row["threshold_tuned_on"] == "none: given beforehand" and row["episodes"] == 10 for row in model_rows)
    assert all("no calibrated threshold" in row["skipped"] for row in results["colour histogram"]["honest"])
    assert results[str(model_dir)]["train_retrieval"] == {} and not any(
        "t-mAP" in name for name in results[str(model_dir)]["retrieval"]
    )
    assert results["colour histogram"]["paper"][0]["shots"] == 1  # the paper's protocol and retrieval run too
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## The honest protocol (open set, threshold: each model's calibrated config.similarity_threshold" in report
    honest = parse_markdown_table(report, "## The honest protocol")
    assert [row[3] for row in honest[1:3]] == ["0.420", "0.420"]

    overridden = evaluate_model(parse_args([*argv, "--threshold", "0.9", "--report", ""]))
    assert {row["threshold"] for row in overridden[str(model_dir)]["honest"]} == {0.9}
    with pytest.raises(SystemExit):
        parse_args([*argv, "--localizer", str(model_dir)])
    assert "crops only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--data_dir", str(data_dir), "--split_scheme", "all-test", "--baselines", "histogram"])
    assert "give --model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--model", str(model_dir), "--data_dir", str(data_dir), "--threshold", "0.5"])
    assert "--threshold is for --split_scheme all-test" in capsys.readouterr().err


def test_the_command_line_is_the_settings_of_evaluate_model(capsys):
    settings = parse_args(
        [
            "--model",
            "a",
            "--model",
            "b",
            "--data_dir",
            "d",
            "--config",
            "images",
            "--split_scheme",
            "brands",
            "--train_fraction",
            "0.6",
            "--validation_fraction",
            "0.2",
            "--ways",
            "5",
            "all",
            "--baselines",
            "histogram",
            "--report",
            "",
        ]
    )
    assert settings == EvaluationSettings(
        data_dir="d",
        models=("a", "b"),
        baselines=("histogram",),
        builder_config="images",
        split_scheme="brands",
        train_fraction=0.6,
        validation_fraction=0.2,
        ways=(5, "all"),
        report_dir="",
    )
    assert settings.split_options() == {
        "cache_dir": None,
        "split_scheme": "brands",
        "train_fraction": 0.6,
        "validation_fraction": 0.2,
    }
    assert parse_args(["--data_dir", "d"]).split_options() == {"cache_dir": None, "split_scheme": "hash"}
    defaults = parse_args(["--data_dir", "d"])
    assert defaults == EvaluationSettings(data_dir="d") and defaults.photo_methods is None
    # the typed function refuses what the command refuses, with the same words
    with pytest.raises(ValueError, match="nothing to evaluate"):
        EvaluationSettings(data_dir="d", baselines=())
    with pytest.raises(ValueError, match="give --model"):
        EvaluationSettings(data_dir="d", split_scheme="all-test")
    with pytest.raises(ValueError, match="--threshold is for --split_scheme all-test"):
        EvaluationSettings(data_dir="d", models=("a",), threshold=0.5)
    with pytest.raises(ValueError, match="unknown \\['resnet'\\]"):
        EvaluationSettings(data_dir="d", baselines=("resnet",))
    with pytest.raises(ValueError, match="ways"):
        EvaluationSettings(data_dir="d", ways=("5",))
    with pytest.raises(SystemExit):
        parse_args(["--data_dir", "d", "--baselines"])
    assert "nothing to evaluate" in capsys.readouterr().err


def test_the_hub_package_imports_no_data_scripts_training_space_or_evaluation_command():
    """`modeling_logo` is what the Hub loads: every module of it imports without `dataset_scripts`, `train`,
    `space`, `logo_evaluation` or matplotlib; and importing `logo_evaluation` configures no plotting backend."""
    script = """
import importlib, pkgutil, sys
import modeling_logo
for module in pkgutil.walk_packages(modeling_logo.__path__, "modeling_logo."):
    importlib.import_module(module.name)
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"dataset_scripts", "train", "space", "space_app",
                "logo_evaluation", "matplotlib"})
assert not loaded, loaded
import logo_evaluation, logo_evaluation.cli, logo_evaluation.report
assert "matplotlib" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
