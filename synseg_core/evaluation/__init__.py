"""Evaluation harness: benchmark metadata, dataset readers, metrics, PAMR, the evaluator."""
