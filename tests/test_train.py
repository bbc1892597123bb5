"""train.py: losses, progressive unfreezing, a run end to end, exact resume after SIGKILL, accelerate launch."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from dataset_scripts import load_logodet3k
from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel
from modeling_logo.callbacks import EarlyStopping, ProgressiveUnfreezing, TrainingState
from modeling_logo.detection import crop_box
from modeling_logo.losses import DEFAULT_MINERS, LOSSES, build_loss, build_miner

from .test_logodet3k import write_tree


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("train-data"))


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
        "--init_from",
        "none",
        "--backbone",
        "resnet-tiny",
        "--image_size",
        "64",
        "--brands_per_batch",
        "2",
        "--images_per_brand",
        "2",
        "--num_workers",
        "0",
        "--train_sample",
        "8",
        "--report_to",
        "none",
        "--evaluate_on_test",
        "false",
        *extra,
    ]


@pytest.mark.parametrize("loss_name", LOSSES)
def test_every_loss_and_its_default_miner_run_and_backpropagate(loss_name):
    torch.manual_seed(0)
    loss_fn = build_loss(loss_name, num_classes=4, embedding_size=16)
    miner = build_miner(DEFAULT_MINERS[loss_name], loss_name)
    features = torch.randn(8, 16, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = torch.nn.functional.normalize(features, dim=1)
        loss = loss_fn(embeddings, labels, miner(embeddings, labels) if miner else None)
    loss.backward()
    assert torch.isfinite(loss) and features.grad.abs().sum() > 0


def test_a_few_steps_reduce_the_loss(tiny_model):
    torch.manual_seed(0)
    tiny_model.train()
    loss_fn, miner = build_loss("triplet"), build_miner("semi-hard", "triplet")
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.05, momentum=0.9)
    pixels, labels = torch.randn(8, 3, 64, 64), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    pixels[labels % 2 == 1] += 1.0  # something to learn
    losses = []
    for _ in range(15):
        embeddings = tiny_model(pixels).embeddings
        loss = loss_fn(embeddings, labels, miner(embeddings, labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3


def test_progressive_unfreezing_flags_groups_and_learning_rate(tiny_config):
    model = LogoEmbeddingModel(tiny_config)
    unfreezing = ProgressiveUnfreezing.from_string("layer4:2,layer3:4")
    state = TrainingState()
    unfreezing.on_train_begin(state, model)
    assert model.config.frozen_stages == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert all(p.requires_grad for p in model.head.parameters())
    for epoch, trainable in [(1, set()), (2, {"layer4"}), (3, {"layer4"}), (4, {"layer3", "layer4"})]:
        state.epoch = epoch
        unfreezing.on_epoch_begin(state, model)
        for stage in ("stem", "layer1", "layer2", "layer3", "layer4"):
            assert all(p.requires_grad == (stage in trainable) for p in model.backbone_parameters([stage])), (
                epoch,
                stage,
            )
    assert [unfreezing.lr_factor(epoch) for epoch in range(6)] == pytest.approx([1, 1, 0.2, 0.2, 0.04, 0.04])
    args = train.EmbeddingTrainingArguments(num_epochs=6, lr_scheduler="constant")
    assert train.lr_multiplier(2 * 10, 10, args, unfreezing) == pytest.approx(0.2)
    assert train.lr_multiplier(2 * 10 - 1, 10, args, unfreezing) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="layer4:15"):
        ProgressiveUnfreezing.from_string("layer4")
    with pytest.raises(ValueError, match="Unknown backbone stage"):
        ProgressiveUnfreezing.from_string("layer9:3")


def test_early_stopping_after_patience_evaluations_without_improvement():
    state, stopping = TrainingState(), EarlyStopping(patience=2)
    for epoch, value in enumerate([0.5, 0.6, 0.55, 0.58]):
        state.epoch = epoch
        state.record(value)
        stopping.on_evaluate(state, None, {"mAP": value})
    assert state.best_metric == 0.6 and state.best_epoch == 1 and state.should_stop


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="--loss must be one of"):
        train.EmbeddingTrainingArguments(loss="arcface")
    with pytest.raises(ValueError, match="--mixed_precision"):
        train.EmbeddingTrainingArguments(mixed_precision="fp8")
    native = train.cpu_has_native_bf16()
    assert train.resolve_mixed_precision("fp16", "cpu") == ("bf16" if native else "no")  # fp16 is a no-op on CPU
    assert train.resolve_mixed_precision("auto", "cpu") == ("bf16" if native else "no")
    assert train.resolve_mixed_precision("bf16", "cpu") == "bf16"  # honoured, with a warning where it is slow
    assert train.resolve_mixed_precision("fp16", "cuda") == "fp16"


def test_training_saves_a_model_that_loads_in_a_fresh_process(data_dir, tmp_path):
    output = tmp_path / "run"
    # The cross-world set: here the same scenes again, so it must score exactly as the in-world validation brands.
    other_worlds = write_tree(tmp_path / "other-worlds")
    state = train.main(
        quick_args(data_dir, output, tmp_path / "cache", "--num_epochs", "2")
        + ["--evaluate_on_test", "true", "--test_episodes", "10", "--brands_per_batch", "4"]  # P > validation brands
        + ["--out_of_world_dir", str(other_worlds)]
    )
    assert state.epoch == 2 and len(state.history) == 2
    assert {"mAP", "f1", "threshold", "loss", "train_retrieval_mAP", "retrieval_mAP_by_design"} <= set(
        state.history[0]
    )
    for row in state.history:
        assert row["out_of_world_retrieval_mAP"] == row["retrieval_mAP"] and row["out_of_world_ratio"] == 1.0
        assert row["in_world_retrieval_mAP_same_brands"] == row["retrieval_mAP"]  # every validation brand is there
        assert row["out_of_world_retrieval_mAP_by_design"] == row["retrieval_mAP_by_design"]
    cross_world = json.loads((output / "report" / "cross_world.json").read_text())
    assert set(cross_world) == {str(output), "untrained (random init)", "colour histogram"}
    for by_world in cross_world.values():
        assert 0 < by_world["train brands"]["retrieval_mAP"] <= 1  # memorisation shows beside both worlds
        assert by_world["in-world"]["retrieval_mAP"] == by_world["out-of-world"]["retrieval_mAP"]
        assert by_world["in-world"]["test_brands"] == by_world["out-of-world"]["test_brands"] > 0
    assert "out-of-world / in-world mAP" in (output / "report" / "cross_world.md").read_text()
    assert all(row["loss"] == row["loss"] for row in state.history)  # the validation loss is measured (not NaN)
    for name in (
        "config.json",
        "model.safetensors",
        "modeling_logo.py",
        "preprocessor_config.json",
        "README.md",
        "metrics.csv",
        "curves.png",
        "report/report.md",
    ):
        assert (output / name).is_file(), name
    config = json.loads((output / "config.json").read_text())
    assert -1 <= config["similarity_threshold"] <= 1
    from huggingface_hub import ModelCard

    card = ModelCard.load(output / "README.md")  # the Hub reads the results from the metadata, not the text
    assert card.data.license == "apache-2.0" and card.data.datasets == [data_dir.name]
    results = {(result.metric_name, result.dataset_split): result.metric_value for result in card.data.eval_results}
    best = state.history[state.best_epoch]
    assert results[("Retrieval mAP, unseen validation brands", "validation")] == round(best["retrieval_mAP"], 4)
    assert ("Retrieval mAP, training brands (memorisation)", "train") in results
    other = ("Retrieval mAP, unseen validation brands in visual worlds held out of training", "validation")
    assert results[other] == round(best["out_of_world_retrieval_mAP"], 4)
    assert "`out_of_world_*` rows are the cross-world test" in card.text
    script = (
        "import sys; sys.meta_path.insert(0, type('B', (), {'find_spec': staticmethod(lambda n, *a: "
        "(_ for _ in ()).throw(ImportError(n)) if n.split('.')[0] in ('modeling_logo', 'dataset_scripts') else None)})())\n"
        "import torch; from transformers import AutoModel\n"
        f"m = AutoModel.from_pretrained({str(output)!r}, trust_remote_code=True).eval()\n"
        "print(m(torch.zeros(1, 3, 64, 64)).embeddings.shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 128])" in result.stdout


def final_weights(output_dir: Path) -> dict:
    checkpoint = sorted((output_dir / "checkpoints").glob("step_*"))[-1]
    return load_file(str(checkpoint / "model.safetensors"))


def test_a_run_killed_mid_epoch_resumes_to_the_same_parameters(data_dir, tmp_path):
    common = ["--num_epochs", "2", "--checkpointing_steps", "1", "--keep_last_checkpoints", "10"]
    uninterrupted = tmp_path / "uninterrupted"
    train.main(quick_args(data_dir, uninterrupted, tmp_path / "cache", *common))

    killed = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "train.py"), *quick_args(data_dir, killed, tmp_path / "cache", *common)]
    # Bit-exact only on the same number of threads as this process's runs (sums are split by thread).
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "step_00000002").exists():  # mid-epoch 0: 3 steps per epoch
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "training_state.json").exists()  # it really died before the end

    state = train.main(quick_args(data_dir, killed, tmp_path / "cache", *common, "--resume_from_checkpoint", "latest"))
    assert state.epoch == 2
    expected, resumed = final_weights(uninterrupted), final_weights(killed)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0, msg=name)


def test_accelerate_launch_without_a_config_file(data_dir, tmp_path):
    env = {**os.environ, "ACCELERATE_CONFIG_FILE": str(tmp_path / "no-such-config.yaml")}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "1",
        str(ROOT / "train.py"),
        *quick_args(data_dir, tmp_path / "launched", tmp_path / "cache", "--num_epochs", "1"),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "launched" / "model.safetensors").is_file()


def test_two_processes_train_like_one_process_on_the_global_batch(tmp_path):
    """Under `torchrun --nproc_per_node 2` (Accelerate's launcher runs a single process with `--cpu`), mining and the loss see both processes' embeddings: each process
    reports the loss of the global batch, and the weights stay identical across processes and equal to one process
    trained on the global batch."""
    script, losses = ROOT / "tests" / "distributed_steps.py", ["multi-similarity", "triplet"]
    single = subprocess.run([sys.executable, str(script), str(tmp_path), *losses], capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(script),
        str(tmp_path),
        *losses,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for loss_name in losses:
        reference = json.loads((tmp_path / f"{loss_name}-1-0.json").read_text())
        expected = load_file(tmp_path / f"{loss_name}-1-0.safetensors")
        for rank in (0, 1):
            assert json.loads((tmp_path / f"{loss_name}-2-{rank}.json").read_text()) == pytest.approx(
                reference, rel=1e-4
            )
            weights = load_file(tmp_path / f"{loss_name}-2-{rank}.safetensors")
            for name, value in expected.items():
                torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5, msg=f"{loss_name} {name}")
        assert reference[0] != reference[-1]  # the weights moved


@pytest.mark.parametrize("lead", ["recipe.yaml", "--config recipe.yaml"])
def test_a_config_file_with_flags_that_override_it(tmp_path, lead):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("backbone: resnet-small\nimage_size: 96\nnum_epochs: 8\n")
    argv = [
        *lead.replace("recipe.yaml", str(recipe)).split(),
        "--num_epochs",
        "3",
        "--resume_from_checkpoint",
        "latest",
    ]
    args = train.parse_args(argv)
    assert (args.backbone, args.image_size, args.num_epochs) == ("resnet-small", 96, 3)
    assert args.resume_from_checkpoint == "latest"


def test_cached_backbone_features_are_the_backbones_features_of_each_view(tiny_model):
    from dataset_scripts.feature_cache import CachedFeatureDataset, compute_backbone_features

    class Views(torch.utils.data.Dataset):  # an AugmentedDataset stand-in: view v of image i is pixels[i] + v
        def __init__(self):
            self.pixels, self.epoch = torch.randn(5, 3, 64, 64), 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return len(self.pixels)

        def __getitem__(self, index):
            return {"pixel_values": self.pixels[index] + self.epoch, "labels": index % 2}

    views = Views()
    features = compute_backbone_features(tiny_model, views, views=2, batch_size=2, progress=False)
    assert features.shape == (5, 2, tiny_model.backbone.num_features) and views.epoch == 0
    with torch.no_grad():
        for view in range(2):
            expected = tiny_model(views.pixels + view).pooler_output
            torch.testing.assert_close(features[:, view].float(), expected, rtol=2e-3, atol=2e-3)  # stored as fp16
            # The head on cached features gives the embeddings of the images.
            torch.testing.assert_close(
                tiny_model(pooled_features=features[:, view].float()).embeddings,
                tiny_model(views.pixels + view).embeddings,
                rtol=0,
                atol=5e-3,
            )
    dataset = CachedFeatureDataset(features, [0, 1, 0, 1, 0], seed=3)
    drawn = {epoch: [] for epoch in range(8)}
    for epoch in drawn:
        dataset.set_epoch(epoch)
        drawn[epoch] = [dataset[i]["pooled_features"] for i in range(5)]
    dataset.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(drawn[0], [dataset[i]["pooled_features"] for i in range(5)]))
    used = {(i, int(torch.equal(drawn[e][i], features[i, 1].float()))) for e in drawn for i in range(5)}
    assert len(used) == 10  # over 8 epochs every image served both views
    with pytest.raises(ValueError, match="pixel_values or pooled_features"):
        tiny_model()


def test_the_frozen_phase_trains_on_cached_features_until_unfreezing(data_dir, tmp_path, monkeypatch):
    calls = {"backbone": 0, "cached": 0}
    original = LogoEmbeddingModel.forward

    def counting_forward(self, pixel_values=None, return_dict=None, pooled_features=None, **kwargs):
        if self.training:
            calls["cached" if pooled_features is not None else "backbone"] += 1
        return original(self, pixel_values, return_dict, pooled_features, **kwargs)

    monkeypatch.setattr(LogoEmbeddingModel, "forward", counting_forward)
    args = quick_args(
        data_dir,
        tmp_path / "run",
        tmp_path / "cache",
        "--num_epochs",
        "3",
        "--max_steps_per_epoch",
        "2",
        "--unfreeze",
        "layer4:2",
        "--freeze_other_stages",
        "true",
        "--frozen_feature_views",
        "2",
    )
    state = train.main(args)
    assert state.epoch == 3
    assert calls == {"cached": 4, "backbone": 2}  # epochs 0-1 on the cache, epoch 2 (layer4 unfrozen) on images


def test_validation_sample_validates_each_epoch_on_the_same_sample(data_dir, tmp_path, monkeypatch):
    validated = []
    original = train.embed_split

    def recording_embed_split(model, processor, dataset, **kwargs):
        validated.append([(source, tuple(box)) for source, box in zip(dataset["source"], dataset["bbox"])])
        return original(model, processor, dataset, **kwargs)

    monkeypatch.setattr(train, "embed_split", recording_embed_split)
    args = quick_args(
        data_dir,
        tmp_path / "run",
        tmp_path / "cache",
        "--num_epochs",
        "2",
        "--max_steps_per_epoch",
        "1",
        "--validation_sample",
        "3",
        "--train_sample",
        "0",
    )
    train.main(args)
    assert len(validated) == 2 and len(validated[0]) == 3  # of 5: per epoch the sample, no training sample
    assert validated[0] == validated[1]


def test_box_jitter_trains_on_jittered_views_of_crops_with_more_context(data_dir, tmp_path, monkeypatch):
    built = []
    original = train.AugmentedDataset

    def recording_dataset(dataset, transform, **kwargs):
        built.append((dataset, transform))
        return original(dataset, transform, **kwargs)

    monkeypatch.setattr(train, "AugmentedDataset", recording_dataset)
    cache = tmp_path / "cache"
    args = quick_args(
        data_dir, tmp_path / "run", cache, "--num_epochs", "1", "--max_steps_per_epoch", "1", "--box_jitter", "0.2"
    )
    state = train.main(args)
    assert state.global_step == 1
    (rows, transform), usual = built[0], load_logodet3k(data_dir, "crops", cache_dir=cache, split_scheme="brands")
    assert transform.box_jitter == 0.2 and rows["source"] == usual["train"]["source"]
    for wide, crop in zip(rows, usual["train"]):  # more context around the same boxes, at the same resolution
        again = crop_box(wide["image"], wide["crop_bbox"])
        assert abs(again.width - crop["image"].width) <= 2 and abs(again.height - crop["image"].height) <= 2
        assert wide["image"].width > crop["image"].width or wide["image"].height > crop["image"].height
    assert '"box_jitter": 0.2' in (tmp_path / "run" / "README.md").read_text(encoding="utf-8")  # the card's recipe


def test_eval_on_start_records_the_starting_point_as_epoch_minus_one(data_dir, tmp_path):
    output = tmp_path / "run"
    args = quick_args(
        data_dir,
        output,
        tmp_path / "cache",
        "--num_epochs",
        "1",
        "--max_steps_per_epoch",
        "1",
        "--eval_on_start",
        "true",
    )
    state = train.main(args)
    assert [row["epoch"] for row in state.history] == [-1, 0]
    assert "retrieval_mAP" in state.history[0] and "train_loss" not in state.history[0]
    # the starting point is a candidate for the saved model like any epoch: the better one (the first on a tie) wins
    scores = [row["retrieval_mAP"] for row in state.history]
    assert state.best_epoch == (-1 if scores[0] >= scores[1] else 0)
    assert (output / "metrics.csv").read_text().splitlines()[1].startswith("-1,0,")


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_recipes_parse(recipe, data_dir):
    # The recipes' data may not be generated here: both data paths point at the test's tree.
    args = train.parse_args([str(recipe), "--data_dir", str(data_dir), "--out_of_world_dir", str(data_dir)])
    assert args.output_dir.startswith("runs/")
    if "paper" in recipe.name:  # the frozen phase runs on cached features
        assert args.frozen_feature_views > 0 and args.freeze_other_stages and args.unfreeze == "layer4:15"


def test_bf16_mixed_precision_trains_with_finite_losses(data_dir, tmp_path):
    """Under bf16 autocast (emulated on CPUs without AVX512-BF16, so only two steps), the model's outputs reach the
    metric-learning loss in fp32 and the losses stay finite. A subprocess: Accelerate fixes the precision once per
    process."""
    output = tmp_path / "bf16"
    argv = quick_args(data_dir, output, tmp_path / "cache", "--num_epochs", "1", "--max_steps_per_epoch", "2")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *argv, "--mixed_precision", "bf16"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 process(es) on cpu (NO), mixed precision: bf16" in result.stdout
    (row,) = json.loads((output / "training_state.json").read_text())["history"]
    assert all(math.isfinite(row[key]) for key in ("train_loss", "loss", "retrieval_mAP")), row


@pytest.mark.parametrize(
    ("loss_name", "miner_name", "gathered"),
    [
        ("triplet", "semi-hard", True),
        ("multi-similarity", "multi-similarity", True),
        ("triplet", "collator", False),
        ("contrastive", "collator", False),
        ("normalized-softmax", "none", False),
    ],
)
def test_which_criteria_see_every_process_embeddings(loss_name, miner_name, gathered):
    """Mined pair and triplet losses are gathered across processes; the collator's pairs index one process's batch
    and proxy losses are means over examples, so DDP's gradient averaging already gives the global batch's loss."""
    from types import SimpleNamespace

    loss_fn = build_loss(loss_name, num_classes=4, embedding_size=16)
    miner = build_miner(miner_name, loss_name)
    arguments = SimpleNamespace(loss=loss_name, miner=miner_name)
    train_loss_fn, _ = train.gathered_criterion(loss_fn, miner, arguments, num_processes=2)
    assert (train_loss_fn is not loss_fn) == gathered
    assert train.gathered_criterion(loss_fn, miner, arguments, num_processes=1)[0] is loss_fn


def test_init_from_rejects_flags_it_would_ignore_and_keeps_the_saved_processor(tiny_model, tmp_path):
    from modeling_logo import LogoImageProcessor

    tiny_model.save_pretrained(tmp_path / "saved")
    saved_processor = LogoImageProcessor.from_model_config(tiny_model.config)
    saved_processor.image_mean = [0.5, 0.5, 0.5]  # differs from what the config alone would give
    saved_processor.save_pretrained(tmp_path / "saved")
    size = tiny_model.config.image_size
    model, processor = train.build_model(train.parse_args(["--init_from", str(tmp_path / "saved")]))
    assert model.config.image_size == size and list(processor.image_mean) == [0.5, 0.5, 0.5]
    # The model's own values, or flags left at their defaults, are fine; other values are an error naming them.
    train.build_model(train.parse_args(["--init_from", str(tmp_path / "saved"), "--image_size", str(size)]))
    with pytest.raises(ValueError, match=r"--image_size 200 \(the model has") as error:
        train.build_model(train.parse_args(["--init_from", str(tmp_path / "saved"), "--image_size", "200"]))
    assert "--backbone" not in str(error.value)
    with pytest.raises(ValueError, match="--pretrained_backbone"):
        train.build_model(train.parse_args(["--init_from", str(tmp_path / "saved"), "--pretrained_backbone", "x.pt"]))


def test_too_few_brands_for_p_names_the_flag_and_resume_latest_without_checkpoints_says_so(data_dir, tmp_path, caplog):
    with pytest.raises(ValueError, match="--brands_per_batch"):
        train.main(quick_args(data_dir, tmp_path / "run", tmp_path / "cache", "--brands_per_batch", "64"))
    args = train.parse_args(["--output_dir", str(tmp_path / "empty"), "--resume_from_checkpoint", "latest"])
    with caplog.at_level("WARNING", logger="train"):
        assert train.latest_checkpoint(args) is None
    assert "starts from the beginning" in caplog.text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data_dir", "no-such-dir"], "--data_dir 'no-such-dir': no such folder"),
        (["--data_dir", "."], "--data_dir '.': no annotated image in the LogoDet-3K layout"),
        (["--init_from", "./no-such-model"], "--init_from ./no-such-model: no such file or directory."),
        (["--loss", "arcface"], "--loss must be one of"),
        (["no-such-recipe.yaml"], "--config no-such-recipe.yaml: no such file."),
        (["--resume_from_checkpoint", "runs/nothing"], "no such checkpoint folder"),
        (["--box_jitter", "0.7"], "--box_jitter must be in [0, 0.5]"),
        (["--box_jitter", "0.2", "--builder_config", "images"], "it needs --builder_config crops"),
    ],
)
def test_argument_mistakes_are_one_line_and_exit_status_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv)
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and last_line.startswith("train.py: error: ") and message in last_line


def test_usage_errors_found_after_parsing_are_one_line_too(data_dir, tmp_path):
    """Flags that contradict the data (P above the brand count) exit with one line, not a traceback."""
    argv = quick_args(data_dir, tmp_path / "run", tmp_path / "cache", "--brands_per_batch", "64")
    result = subprocess.run(
        [sys.executable, str(Path(train.__file__)), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("train.py: error: ")
    assert "--brands_per_batch" in result.stderr.strip().splitlines()[-1]


def test_a_config_files_paths_can_be_overridden_by_flags(data_dir, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data_dir: data/not-on-this-machine\nnum_epochs: 2\n")
    args = train.parse_args([str(recipe), "--data_dir", str(data_dir)])
    assert args.data_dir == str(data_dir) and args.num_epochs == 2


def test_the_model_it_starts_from_stays_the_best_unless_an_epoch_beats_it(data_dir, tmp_path, monkeypatch):
    """With --init_from, the validation before training is a candidate for the best model like any epoch: when no
    epoch beats it (here: validation made to say so), the saved model is the one it started from."""
    from safetensors.torch import load_file

    start = tmp_path / "start"
    torch.manual_seed(0)
    LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64)).save_pretrained(start)
    real_validate, scores = train.validate, iter([0.9, 0.2, 0.3])
    monkeypatch.setattr(train, "validate", lambda *a, **k: {**real_validate(*a, **k), "retrieval_mAP": next(scores)})
    output = tmp_path / "run"
    state = train.main(
        quick_args(data_dir, output, tmp_path / "cache", "--num_epochs", "2", "--init_from", str(start))
    )
    assert [row["epoch"] for row in state.history] == [-1, 0, 1] and state.best_epoch == -1
    saved, started = load_file(output / "model.safetensors"), load_file(start / "model.safetensors")
    assert saved.keys() == started.keys() and all(torch.equal(saved[k], started[k]) for k in saved)
    assert "before training: no epoch beat the model it started from" in (output / "README.md").read_text()


@pytest.mark.parametrize("out_of_world_dir", ["auto", "none"])
def test_the_shipped_checkpoint_is_found_from_another_folder(out_of_world_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where checkpoints/ is not
    args = train.EmbeddingTrainingArguments(out_of_world_dir=out_of_world_dir)
    assert Path(args.init_from) == ROOT / train.SHIPPED_CHECKPOINT and Path(args.init_from).is_dir()
    assert args.out_of_world_dir == (None if out_of_world_dir == "none" else "auto")
