"""Run by the DDP test under torchrun: train through `training_session`, then save THIS rank's trainable weights
(rank 0 alone writes checkpoints, so the test needs every rank's own copy to compare them).

    torchrun --nproc_per_node 2 ddp_driver.py CONFIG WEIGHTS_DIR NAN_STEP [key=value ...]

NAN_STEP > 0 makes the loss of that step NaN on rank 1 only (fault injection): every rank must skip it together.
"""
import logging
import sys
from pathlib import Path

from safetensors.torch import save_file

from synseg_core.training import step as step_module
from synseg_core.training import load_train_config
from synseg_core.training.distributed import env_dist_info
from synseg_core.training.run import training_session
from trainer_fixtures import nonfinite_loss


def main(argv: list[str]) -> int:
    config, weights_dir, nan_step, *overrides = argv
    logging.basicConfig(level=logging.INFO)
    if int(nan_step) > 0 and env_dist_info().rank == 1:
        step_module.synseg_loss = nonfinite_loss({int(nan_step)})
    cfg = load_train_config(config, overrides)
    with training_session(cfg) as trainer:
        trainer.fit()
        state = {k: v.detach().contiguous() for k, v in trainer.model.trainable_parameters().items()}
        save_file(state, str(Path(weights_dir) / f"rank{trainer.info.rank}.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
