"""The image path around a backend, for a batch of frames: up to the device once, windows through the backend in
shared batches, each group of same-size frames post-processed together, the requested outputs back once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import InferenceConfig, PreprocessConfig
from .postprocess import Outputs, postprocess
from .preprocess import WindowLayout, average_windows, frames_to_windows, model_input_size, run_windows
from .transfer import frames_to_device, to_host
from .workspace import Workspace, scratch

Run = Callable[[torch.Tensor], torch.Tensor]  # windows [n, 3, w, w] -> probabilities [n, K, w, w]


@dataclass
class GroupMaps:
    """Probabilities of a group of same-size frames at the model's resolution."""

    members: list[int]  # positions of the group's frames in the batch
    size: tuple[int, int]  # the frames' (H, W)
    maps: torch.Tensor  # [N, K, h, w]


def window_maps(images: Sequence[np.ndarray], run: Run, pre: PreprocessConfig, cfg: InferenceConfig, multiple: int,
                device: torch.device, max_batch: int | None, workspace: Workspace | None = None) -> list[GroupMaps]:
    """Frames (validated HxWx3 uint8) -> per group, the mean of its windows' probabilities; every window of the batch
    is cut into one buffer and goes through `run` in batches of at most `max_batch`. The maps may live in
    `workspace`: valid until the thread's next call."""
    groups = frames_to_device(images, device)
    layouts = [WindowLayout.plan(model_input_size(frames.shape[1], frames.shape[2], cfg, multiple), cfg.window,
                                 cfg.stride) for _, frames in groups]
    counts = [len(frames) * len(layout.boxes) for (_, frames), layout in zip(groups, layouts)]
    windows = scratch(workspace, "windows", (sum(counts), 3, *layouts[0].window), torch.float32, device)
    start = 0
    for g, ((_, frames), layout, count) in enumerate(zip(groups, layouts, counts)):
        frames_to_windows(frames, layout, pre, windows[start:start + count], workspace, g)
        start += count
    probs = run_windows(windows, run, max_batch)
    maps, start = [], 0
    for g, ((members, frames), layout, count) in enumerate(zip(groups, layouts, counts)):
        averaged = average_windows(probs[start:start + count], len(members), layout, workspace, g)
        maps.append(GroupMaps(members, (frames.shape[1], frames.shape[2]), averaged))
        start += count
    return maps


def batch_outputs(groups: Sequence[GroupMaps], background_threshold: float | None, mask_threshold: float,
                  outputs: Outputs, workspace: Workspace | None = None) -> list[dict[str, np.ndarray]]:
    """Per frame (in batch order), the requested outputs as host arrays; all of them come back in one transfer."""
    names = outputs.names()
    computed = [postprocess(group.maps, group.size, background_threshold, mask_threshold, outputs, workspace, g)
                for g, group in enumerate(groups)]
    arrays = iter(to_host([result[name] for result in computed for name in names]))
    per_frame: list[dict[str, np.ndarray]] = [{} for _ in range(sum(len(g.members) for g in groups))]
    for group in groups:
        values = {name: next(arrays) for name in names}
        if "labels" in values and values["labels"].dtype == np.int16:
            values["labels"] = values["labels"].view(np.uint16)  # compact labels above 255 categories
        for row, i in enumerate(group.members):
            per_frame[i] = {name: value[row] for name, value in values.items()}
    return per_frame
