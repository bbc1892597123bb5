"""train.py as shipped, on two processes (`torchrun`, gloo on the CPU: DDP behaves as it does on GPUs): the paper's
freeze → unfreeze schedule, identical models on both processes after every epoch (also when starting from a model
saved with frozen stages), an exact resume mid-run, and learning that shows on unseen brands."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dataset_scripts.synthesize import synthesize

from .test_logodet3k import voc


ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 4  # 10 training brands × 6 images, P=4 × K=2 per process, 2 processes
# The paper's recipe at a tiny size: triplet loss with semi-hard mining, SGD, the whole backbone frozen (the head
# trains on cached backbone features), layer4 unfrozen at epoch 1 with the LR × 0.2.
PAPER_RECIPE = (
    "--loss",
    "triplet",
    "--miner",
    "semi-hard",
    "--optimizer",
    "sgd",
    "--learning_rate",
    "0.05",
    "--backbone_lr_factor",
    "0.5",
    "--unfreeze",
    "layer4:1",
    "--freeze_other_stages",
    "true",
    "--frozen_feature_views",
    "2",
    "--num_epochs",
    "3",
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed-data")
    synthesize(root, 16, 6, seed=3, workers=1, image_size=160, progress=False)
    return root


def write_pattern_brands(root: Path, brands: int = 48, images: int = 10, size: int = 64, seed: int = 0) -> Path:
    """A LogoDet-3K-layout folder where a brand is a 3×3 grid of random colours, drawn at a random place and size on
    a random noisy background: quick to learn (the generated benchmark takes hundreds of steps), and what is learnt
    carries over to brands never seen (new grids)."""
    rng = np.random.default_rng(seed)
    for brand in range(brands):
        pattern = Image.fromarray(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8))
        folder = root / "Patterns" / f"grid {brand:02d}"
        folder.mkdir(parents=True)
        for index in range(images):
            background = rng.integers(0, 256, 3) + rng.normal(0, 25, (size, size, 3))
            picture = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
            side = int(rng.integers(size // 3, size // 2))
            x, y = (int(value) for value in rng.integers(0, size - side, 2))
            picture.paste(pattern.resize((side, side), Image.NEAREST), (x, y))
            picture.save(folder / f"{index}.jpg", quality=95)
            box = (x, y, x + side, y + side)
            (folder / f"{index}.xml").write_text(
                voc(folder.name, (size, size), [(folder.name, box)]), encoding="utf-8"
            )
    return root


def launch_two_processes(data_dir, out_dir: Path, *train_args: str) -> Path:
    """`torchrun --nproc_per_node 2 train.py ...` (through tests/distributed_train.py, which saves each process's
    model after every epoch); returns the run's output folder."""
    run_dir = out_dir / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "distributed_train.py"),
        str(out_dir / "models"),
        "--data_dir",
        str(data_dir),
        "--dataset_cache_dir",
        str(out_dir.parent / "cache"),
        "--output_dir",
        str(run_dir),
        "--split_scheme",
        "brands",
        "--init_from",
        "none",
        "--backbone",
        "resnet-tiny",
        "--image_size",
        "32",
        "--brands_per_batch",
        "4",
        "--images_per_brand",
        "2",
        "--num_workers",
        "0",
        "--train_sample",
        "16",
        "--report_to",
        "none",
        "--evaluate_on_test",
        "false",
        *train_args,  # later flags win: a test may override the ones above
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def models_of(out_dir: Path, name: str) -> tuple[dict, dict]:
    return tuple(load_file(out_dir / "models" / f"{name}-rank_{rank}.safetensors") for rank in (0, 1))


def assert_identical(first: dict, second: dict, what: str) -> None:
    assert first.keys() == second.keys()
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{what}: {len(different)} tensors differ, e.g. {different[:3]}"


def changed_parts(before: dict, after: dict) -> set[str]:
    """The model parts ('head', 'conv1', 'layer4', ...) with a tensor that changed."""
    parts = set()
    for name in before:
        if not torch.equal(before[name], after[name]):
            parts.add(name.split(".")[1] if name.startswith("backbone.") else name.split(".")[0])
    return parts


@pytest.fixture(scope="module")
def paper_run(data_dir, tmp_path_factory):
    """[`PAPER_RECIPE`] on two processes, with a checkpoint every step."""
    out_dir = tmp_path_factory.mktemp("paper")
    run_dir = launch_two_processes(
        data_dir,
        out_dir,
        *PAPER_RECIPE,
        "--checkpointing_steps",
        "1",
        "--keep_last_checkpoints",
        "20",
    )
    return out_dir, run_dir


def test_the_paper_schedule_runs_through_unfreezing_with_identical_processes(paper_run):
    out_dir, run_dir = paper_run
    state = json.loads((run_dir / "training_state.json").read_text())
    assert state["epoch"] == 3 and state["global_step"] == 3 * STEPS_PER_EPOCH
    assert all(row["train_loss"] == row["train_loss"] for row in state["history"])  # not NaN
    names = ["start", "epoch_0", "epoch_1", "epoch_2"]
    for name in names:
        assert_identical(*models_of(out_dir, name), what=f"{name}: process 0 vs process 1")
    models = {name: models_of(out_dir, name)[0] for name in names}
    # Epoch 0: the backbone is frozen (BatchNorm statistics too) and only the head learns; then layer4 too.
    assert changed_parts(models["start"], models["epoch_0"]) == {"head"}
    assert changed_parts(models["epoch_0"], models["epoch_1"]) == {"head", "layer4"}
    assert changed_parts(models["epoch_1"], models["epoch_2"]) == {"head", "layer4"}
    # The saved model is the best epoch's, with the stages frozen then.
    config = json.loads((run_dir / "config.json").read_text())
    frozen_then = ["stem", "layer1", "layer2", "layer3"] + (["layer4"] if state["best_epoch"] < 1 else [])
    assert config["frozen_stages"] == frozen_then


def test_init_from_a_model_saved_with_frozen_stages_keeps_processes_in_sync(data_dir, paper_run, tmp_path):
    """The paper run's model loads with its backbone stages frozen (layer4 too if its best epoch was the first);
    unfreezing layer3 at epoch 1 must synchronise it across processes (DDP synchronises only what was trainable when
    it wrapped the model)."""
    launch_two_processes(
        data_dir,
        tmp_path,
        "--init_from",
        str(paper_run[1]),
        "--eval_on_start",
        "false",
        "--unfreeze",
        "layer3:1",
        "--num_epochs",
        "2",
    )
    for name in ("start", "epoch_0", "epoch_1"):
        assert_identical(*models_of(tmp_path, name), what=f"{name}: process 0 vs process 1")
    start, first, second = (models_of(tmp_path, name)[0] for name in ("start", "epoch_0", "epoch_1"))
    assert changed_parts(start, first) == {"head", "conv1", "bn1", "layer1", "layer2", "layer4"}
    assert changed_parts(first, second) == {"head", "conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}


def test_a_two_process_run_resumed_mid_run_ends_with_the_same_model(data_dir, paper_run, tmp_path):
    out_dir, run_dir = paper_run
    middle_of_epoch_1 = run_dir / "checkpoints" / f"step_{STEPS_PER_EPOCH + 2:08d}"
    assert middle_of_epoch_1.is_dir()
    launch_two_processes(
        data_dir,
        tmp_path,
        *PAPER_RECIPE,
        "--resume_from_checkpoint",
        str(middle_of_epoch_1),
    )
    for rank, (expected, resumed) in enumerate(zip(models_of(out_dir, "epoch_2"), models_of(tmp_path, "epoch_2"))):
        assert_identical(expected, resumed, what=f"process {rank}: uninterrupted vs resumed")


def test_two_processes_learn_what_carries_over_to_unseen_brands(tmp_path):
    """The default recipe from a random network, 20 short epochs on two processes: the weights change, and the
    retrieval mAP rises on the training brands and on the unseen validation brands."""
    data_dir = write_pattern_brands(tmp_path / "data")
    run_dir = launch_two_processes(
        data_dir,
        tmp_path,
        "--image_size",
        "64",
        "--brands_per_batch",
        "8",
        "--images_per_brand",
        "4",
        "--train_fraction",
        "0.6",
        "--validation_fraction",
        "0.3",
        "--train_sample",
        "64",
        "--validation_sample",
        "100",
        "--num_epochs",
        "20",
        "--learning_rate",
        "5e-3",
        "--eval_on_start",
        "true",
    )
    history = json.loads((run_dir / "training_state.json").read_text())["history"]
    start, last = history[0], history[-1]
    assert start["epoch"] == -1 and last["epoch"] == 19
    assert last["retrieval_mAP"] >= start["retrieval_mAP"] + 0.03, (start, last)
    assert last["train_retrieval_mAP"] >= start["train_retrieval_mAP"] + 0.08, (start, last)
    first, final = models_of(tmp_path, "start")[0], models_of(tmp_path, "epoch_19")[0]
    assert changed_parts(first, final) >= {"head", "conv1", "layer1", "layer4"}
