"""Evaluation harness: benchmark metadata, dataset readers, dataset-level mIoU, PAMR, the MaskCLIP baseline,
the evaluator and its reports. ``training/evaluate.py`` is the command line over it."""
from synseg_core.evaluation.benchmarks import BenchmarkSpec, DatasetLayout, list_benchmarks, load_benchmark
from synseg_core.evaluation.datasets import SegmentationDataset, build_dataset, list_datasets
from synseg_core.evaluation.evaluator import EvalSettings, EvaluationReport, evaluate_dataset, run_evaluation
from synseg_core.evaluation.maskclip import MaskClipBackend
from synseg_core.evaluation.metrics import ConfusionMatrix, SegmentationMetrics
from synseg_core.evaluation.pamr import PAMRConfig, pamr_refine
from synseg_core.evaluation.reporting import write_report

__all__ = [
    "BenchmarkSpec", "ConfusionMatrix", "DatasetLayout", "EvalSettings", "EvaluationReport", "MaskClipBackend",
    "PAMRConfig", "SegmentationDataset", "SegmentationMetrics", "build_dataset", "evaluate_dataset",
    "list_benchmarks", "list_datasets", "load_benchmark", "pamr_refine", "run_evaluation", "write_report",
]
