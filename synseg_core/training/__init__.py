"""The SynSeg training engine: config, optimiser and schedule, the resumable AMP/DDP loop, validation with the
evaluation harness (best checkpoint), metrics with TensorBoard events, and plots.

`python training/train.py --config training/configs/NAME.yaml [key=value ...] [--resume]` is the command line;
`run_training(load_train_config(path, overrides))` does the same from Python.
"""
from .config import TrainConfig, load_train_config
from .plot import plot_metrics
from .records import DataError, TrainingError, TrainSummary
from .run import run_training
from .trainer import EvalHook, Trainer
from .validation import EvalOutcome, Validation

__all__ = ["DataError", "EvalHook", "EvalOutcome", "TrainConfig", "Trainer", "TrainSummary", "TrainingError",
           "Validation", "load_train_config", "plot_metrics", "run_training"]
