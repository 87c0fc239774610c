"""Loss curves from `metrics.jsonl` to a PNG: one panel per MCCL term, the learning rates, and evaluation metrics."""
from __future__ import annotations

from pathlib import Path

from ..outputs import atomic_write
from .metrics import read_metrics

PLOT_NAME = "loss_curves.png"
TERMS = ("total", "align", "cont", "back", "sep", "area", "absent")
PANEL_INCHES = (4.0, 3.0)
COLUMNS = 3
DPI = 100


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key`, the last record winning where a step repeats (a resumed run)."""
    by_step = {r["step"]: r[key] for r in records if isinstance(r.get(key), (int, float))}
    steps = sorted(by_step)
    return steps, [float(by_step[s]) for s in steps]


def plot_metrics(metrics_path: str | Path, out_path: str | Path) -> Path:
    """Draw the training curves of a metrics file.

    Terms that stay at zero (extensions that are off) are left out.

    Raises:
        FileNotFoundError: no metrics file.
        ValueError: it has no "train" records.
        OutputError: the PNG cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display is needed (or available on training machines)
    import matplotlib.pyplot as plt

    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        raise FileNotFoundError(f"metrics file not found: {metrics_path}")
    records = list(read_metrics(metrics_path))
    train = [r for r in records if r.get("type") == "train"]
    if not train:
        raise ValueError(f"{metrics_path} holds no 'train' records to plot")
    evals = [r for r in records if r.get("type") == "eval"]
    panels: list[tuple[str, list[tuple[str, list[int], list[float]]]]] = []
    for term in TERMS:
        steps, values = _series(train, term)
        if values and any(values):
            panels.append((f"loss: {term}", [(term, steps, values)]))
    lr_keys = sorted(k for k in train[-1] if k.startswith("lr_"))
    panels.append(("learning rate", [(k.removeprefix("lr_"), *_series(train, k)) for k in lr_keys]))
    eval_keys = sorted({k for r in evals for k, v in r.items()
                        if isinstance(v, (int, float)) and k not in ("step", "time")})
    if eval_keys:
        panels.append(("evaluation", [(k, *_series(evals, k)) for k in eval_keys]))

    rows = -(-len(panels) // COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(PANEL_INCHES[0] * COLUMNS, PANEL_INCHES[1] * rows),
                             squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels):
        for label, steps, values in lines:
            ax.plot(steps, values, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(lines) > 1:
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    try:
        return atomic_write(out_path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    finally:
        plt.close(fig)
