"""train_localizer.py end to end on a tiny tree: a loadable localiser with its threshold, and exact resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_localizer
from modeling_logo.detection import LogoLocalizer

from .test_logodet3k import write_tree


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("localizer-data"))


def quick_args(data_dir, output_dir, cache_dir, *extra) -> list[str]:
    return [
        "--data_dir",
        str(data_dir),
        "--dataset_cache_dir",
        str(cache_dir),
        "--output_dir",
        str(output_dir),
        "--split_scheme",
        "brands",
        "--backbone",
        "resnet-tiny",
        "--image_size",
        "64",
        "--backbone_from_embedder",
        "",
        "--batch_size",
        "2",
        "--num_workers",
        "0",
        "--validation_scenes",
        "4",
        "--max_steps_per_epoch",
        "3",
        "--warmup_steps",
        "2",
        *extra,
    ]


def checkpoint_weights(output_dir: Path, step: int | None = None) -> dict:
    checkpoints = sorted((output_dir / "checkpoints").glob("step_*"))
    checkpoint = checkpoints[-1] if step is None else output_dir / "checkpoints" / f"step_{step:08d}"
    return load_file(str(checkpoint / "model.safetensors"))


def test_training_saves_a_localizer_with_its_calibrated_threshold(data_dir, tmp_path):
    output = tmp_path / "run"
    state = train_localizer.main(
        quick_args(
            data_dir,
            output,
            tmp_path / "cache",
            "--num_epochs",
            "2",
            "--checkpointing_steps",
            "1",
            "--keep_last_checkpoints",
            "10",
        )
    )
    assert state.epoch == 2 and [row["epoch"] for row in state.history] == [0, 1]
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "metrics.csv",
        "curves.png",
    ):
        assert (output / name).is_file(), name
    first, last = checkpoint_weights(output, 1), checkpoint_weights(output)
    assert any(not torch.equal(first[name], last[name]) for name in first)  # the steps changed the weights
    config = json.loads((output / "config.json").read_text())
    best = next(row for row in state.history if row["epoch"] == state.best_epoch)
    assert config["score_threshold"] == pytest.approx(best["threshold"])  # calibrated on validation scenes
    localizer = LogoLocalizer.from_pretrained(output, runtime="torch")
    assert localizer.image_processor.size == 64
    (found,) = localizer([str(next(data_dir.rglob("*.jpg")))])
    assert found["boxes"].shape[1] == 4


def test_a_run_killed_mid_epoch_resumes_to_the_same_parameters(data_dir, tmp_path):
    # fp32: under bf16 autocast (what `auto` runs on an AVX512-BF16 CPU) the resumed localiser differed from the
    # uninterrupted one in the last bits (detector.backbone.body.bn1.bias); the embedder resumes exactly in both. Every
    # run is a process of its own: this one's Accelerator state may already hold another precision.
    common = ["--num_epochs", "2", "--checkpointing_steps", "1", "--keep_last_checkpoints", "10"]
    common += ["--mixed_precision", "no"]
    # Bit-exact only on the same number of threads in every run (sums are split by thread).
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}

    def command(output, *extra):
        arguments = quick_args(data_dir, output, tmp_path / "cache", *common, *extra)
        return [sys.executable, str(ROOT / "train_localizer.py"), *arguments]

    uninterrupted = tmp_path / "uninterrupted"
    subprocess.run(command(uninterrupted), cwd=tmp_path, env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        command(killed), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "step_00000002").exists():  # mid-epoch 0: 3 steps per epoch
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "training_state.json").exists()  # it really died before the end

    resumed_run = command(killed, "--resume_from_checkpoint", "latest")
    subprocess.run(resumed_run, cwd=tmp_path, env=env, check=True, capture_output=True)
    assert json.loads((killed / "training_state.json").read_text())["epoch"] == 2
    expected, resumed = checkpoint_weights(uninterrupted), checkpoint_weights(killed)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0, msg=name)
