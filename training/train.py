r"""Train SynSeg (MCCL on image-caption pairs) from a YAML config with optional key=value overrides.

Examples:
    python training/train.py --config training/configs/cc12m_vitb16.yaml data.path=/data/cc12m/{00000..01242}.tar
    python training/train.py --config training/configs/tiny.yaml output_dir=runs/tiny optim.lr=3e-4 --resume
    torchrun --standalone --nproc_per_node 4 training/train.py --config training/configs/cc12m_vitb16.yaml
    python training/train.py --config training/configs/cc12m_vitb16.yaml --stop-at 5000   # then --resume

    python training/train.py --config training/configs/tiny.yaml eval.every=20 eval.dataset=custom \
        eval.data_root=data/val eval.classes=data/val/classes.txt eval.background_first=true   # validate

Multi-node runs (torchrun rendezvous) are described in synseg_core/training/distributed.py.
The run folder holds metrics.jsonl and TensorBoard event files (tensorboard --logdir OUTPUT_DIR), run.json (command,
git commit, package versions, device), skipped.jsonl (every skipped sample, named), checkpoints/step_<N>/ and,
with validation, checkpoints/best/.
Exit status: 0 done, 1 training stopped (non-finite losses or weights), 2 bad config, data (none usable, or more
skipped than runtime.max_skip_ratio), validation set, checkpoint, or an output folder that cannot be written.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from synseg_core.config import ConfigError
from synseg_core.model.checkpoint import CheckpointError
from synseg_core.outputs import OutputError, describe_os_error
from synseg_core.training import DataError, TrainingError, load_train_config, run_training
from synseg_core.training.distributed import env_dist_info


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training YAML (see training/configs/)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="stop after this step with a checkpoint (the schedule still spans schedule.max_steps); "
                        "continue later with --resume")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. optim.lr=3e-4 loader.batch_size=32 "
                        "model.overrides.loss.area_weight=0.1")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = [sys.argv[0] if argv is None else __file__, *(sys.argv[1:] if argv is None else argv)]
    is_main = env_dist_info().is_main
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_train_config(args.config, args.overrides)
        summary = run_training(cfg, resume=args.resume, stop_at=args.stop_at, argv=command)
    except (ConfigError, CheckpointError, OutputError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # any other I/O failure (e.g. a log write on a full disk): said plainly, no traceback
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"training stopped: {exc}", file=sys.stderr)
        return 1
    if is_main:
        print(f"done: {summary.steps} steps, {summary.nonfinite_steps} non-finite steps skipped, skipped samples "
              f"{ {k: v for k, v in summary.skipped.items() if v} }, last checkpoint {summary.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
