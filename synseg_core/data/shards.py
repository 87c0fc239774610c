"""Webdataset tar shards in the img2dataset layout (``.jpg`` + ``.txt`` and/or ``.json`` with "caption").

Shards come from a brace pattern (``/data/cc12m/{00000..01242}.tar``), a list, a folder of ``*.tar`` or URLs
that webdataset opens (``https://...``, ``pipe:curl ...``). Ranks get disjoint shards through webdataset's
node splitter; workers split a rank's shards among themselves. Bad samples and unreadable shards come out as
`SkippedSample` markers, so the collate function counts them.

Resumption: the stream of every worker is deterministic (shard order and the sample shuffle buffer are
seeded by seed, epoch, rank and worker), and each raw record gives exactly one item. After B batches of size
N, worker w has produced the batches b < B with b % num_workers == w; `set_position` makes each worker skip
its share and rotates the worker roles by B, so the first resumed batch comes from the worker that would have
produced batch B. This needs the same number of DataLoader workers and the same batch size as before.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset.tariterators import tarfile_samples
from webdataset.utils import pytorch_worker_info

from .records import shard_record
from .samples import CaptionSample, SampleBuilder
from .skips import SkippedSample

log = logging.getLogger(__name__)

SHARD_SUFFIX = ".tar"
SIDECAR_SUFFIX = ".jsonl"
_ERROR = "__error__"
_EPOCH = "__epoch__"
_SIDECAR_CACHE_SHARDS = 8  # sidecars kept in memory per worker (the shuffle buffer can mix a few shards)


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def expand_shards(shards: str | Sequence[str]) -> list[str]:
    """Shard URLs of a brace pattern, a ``::``-separated list, a list, or a folder of ``*.tar``.

    Raises:
        ValueError: the pattern expands to nothing.
        FileNotFoundError: local shards (or the folder) that do not exist, the first few named.
    """
    if isinstance(shards, str) and _is_local(shards) and Path(shards).is_dir():
        urls = sorted(str(p) for p in Path(shards).glob(f"*{SHARD_SUFFIX}"))
        if not urls:
            raise ValueError(f"shard folder {shards} contains no *{SHARD_SUFFIX} files (an empty dataset)")
        return urls
    urls = wds.shardlists.expand_urls(shards) if isinstance(shards, str) else list(shards)
    if not urls:
        raise ValueError(f"shard specification {shards!r} names no shards (an empty dataset)")
    missing = [u for u in urls if _is_local(u) and not Path(u.removeprefix("file:")).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(urls)} shards not found, e.g. {missing[:3]}")
    return urls


def sidecar_path(categories_dir: str | Path, url: str) -> Path:
    """Where the precomputed categories of a shard live: ``<dir>/<shard name without .tar>.jsonl``."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return Path(categories_dir) / (name.removesuffix(SHARD_SUFFIX) + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> dict[str, list[str]] | None:
    """key -> categories from a sidecar file (lines ``{"key": ..., "categories": [...]}``); None if absent.

    Cached per worker for the last few shards; a rewritten file (new mtime) is read again.
    """
    try:
        modified = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return _read_sidecar(path, modified)


@functools.lru_cache(maxsize=_SIDECAR_CACHE_SHARDS)
def _read_sidecar(path: Path, modified: int) -> dict[str, list[str]]:
    table = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                table[entry["key"]] = entry["categories"]
    return table


def read_shard(url: str, select_files: Callable[[str], bool] | None = None) -> Iterator[dict[str, Any]]:
    """Raw webdataset samples of one shard (dicts of extension -> bytes, plus ``__key__`` and ``__url__``).

    A read error ends the shard with one ``{"__error__": exception, "__url__": url}`` record: after a broken
    tar member the rest of the stream cannot be trusted, and webdataset reports such a break more than once.

    Args:
        url: the shard.
        select_files: optional predicate on member names (e.g. skip the images when only text is needed).
    """
    errors: list[Exception] = []

    def stop(exc: Exception) -> bool:
        errors.append(exc)
        return False

    yield from tarfile_samples([{"url": url}], handler=stop, select_files=select_files)
    if errors:
        log.warning("unreadable shard data skipped in %s: %s", url, errors[0])
        yield {_ERROR: errors[0], "__url__": url}


def _shuffled(items: Iterable[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """A seeded shuffle buffer of `size` items (size <= 1 passes items through)."""
    if size <= 1:
        yield from items
        return
    buffer: list[dict] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


class WebCaptionDataset(IterableDataset):
    """Iterable caption dataset over webdataset shards.

    Args:
        shards: brace pattern, list, folder of tars, or URLs (see `expand_shards`).
        builder: turns records into samples.
        categories_dir: folder of per-shard sidecars written by ``training/extract_categories.py``; shards
            without a sidecar (and keys missing from one) fall back to extraction on the fly.
        shuffle_shards: reshuffle the shard order every epoch (seeded).
        shuffle_buffer: sample shuffle buffer per worker (0 = off).
        seed: seed of all shuffling and of per-sample randomness.
        repeat: run epoch after epoch without end (use with a step-count training loop; DDP ranks then never
            run out at different times).
        nodesplitter: how ranks split the shard list (webdataset's ``split_by_node`` reads RANK/WORLD_SIZE or
            torch.distributed).
        probe: read the first record up front, so a dataset without samples fails before training.

    Raises:
        FileNotFoundError: missing local shards or categories folder.
        ValueError: no shards, or no readable sample in any local shard.
    """

    def __init__(self, shards: str | Sequence[str], builder: SampleBuilder, *,
                 categories_dir: str | Path | None = None, shuffle_shards: bool = True, shuffle_buffer: int = 0,
                 seed: int = 0, repeat: bool = False,
                 nodesplitter: Callable[[Iterable[str]], Iterable[str]] = wds.split_by_node,
                 probe: bool = True) -> None:
        super().__init__()
        self.urls = expand_shards(shards)
        self.builder = builder
        self.categories_dir = Path(categories_dir) if categories_dir is not None else None
        if self.categories_dir is not None:
            if not self.categories_dir.is_dir():
                raise FileNotFoundError(f"categories folder not found: {self.categories_dir}")
            without = [u for u in self.urls if not sidecar_path(self.categories_dir, u).is_file()]
            if without:
                log.warning("%d of %d shards have no sidecar in %s (e.g. %s); their categories are extracted on "
                            "the fly", len(without), len(self.urls), self.categories_dir, without[0])
        self.shuffle_shards = shuffle_shards
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.repeat = repeat
        self.nodesplitter = nodesplitter
        self.epoch = 0
        self.batches_consumed = 0
        self.batch_size = 1
        if probe:
            self._probe()

    def _probe(self) -> None:
        local = [u for u in self.urls if _is_local(u)]
        samples = (s for url in local for s in read_shard(url) if _ERROR not in s)
        if local and next(samples, None) is None:
            raise ValueError(f"no readable sample in any of the {len(local)} local shards, e.g. {local[:3]} "
                             "(an empty dataset)")

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning."""
        self.set_position(epoch, 0, 1)

    def set_position(self, epoch: int, batches_consumed: int, batch_size: int) -> None:
        """Resume after this rank has consumed `batches_consumed` batches of `batch_size` items since the start
        of `epoch` (with ``repeat``, `epoch` is where the endless stream started, usually 0).

        Raises:
            ValueError: negative position or non-positive batch size.
        """
        if batches_consumed < 0 or batch_size < 1:
            raise ValueError(f"need batches_consumed >= 0 and batch_size >= 1, got {batches_consumed}, {batch_size}")
        self.epoch, self.batches_consumed, self.batch_size = epoch, batches_consumed, batch_size

    def check_workers(self, num_workers: int) -> None:
        """Fail before training when this rank has fewer shards than DataLoader workers (0 = the main process).

        Raises:
            ValueError: some worker would get no shard.
        """
        workers = max(num_workers, 1)
        self._worker_shards(self.epoch, workers - 1, workers)  # the last worker gets the fewest shards

    def _worker_shards(self, epoch: int, role: int, num_workers: int) -> list[str]:
        urls = list(self.urls)
        if self.shuffle_shards:
            random.Random(f"{self.seed}:{epoch}").shuffle(urls)  # the same order on every rank
        mine = list(self.nodesplitter(urls))[role::num_workers]
        if not mine:
            raise ValueError(f"{len(self.urls)} shards are too few for this rank's {num_workers} DataLoader "
                             "workers (some would get none); use fewer workers or more shards")
        return mine

    def _raw_stream(self, role: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """Raw samples (and read-error records) of this worker, epoch after epoch when repeating."""
        epoch = self.epoch
        while True:
            shards = self._worker_shards(epoch, role, num_workers)
            produced = 0
            for url in shards:
                for sample in read_shard(url):
                    produced += _ERROR not in sample
                    yield {**sample, _EPOCH: epoch}
            if not self.repeat:
                return
            if not produced:
                raise RuntimeError(f"shards {shards[:3]}... gave no sample in epoch {epoch}; stopping rather than "
                                   "repeating an empty stream forever")
            epoch += 1

    def _to_item(self, raw: dict[str, Any]) -> CaptionSample | SkippedSample:
        if _ERROR in raw:
            return SkippedSample("corrupt_shard", raw["__url__"], str(raw[_ERROR]), source=raw["__url__"])
        sidecar = read_sidecar(sidecar_path(self.categories_dir, raw["__url__"])) if self.categories_dir else None
        record = shard_record(raw, sidecar)
        item = record if isinstance(record, SkippedSample) else self.builder(record, raw[_EPOCH])
        if isinstance(item, SkippedSample):
            item = dataclasses.replace(item, source=f"{raw['__url__']} {raw['__key__']}")
        return item

    def __iter__(self) -> Iterator[CaptionSample | SkippedSample]:
        rank, _, worker, num_workers = pytorch_worker_info()
        role = (worker + self.batches_consumed) % num_workers
        done_by_role = max(0, -(-(self.batches_consumed - role) // num_workers))  # batches b < B with b % nw == role
        rng = random.Random(f"{self.seed}:{self.epoch}:{rank}:{role}")
        stream = _shuffled(self._raw_stream(role, num_workers), self.shuffle_buffer, rng)
        for raw in islice(stream, done_by_role * self.batch_size, None):
            yield self._to_item(raw)
