"""An endless, resumable stream of training batches: epochs roll over, and the position (epoch, batches consumed
in it) is what a checkpoint stores so that `--resume` continues with the very next batch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..data import CaptionBatch, CaptionLoader


@dataclass
class DataPosition:
    """Where the stream is: `batches` batches of `epoch` have been handed to the trainer."""

    epoch: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.batches}


class BatchStream:
    """Batches epoch after epoch from a `CaptionLoader`, starting at `position`."""

    def __init__(self, loader: CaptionLoader, position: DataPosition | None = None):
        self.loader = loader
        self.position = position or DataPosition()

    def __iter__(self) -> Iterator[CaptionBatch]:
        empty_epochs = 0
        while True:
            self.loader.set_position(self.position.epoch, self.position.batches)
            produced = False
            for batch in self.loader:
                produced = True
                self.position.batches += 1
                yield batch
            # An epoch that gives nothing twice in a row (resumed at its end, then truly empty) would spin forever.
            empty_epochs = 0 if produced else empty_epochs + 1
            if empty_epochs > 1:
                raise RuntimeError("the caption dataset produced no batch in a whole epoch")
            self.position = DataPosition(self.position.epoch + 1, 0)
