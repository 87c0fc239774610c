"""The SynSeg training engine: config, optimiser and schedule, the resumable AMP/DDP loop, metrics and plots.

`python training/train.py --config training/configs/NAME.yaml [key=value ...] [--resume]` is the command line;
`run_training(load_train_config(path, overrides))` does the same from Python.
"""
from .config import TrainConfig, load_train_config
from .plot import plot_metrics
from .run import run_training
from .trainer import EvalHook, Trainer, TrainingError, TrainSummary

__all__ = ["EvalHook", "TrainConfig", "Trainer", "TrainSummary", "TrainingError", "load_train_config",
           "plot_metrics", "run_training"]
