"""Serving several streams with one model: the batching scheduler and the CPU thread split."""
