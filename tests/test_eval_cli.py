"""`logo-eval` end to end on a small LogoDet-3K-layout tree: tables printed, report written; and its typed
entry point, `logo_evaluation.evaluate_model`, called directly."""

import json
import subprocess
import sys
import typing

import pytest

from logo_evaluation import EvaluationSettings, evaluate_model
from logo_evaluation.cli import check_command_line, parse_args

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
    paper = parse_markdown_table(report, "### 1-shot")  # one table per number of shots, eight columns
    assert paper[0] == [
        "model",
        "accuracy",
        "precision",
        "recall",
        "F1",
        "recall at 95% precision",
        "mAP",
        "J (Fisher)",
    ]
    assert report.index("## The paper's protocol") < report.index("### 1-shot") < report.index("## The honest")
    assert [row[0] for row in paper[1:4]] == list(results)
    assert all(0.0 <= float(cell) <= 1.0 for cell in paper[1][1:7])
    assert paper[4][0] == "paper: triplet loss" and paper[4][6] == "0.508"
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


def annotated_tree(root):
    """The least a LogoDet-3K-layout folder needs to pass the command line's check: one image with its XML."""
    (root / "Food" / "Brand").mkdir(parents=True)
    (root / "Food" / "Brand" / "1.jpg").write_bytes(b"")
    (root / "Food" / "Brand" / "1.xml").write_text("<annotation/>")
    return root


CHECK_IN_A_FRESH_PROCESS = """
import sys
from logo_evaluation.cli import check_command_line
try:
    check_command_line(sys.argv[1:])
    code = 0
except SystemExit as exit:
    code = exit.code
heavy = sorted({"torch", "transformers", "datasets", "modeling_logo", "dataset_scripts"} & set(sys.modules))
assert not heavy, f"imported before the check: {heavy}"
sys.exit(code)
"""


def check_in_a_fresh_process(*argv):
    return subprocess.run(
        [sys.executable, "-c", CHECK_IN_A_FRESH_PROCESS, *map(str, argv)], capture_output=True, text=True, timeout=120
    )


def test_the_command_line_is_checked_before_torch_is_imported_and_mistakes_are_one_line(tmp_path):
    data_dir = annotated_tree(tmp_path / "brands")
    model_dir = tmp_path / "model"
    (model_dir).mkdir()
    (model_dir / "config.json").write_text("{}")
    (tmp_path / "a-file").write_text("")
    good = check_in_a_fresh_process("--data_dir", data_dir, "--model", model_dir, "--localizer", model_dir)
    assert good.returncode == 0, good.stderr
    mistakes = {
        ("--data_dir", tmp_path / "missing"): "--data_dir '{tmp}/missing': no such folder",
        ("--data_dir", tmp_path / "a-file"): "--data_dir '{tmp}/a-file': not a folder",
        ("--data_dir", tmp_path): "no annotated image in the LogoDet-3K layout",
        ("--data_dir", data_dir, "--model", tmp_path / "nothing"): "--model '{tmp}/nothing': no such model folder",
        ("--data_dir", data_dir, "--model", tmp_path): "not a saved model (no config.json in it)",
        ("--data_dir", data_dir, "--model", "user/not-downloaded"): "not in the local Hub cache",
        ("--data_dir", data_dir, "--localizer", tmp_path / "no"): "--localizer '{tmp}/no': not a saved localiser",
        ("--data_dir", data_dir, "--ways", "5", "x"): "argument --ways: 'x' is neither a number of brands nor 'all'",
        ("--data_dir", data_dir, "--shots", "0"): "shots are numbers of support images (1 or more), got [0]",
        ("--data_dir", data_dir, "--train_fraction", "0.9", "--validation_fraction", "0.2"): "validation_fraction < 1",
        ("--data_dir", data_dir, "--runtime", "tensorrt"): "argument --runtime: invalid choice: 'tensorrt'",
        ("--data_dir", data_dir, "--report", tmp_path / "a-file"): "a file, not a folder",
    }
    for argv, message in mistakes.items():
        result = check_in_a_fresh_process(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("logo-eval: error: "), (argv, result.stderr)
        assert message.format(tmp=tmp_path) in lines[0], (argv, lines[0])
    # the command itself: the same line and status, no traceback
    command = subprocess.run(
        [sys.executable, "-m", "logo_evaluation.cli", "--data_dir", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert command.returncode == 2 and "Traceback" not in command.stderr
    assert (
        command.stderr == f"logo-eval: error: --data_dir '{tmp_path}/missing': no such folder (see logo-eval --help)\n"
    )


def test_the_command_line_copies_of_package_constants_are_the_originals():
    from dataset_scripts import logodet3k
    from logo_evaluation import runner, settings
    from modeling_logo import embedder

    assert settings.SPLIT_SCHEMES == logodet3k.SPLIT_SCHEMES
    assert settings.IMAGE_EXTENSIONS == logodet3k.IMAGE_EXTENSIONS
    assert settings.RUNTIMES == embedder.RUNTIMES
    assert typing.get_args(embedder.Runtime) == embedder.RUNTIMES  # the type checkers' copy
    assert runner.EvaluationSettings is settings.EvaluationSettings and runner.BASELINES == settings.BASELINES


def test_check_command_line_returns_the_settings_of_a_right_one(tmp_path):
    data_dir = annotated_tree(tmp_path / "brands")
    assert check_command_line(["--data_dir", str(data_dir), "--baselines", "histogram"]) == EvaluationSettings(
        data_dir=str(data_dir), baselines=("histogram",)
    )


def test_the_report_names_the_model_in_every_figure_and_keeps_long_brand_names(tmp_path):
    import numpy as np
    from PIL import Image

    from logo_evaluation import report
    from modeling_logo.evaluation import EmbeddedSplit, honest_protocol, paper_protocol, retrieval_protocol

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    embeddings = rng.normal(size=(6, 16))[labels] + 0.3 * rng.normal(size=(30, 16))
    split = EmbeddedSplit(embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), labels)
    long_name = "The Extraordinarily Long Brand Name Of A Company That Never Stops"
    brand_names = [long_name, "Nike", "Adidas", "Puma", "Sony", "Apple"]
    images = [Image.new("RGB", (40, 30), (40 * label, 100, 200)) for label in labels]
    model = "runs/a-model-with-a-name"

    figure = report.plot_retrieval_grid(split, images, model_name=model, brand_names=brand_names)
    assert model in figure.get_suptitle()
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["query", "same brand", "other brand"]
    captions = [axis.get_title() for axis in figure.axes]
    assert len(captions) == 6 * 6 and all(caption for caption in captions)
    assert all(len(line) <= 18 for caption in captions for line in caption.splitlines())  # "…" where too long
    figure = report.plot_tsne(split, brand_names, model_name=model)
    assert model in figure.get_suptitle()
    labels_shown = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels_shown[0] == "The Extraordinarily Long\nBrand Name Of A Company…" and labels_shown[1] == "Nike"
    assert model in report.plot_distance_histogram(split, 1, 1.0, model_name=model).get_suptitle()
    other = EmbeddedSplit(split.embeddings[::-1], labels)
    pr = report.plot_pr_curves({model: split, "colour histogram": other}, (1, 2))
    assert model in pr.get_suptitle() and "colour histogram" in pr.get_suptitle()
    assert [t.get_text() for t in pr.axes[0].get_legend().get_texts()] == [model, "colour histogram"]

    # the report keeps every brand name whole: the t-SNE's brands and the grid's rows, in text
    results = {
        model: {
            "paper": [paper_protocol(split, 1)],
            "honest": honest_protocol(None, split, ways=(2, "all"), shots=(1,), episodes=5, threshold=0.5),
            "retrieval": retrieval_protocol(split),
        }
    }
    report.write_report(
        results, tmp_path, test_splits={model: split}, test_images=images, brand_names=brand_names, shots=(1,)
    )
    text = (tmp_path / "report.md").read_text()
    figures = text[text.index("## Figures") :]
    assert f"its brands in full: {long_name}; Nike;" in figures
    grid_rows = [line for line in figures.splitlines() if line.startswith("  1. ")]
    assert len(grid_rows) == 1 and grid_rows[0].count("(") == 5  # the query's brand, then five answers and scores
    honest = parse_markdown_table(text, "## The honest protocol")
    assert [row[1] for row in honest[1:]] == ["2", "all (N=5)"]  # 6 brands, a held-out fifth (1): 5 registered
    for name in ("pr_curves.png", "distances.png", "tsne.png", "retrieval_grid.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_the_int8_runtime_is_refused_with_where_it_is_measured(tmp_path):
    from logo_evaluation.settings import EvaluationSettings

    with pytest.raises(ValueError, match="onnxruntime-int8 needs calibration images: benchmarks/onnx_quantization.py"):
        EvaluationSettings(data_dir=str(tmp_path), runtime="onnxruntime-int8")
