"""`train.py` as shipped, launched with `torchrun --nproc_per_node N`, plus one observer: after every epoch each
process writes its whole model (parameters and buffers) to `OUT_DIR/epoch_E-rank_R.safetensors` (and the model it
starts from to `OUT_DIR/start-rank_R.safetensors`), for
`tests/test_train_distributed.py` to compare across processes and epochs.

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_train.py OUT_DIR TRAIN_ARGS...
"""

import sys
from pathlib import Path

from safetensors.torch import save_file


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train
from modeling_logo.callbacks import TrainingCallback


class SaveEachProcessModel(TrainingCallback):
    def __init__(self, out_dir: Path, process_index: int):
        self.out_dir, self.process_index = out_dir, process_index

    def on_train_begin(self, state, model) -> None:
        self._save(model, "start")

    def on_epoch_end(self, state, model) -> None:
        self._save(model, f"epoch_{state.epoch}")

    def _save(self, model, name: str) -> None:
        weights = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
        save_file(weights, self.out_dir / f"{name}-rank_{self.process_index}.safetensors")


if __name__ == "__main__":
    from accelerate import PartialState

    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    observer = SaveEachProcessModel(out_dir, PartialState(cpu=not train.has_accelerator_device()).process_index)
    train.main(sys.argv[2:], callbacks=[observer])
