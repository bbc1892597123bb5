"""A few training steps of train.py's criterion on a fixed global batch, on one process or under
`accelerate launch --num_processes N`; writes the losses and final weights of each process for
`tests/test_train.py::test_two_processes_train_like_one_process_on_the_global_batch`.

    python tests/distributed_steps.py OUT_DIR LOSS [LOSS ...]
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator
from safetensors.torch import save_file


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train
from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel
from modeling_logo.losses import DEFAULT_MINERS, build_loss, build_miner


BRANDS, K, STEPS = 8, 2, 3  # global batch: 8 brands × 2 images


def global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same P×K batch for every process count: brand b's images share a colour offset."""
    generator = torch.Generator().manual_seed(step)
    labels = torch.arange(BRANDS).repeat_interleave(K)
    pixels = torch.randn(len(labels), 3, 32, 32, generator=generator) + labels[:, None, None, None] / BRANDS
    return pixels, labels


def run(loss_name: str, out_dir: Path) -> None:
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet-tiny", image_size=32))
    loss_fn = build_loss(loss_name, num_classes=BRANDS, embedding_size=model.config.embedding_size)
    miner = build_miner(DEFAULT_MINERS[loss_name], loss_name)
    loss_fn, miner = train.gathered_criterion(
        loss_fn, miner, SimpleNamespace(loss=loss_name, miner=DEFAULT_MINERS[loss_name]), accelerator.num_processes
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    # BatchNorm in eval mode: with train-mode statistics, N processes normalise over N smaller batches and could not
    # match one process on the global batch; gradients flow all the same.
    model.eval()
    share = len(global_batch(0)[1]) // accelerator.num_processes
    mine = slice(accelerator.process_index * share, (accelerator.process_index + 1) * share)
    losses = []
    for step in range(STEPS):
        pixels, labels = global_batch(step)
        embeddings = model(pixels[mine]).embeddings
        loss = loss_fn(embeddings, labels[mine], miner(embeddings, labels[mine]) if miner is not None else None)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        # The wrapper multiplies by the number of processes to undo DDP's gradient averaging: undo it in the report.
        losses.append(loss.item() / accelerator.num_processes)
    name = f"{loss_name}-{accelerator.num_processes}-{accelerator.process_index}"
    weights = {k: v.detach().contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    save_file(weights, out_dir / f"{name}.safetensors")
    (out_dir / f"{name}.json").write_text(json.dumps(losses))


if __name__ == "__main__":
    for loss_name in sys.argv[2:]:
        run(loss_name, Path(sys.argv[1]))
