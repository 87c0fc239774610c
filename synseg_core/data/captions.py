"""Map-style caption datasets: a JSONL manifest and COCO-captions JSON.

Items are `CaptionSample` or, for a record that cannot be used, a `SkippedSample` marker (dropped and counted by
the collate function). An index is an int, or an ``(epoch, index)`` pair as `ResumableDistributedSampler`
yields it: the epoch seeds the crop and the random category selection, so resuming at a sample position
reproduces the same samples.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .records import check_file, coco_image_files, coco_record, parse_manifest_line, read_coco_captions
from .samples import CaptionRecord, CaptionSample, SampleBuilder
from .skips import SkippedSample

SampleIndex = int | tuple[int, int]


class _MapCaptionDataset(Dataset):
    """Shared indexing, epoch handling and the up-front image-path probe."""

    def __init__(self, builder: SampleBuilder, name: str) -> None:
        self.builder = builder
        self.name = name
        self.epoch = 0

    def _record(self, index: int) -> CaptionRecord | SkippedSample:
        raise NotImplementedError

    def source_of(self, index: int) -> str:
        """Where record `index` is, for skip reports."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain int indices (an ``(epoch, index)`` index carries its own)."""
        self.epoch = epoch

    def __getitem__(self, item: SampleIndex) -> CaptionSample | SkippedSample:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} with {len(self)} samples")
        record = self._record(index)
        item = record if isinstance(record, SkippedSample) else self.builder(record, epoch)
        if isinstance(item, SkippedSample):
            item = dataclasses.replace(item, source=self.source_of(index))
        return item

    def probe_images(self, count: int) -> None:
        """Fail early when none of the first `count` records' images exist (a wrong image root, most likely).

        Raises:
            FileNotFoundError: naming the first missing path.
        """
        paths = [r.image for r in map(self._record, range(min(count, len(self))))
                 if isinstance(r, CaptionRecord) and isinstance(r.image, Path)]
        if paths and not any(p.is_file() for p in paths):
            raise FileNotFoundError(f"{self.name}: none of the first {len(paths)} images exist (first: {paths[0]}); "
                                    "check the image paths / image root")


class JsonlCaptionDataset(_MapCaptionDataset):
    """A JSONL manifest, one ``{"image": path, "caption": str, "categories": [optional]}`` object a line.

    Only line offsets and numbers are kept in memory (12 bytes a sample), so manifests of millions of lines are
    fine; lines are parsed when read, and a bad line becomes a ``bad_record`` skip naming its line number.

    Args:
        path: the manifest; relative image paths resolve against its folder.
        builder: turns records into samples.
        probe_files: how many leading records' images are checked to exist up front (0 = no check).

    Raises:
        FileNotFoundError: no manifest, or none of the probed images exist.
        ValueError: the manifest has no samples.
    """

    def __init__(self, path: str | Path, builder: SampleBuilder, probe_files: int = 16) -> None:
        self.path = check_file(path, "caption manifest").resolve()
        super().__init__(builder, f"manifest {self.path}")
        starts, lengths, numbers, offset = [], [], [], 0
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    starts.append(offset)
                    lengths.append(len(line))
                    numbers.append(number)
                offset += len(line)
        if not starts:
            raise ValueError(f"caption manifest {self.path} contains no samples (an empty dataset)")
        self._starts = np.asarray(starts, dtype=np.int64)
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._line_numbers = np.asarray(numbers, dtype=np.int32)
        if probe_files:
            self.probe_images(probe_files)

    def __len__(self) -> int:
        return len(self._starts)

    def _record(self, index: int) -> CaptionRecord | SkippedSample:
        # Opened per read: cheap next to decoding an image, and safe in forked DataLoader workers.
        with self.path.open("rb") as f:
            f.seek(int(self._starts[index]))
            line = f.read(int(self._lengths[index]))
        return parse_manifest_line(line, str(index), self.path.parent)

    def source_of(self, index: int) -> str:
        return f"{self.path}:{int(self._line_numbers[index])}"


class CocoCaptionDataset(_MapCaptionDataset):
    """COCO-captions JSON: one sample per caption annotation (an image with 5 captions gives 5 samples).

    Args:
        path: the captions JSON (``annotations`` with image_id + caption [+ categories], ``images`` with
            file_name).
        image_root: folder the file names resolve against.
        builder: turns records into samples.
        probe_files: how many leading records' images are checked to exist up front (0 = no check).

    Raises:
        FileNotFoundError: no JSON, no image root, or none of the probed images exist.
        ValueError: not COCO-captions layout, or no annotations.
    """

    def __init__(self, path: str | Path, image_root: str | Path, builder: SampleBuilder,
                 probe_files: int = 16) -> None:
        data = read_coco_captions(path)
        self.image_root = Path(image_root)
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"COCO image root not found: {self.image_root}")
        super().__init__(builder, f"COCO captions {path}")
        self.path = Path(path)
        self._annotations = data["annotations"]
        self._files = coco_image_files(data)
        if probe_files:
            self.probe_images(probe_files)

    def __len__(self) -> int:
        return len(self._annotations)

    def _record(self, index: int) -> CaptionRecord | SkippedSample:
        return coco_record(self._annotations[index], index, self._files, self.image_root)

    def source_of(self, index: int) -> str:
        return f"{self.path} annotations[{index}]"
