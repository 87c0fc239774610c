"""Pretrained models by name: fetch the registry's files with huggingface_hub (its cache, resume and progress bars),
convert them into a self-contained synseg checkpoint and keep that in the model folder.

The model folder is `$SYNSEG_MODEL_DIR` or `~/.cache/synseg/models`; each model lives in `<folder>/<name>/`. A
conversion is written under a temporary name and renamed into place, under a file lock, so the folder never holds
a half-written model; huggingface_hub downloads into `.incomplete` files of its own cache the same way.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from filelock import FileLock

from ..outputs import atomic_write_dir, recover_dir
from .checkpoint import CONFIG_NAME, CheckpointError, file_record, save_checkpoint
from .clipseg_import import read_state_dict
from .registry import PretrainedModel, get_pretrained

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "SYNSEG_MODEL_DIR"
DEFAULT_MODEL_DIR = "~/.cache/synseg/models"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class ModelUnavailableError(CheckpointError):
    """A named model is not in the model folder and cannot be downloaded here (offline, no cached files)."""


def model_dir(root: str | Path | None = None) -> Path:
    """The folder holding converted models: `root`, else $SYNSEG_MODEL_DIR, else ~/.cache/synseg/models."""
    return Path(root or os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR).expanduser()


def cached_model(name: str, root: str | Path | None = None) -> Path | None:
    """The converted model's folder when it is complete (its config.json exists), else None."""
    folder = model_dir(root) / name
    return folder if (folder / CONFIG_NAME).is_file() else None


def fetch_files(entry: PretrainedModel, *, endpoint: str | None = None,
                hf_cache: str | Path | None = None) -> tuple[dict[str, Path], str]:
    """Download (or find in the huggingface_hub cache) the entry's files.

    Returns:
        ({file name: local path}, the commit the revision resolved to).

    Raises:
        ModelUnavailableError: no connection (or HF_HUB_OFFLINE) and the files are not cached.
        CheckpointError: unknown repository, revision or file, or a failed transfer.
    """
    import httpx2  # huggingface_hub's HTTP client: a transfer that keeps failing raises its errors
    from huggingface_hub import hf_hub_download  # lazy: only fetching needs the hub client
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    paths = {}
    where = f"{entry.repo_id} (revision {entry.revision})"
    for name in entry.files:
        try:
            paths[name] = Path(hf_hub_download(entry.repo_id, name, revision=entry.revision, endpoint=endpoint,
                                               cache_dir=hf_cache))
        except LocalEntryNotFoundError as exc:
            raise ModelUnavailableError(f"cannot reach the hub for {name}, and it is not in the huggingface_hub "
                                        f"cache: {exc}") from exc
        except RepositoryNotFoundError as exc:
            raise CheckpointError(f"repository {entry.repo_id} not found on the hub (or private or gated); the "
                                  f"registry entry {entry.name!r} names it") from exc
        except RevisionNotFoundError as exc:
            raise CheckpointError(f"revision {entry.revision!r} not found in {entry.repo_id}") from exc
        except EntryNotFoundError as exc:
            raise CheckpointError(f"{where} has no file {name!r}; {entry.name!r} needs {list(entry.files)}") from exc
        except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:  # HTTP errors, cut transfers, a full disk
            raise CheckpointError(f"downloading {name} from {where} failed: {exc}") from exc
    commit = paths[entry.weights].parent.name  # the hub cache keeps files under snapshots/<commit>/
    return paths, commit if _COMMIT.match(commit) else entry.revision


def offline_message(entry: PretrainedModel, reason: str, root: str | Path | None = None) -> str:
    """What to do when a named model is neither converted here nor downloadable."""
    target = model_dir(root) / entry.name
    return (f"pretrained model {entry.name!r} is not in {target} and cannot be fetched here ({reason}). On a machine "
            f"with internet run `synseg-model download {entry.name} --out DIR`, then copy the folder "
            f"DIR/{entry.name} to {target} on this machine (or set `checkpoint` to the copied folder's path)")


def convert_files(entry: PretrainedModel, weights: str | Path, hf_config: str | Path | None, source: dict,
                  out: str | Path) -> Path:
    """Convert downloaded (or hand-copied) files into a synseg checkpoint at `out`, written atomically.

    Args:
        hf_config: the Hugging Face config.json; None = the converter's defaults (shapes come from the weights).
        source: where the files came from (repository, revision, commit or a local path), kept as provenance with
            the files' SHA-256 and the entry's licence note.

    Raises:
        CheckpointError: an unreadable, truncated or mismatched file (named in the message).
    """
    files = [Path(weights)] + ([Path(hf_config)] if hf_config is not None else [])
    try:
        config = json.loads(files[1].read_text()) if hf_config is not None else {}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {hf_config}: {exc}") from exc
    state = read_state_dict(weights)
    log.info("converting %s (%d tensors) into a synseg checkpoint", weights, len(state))
    model = entry.converter(state, config, entry.name, entry.inference)
    provenance = {"source": {**source, "files": {p.name: file_record(p) for p in files}},
                  "licence": entry.licence, "description": entry.description}
    return _write_atomically(model, Path(out), provenance)


def _write_atomically(model, out: Path, provenance: dict) -> Path:
    """save_checkpoint into a temporary sibling folder, then rename it to `out` (an incomplete or older folder is
    replaced whole, never merged), under a file lock against a second process converting the same model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f".{out.name}.lock")):
        recover_dir(out)
        return atomic_write_dir(out, lambda tmp: save_checkpoint(model, tmp, extra=provenance))


def download_pretrained(name: str | PretrainedModel, out: str | Path | None = None, *, force: bool = False,
                        endpoint: str | None = None, hf_cache: str | Path | None = None) -> Path:
    """Fetch and convert a registered model into `out`/<name> (default: the model folder); returns that folder.

    A model already converted there is kept as it is unless `force`."""
    entry = name if isinstance(name, PretrainedModel) else get_pretrained(name)
    found = cached_model(entry.name, out)
    if found is not None and not force:
        log.info("pretrained model %r is already converted in %s", entry.name, found)
        return found
    try:
        paths, commit = fetch_files(entry, endpoint=endpoint, hf_cache=hf_cache)
    except ModelUnavailableError as exc:
        raise ModelUnavailableError(offline_message(entry, str(exc), out)) from exc
    source = {"repo_id": entry.repo_id, "revision": entry.revision, "commit": commit}
    return convert_files(entry, paths[entry.weights], paths[entry.config_file], source, model_dir(out) / entry.name)


def resolve_pretrained(name: str, root: str | Path | None = None) -> Path:
    """The converted model's folder: from the model folder, or fetched and converted there on first use.

    Raises:
        ModelUnavailableError: not converted here and not downloadable (the message says what to run and copy).
    """
    found = cached_model(name, root)
    if found is not None:
        return found
    entry = get_pretrained(name)
    log.warning("pretrained model %r is not in %s yet: downloading %s from %s and converting it (first use; "
                "progress bars on stderr)", name, model_dir(root), "/".join(entry.files), entry.repo_id)
    folder = download_pretrained(entry, root)
    log.warning("pretrained model %r converted into %s", name, folder)
    return folder
