"""Every entry point checks its command line before it imports torch, gradio or `modeling_logo` (whose `__init__`
imports torch and transformers to register the models): `--help`, a bad option or value and a bad path come back at
once, a mistake as one line on stderr with exit status 2. Each case runs the entry point in a fresh interpreter under
`python -X importtime`, which lists every module the process imports."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
#: The console scripts of pyproject.toml, `{name: "module:function"}`: what `pip install` makes `logo-detect` run.
CONSOLE_SCRIPTS = dict(re.findall(r'^(logo-[\w-]+) = "([\w.:]+)"$', (ROOT / "pyproject.toml").read_text(), re.M))
#: What none of them may have imported when the command line is wrong or only `--help` is asked for.
HEAVY = {"torch", "modeling_logo", "gradio", "datasets", "timm", "accelerate", "dataset_scripts"}


def entry_point(name: str) -> list[str]:
    """The command line that runs entry point `name`: a script of the repository, or a console script's target."""
    if name.endswith(".py"):
        return [str(ROOT / name)]
    module, function = CONSOLE_SCRIPTS[name].split(":")
    return ["-c", f"import sys; from {module} import {function}; sys.argv[0] = {name!r}; sys.exit({function}())"]


def run(name: str, *argv, cwd: Path) -> tuple[subprocess.CompletedProcess, list[str], set[str]]:
    """Run entry point `name` with `argv`: the process, its stderr lines (without `-X importtime`'s) and the
    top-level packages it imported."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for variable in ("LOGO_MODEL", "LOGO_LOCALIZER"):
        environment.pop(variable, None)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *entry_point(name), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
    )
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return result, [line for line in lines if not line.startswith("import time:")], imported


def test_every_console_script_is_seen_here():
    assert set(CONSOLE_SCRIPTS) == {"logo-eval", "logo-detect", "logo-gallery"}


@pytest.mark.parametrize(
    "name, argv",
    [
        ("train.py", ["--help"]),
        ("train_localizer.py", ["--help"]),
        ("space/app.py", ["--help"]),
        ("logo-detect", ["--help"]),
        ("logo-gallery", ["build", "--help"]),
        ("logo-eval", ["--help"]),
    ],
)
def test_help_comes_before_the_heavy_imports(name, argv, tmp_path):
    result, stderr, imported = run(name, *argv, cwd=tmp_path)
    assert result.returncode == 0 and stderr == [], result.stderr[-3000:]
    assert result.stdout.startswith("usage: ")
    assert not imported & HEAVY, sorted(imported & HEAVY)


@pytest.mark.parametrize(
    "name, argv, message",
    [
        ("train.py", ["--data_dir", "{tmp}/missing"], "train.py: error: --data_dir '{tmp}/missing': no such folder"),
        ("train.py", ["--loss", "arcface"], "train.py: error: --loss must be one of ('triplet', "),
        ("train.py", ["--init_from", "./no-such-model"], "--init_from ./no-such-model: no such file or directory"),
        ("train.py", ["--num_epochs", "x"], "argument --num_epochs/--num-epochs: invalid int value: 'x'"),
        ("train_localizer.py", ["--data_dir", "{tmp}"], "no annotated image in the LogoDet-3K layout"),
        ("train_localizer.py", ["--init_from", "./no-such-localizer"], "--init_from ./no-such-localizer: no such"),
        ("space/app.py", ["--model", "./no-such-model"], "app.py: error: --model './no-such-model' (or LOGO_MODEL): "),
        ("space/app.py", ["--localizer", "{tmp}/missing"], "--localizer '{tmp}/missing' (or LOGO_LOCALIZER): no such"),
        ("space/app.py", ["--port", "1"], "app.py: error: unrecognized arguments: --port 1"),
        (
            "logo-detect",
            ["photo.jpg", "--gallery", "{tmp}"],
            "logo-detect: error: --gallery '{tmp}' holds no gallery.json",
        ),
        ("logo-detect", ["photo.jpg"], "logo-detect: error: the following arguments are required: --gallery"),
        (
            "logo-gallery",
            ["build", "{tmp}", "{tmp}/out", "--model", "./no-such-model"],
            "--model './no-such-model': no",
        ),
        ("logo-gallery", ["build", "{tmp}/missing", "{tmp}/out"], "logo-gallery build: error: '{tmp}/missing' is not"),
        ("logo-eval", ["--data_dir", "{tmp}/missing"], "logo-eval: error: --data_dir '{tmp}/missing': no such folder"),
    ],
)
def test_a_mistake_is_one_line_and_exit_status_2_before_the_heavy_imports(name, argv, message, tmp_path):
    result, stderr, imported = run(name, *(arg.format(tmp=tmp_path) for arg in argv), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(stderr) == 1 and message.format(tmp=tmp_path) in stderr[0], stderr
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_the_command_lines_check_the_package_own_names():
    """What `train.py` and `logo-detect` accept is what `modeling_logo` builds and writes: the names they read
    without importing the package are the package's."""
    from logo_commands.checks import hub_names
    from modeling_logo.few_shot import GALLERY_CONFIG_NAME
    from modeling_logo.losses import DEFAULT_MINERS, LOSSES, MINERS

    names = hub_names()
    assert (names.LOSSES, names.MINERS, names.DEFAULT_MINERS) == (LOSSES, MINERS, DEFAULT_MINERS)
    assert names.GALLERY_CONFIG_NAME == GALLERY_CONFIG_NAME
