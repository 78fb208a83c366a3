"""Checkpoints: weights-only ``.pt`` files with a JSON manifest, kept per model key.

Layout under a model directory::

    <model_dir>/<key>/<version>.pt     torch.save(state_dict) -- tensors only
    <model_dir>/<key>/<version>.json   manifest: configs, data window, metrics, sha256

``key`` is ``SYMBOL-TIMEFRAME-hH`` (e.g. ``EURUSD-1h-h24``); ``version`` starts with the
UTC creation time, so versions sort chronologically. Loading verifies the sha256 in the
manifest before reading, then reads with ``torch.load(weights_only=True)``, so a file
carrying pickled objects is refused even when its hash matches.

Retention keeps the newest ``keep`` versions of a key and never deletes a version the
caller's ``protected`` callback names: a model directory a worker serves from holds the
registry's versions (champion, challenger, rollback targets), which only the caller (the
CLI, the retraining jobs) can ask about.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from forex_diffusion.errors import ArtifactError, ConfigError

__all__ = [
    "MANIFEST_FORMAT",
    "CheckpointManager",
    "load_checkpoint",
    "model_key",
    "read_manifest",
    "resolve_checkpoint",
]

logger = logging.getLogger(__name__)

#: Manifest schema version.
MANIFEST_FORMAT = 1
#: The largest manifest read (the bundled models' are about 10 KB).
MANIFEST_BYTES_MAX = 16 * 1024 * 1024

#: ``protected(key, candidates)`` → those of the candidate versions that must not be deleted.
Protected = Callable[[str, Sequence[str]], Collection[str]]


def model_key(symbol: str, timeframe: str, horizon: int) -> str:
    """Return the model key ``SYMBOL-TIMEFRAME-hH``."""
    return f"{symbol.upper()}-{timeframe}-h{horizon}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CheckpointManager:
    """Save checkpoints under ``root/<key>/`` and keep the last ``keep`` of each key.

    Parameters
    ----------
    root
        The model directory.
    keep
        How many versions of one key to keep (older ones are deleted after a save).
    protected
        Called after a save with the key and the versions retention would delete (oldest
        first); those it returns are kept (e.g. versions a model registry names). If it
        raises, nothing is deleted.
    """

    def __init__(self, root: str | Path, *, keep: int = 3, protected: Protected | None = None) -> None:
        if keep < 1:
            raise ConfigError(f"keep must be >= 1, got {keep}")
        self.root = Path(root)
        self.keep = keep
        self.protected = protected

    def versions(self, key: str) -> list[Path]:
        """Return the checkpoint files of ``key``, oldest first."""
        d = self.root / key
        return sorted(p for p in d.glob("*.pt") if p.with_suffix(".json").exists()) if d.is_dir() else []

    def latest(self, key: str) -> Path | None:
        """Return the newest checkpoint of ``key``, or None."""
        v = self.versions(key)
        return v[-1] if v else None

    def save(self, state_dict: dict[str, torch.Tensor], manifest: dict[str, Any], *, key: str) -> Path:
        """Write weights and manifest atomically; return the ``.pt`` path.

        ``manifest`` gets ``format``, ``key``, ``version``, ``created_at``, ``file`` and
        ``sha256`` added (the input dict is not modified).
        """
        import torch  # here, not at import: reading manifests and listing versions need no torch

        d = self.root / key
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        fd, tmp_name = tempfile.mkstemp(dir=d, suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            torch.save(tensors, tmp)
            digest = _sha256(tmp)
            now = datetime.now(UTC)
            version = f"{now:%Y%m%dT%H%M%S%f}Z-{digest[:8]}"
            pt = d / f"{version}.pt"
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are shared read-only
            os.replace(tmp, pt)
        finally:
            tmp.unlink(missing_ok=True)
        full = {
            **manifest,
            "format": MANIFEST_FORMAT,
            "key": key,
            "version": version,
            "created_at": now.isoformat(),
            "file": pt.name,
            "sha256": digest,
        }
        js = pt.with_suffix(".json")
        js_tmp = js.with_suffix(".json.tmp")
        js_tmp.write_text(json.dumps(full, indent=2, sort_keys=True, allow_nan=True))
        os.replace(js_tmp, js)
        logger.info("checkpoint saved key=%s version=%s path=%s", key, version, pt)
        self._prune(key)
        return pt

    def _prune(self, key: str) -> None:
        doomed = self.versions(key)[: -self.keep]
        if doomed and self.protected is not None:
            try:
                spared = set(self.protected(key, [p.stem for p in doomed]))
            except Exception as exc:  # whatever failed, deleting without an answer is worse
                logger.warning(
                    "checkpoint retention skipped key=%s: protected versions unknown (%s: %s)",
                    key,
                    type(exc).__name__,
                    exc,
                )
                return
            for p in doomed:
                if p.stem in spared:
                    logger.info("checkpoint kept key=%s version=%s reason=protected", key, p.stem)
            doomed = [p for p in doomed if p.stem not in spared]
        for old in doomed:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
            logger.info("checkpoint pruned key=%s path=%s", key, old)


def resolve_checkpoint(path: str | Path) -> Path:
    """Return the ``.pt`` file for a ``.pt``/``.json`` path or a key directory (its newest)."""
    p = Path(path)
    if p.is_dir():
        found = CheckpointManager(p.parent).latest(p.name)
        if found is None:
            raise ArtifactError(f"{p}: no checkpoint in this directory")
        return found
    if p.suffix == ".json":
        p = p.with_suffix(".pt")
    return p


def read_manifest(path: Path) -> dict[str, Any]:
    """The JSON object of the manifest file ``path`` (at most :data:`MANIFEST_BYTES_MAX` bytes),
    as :func:`load_checkpoint` and the registry's symbol sets read it.

    Raises
    ------
    OSError
        The file cannot be read now (missing, no permission): ask again later.
    ArtifactError
        It is no regular file (a FIFO, a device), or its content is no manifest: over the
        size bound, not UTF-8 JSON, nested too deep or a 5,000-digit number, or not a JSON
        object. Files do not change under a
        version, so this refusal stands.
    """
    # O_NONBLOCK: a FIFO named *.json opens at once (a blocking open waited for a writer
    # forever, in the worker's refresh); it is then refused as no regular file
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ArtifactError(f"{path}: the manifest is no regular file")
        raw = fh.read(MANIFEST_BYTES_MAX + 1)
    if len(raw) > MANIFEST_BYTES_MAX:
        raise ArtifactError(f"{path}: manifest over {MANIFEST_BYTES_MAX} bytes")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSON and Unicode errors, 5,000-digit or deep values
        raise ArtifactError(f"{path}: unreadable manifest ({type(exc).__name__})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: the manifest is a JSON {type(manifest).__name__}, not an object")
    return _minutes_as_written(manifest)


_WRITTEN_MINUTES = re.compile(r"[0-9]{1,4}M")


def _minutes_as_written(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with a timeframe written ``1M`` read as the minutes it meant: ``forexd
    train --timeframe 1M`` wrote it so before a timeframe's ``M`` was refused as a month (a
    model of minute bars, loaded then as ``1m``; refused since, with no name that fitted it)."""
    parts = [manifest, manifest.get("train_config")]
    for part in parts:
        if isinstance(part, dict) and isinstance(tf := part.get("timeframe"), str) and _WRITTEN_MINUTES.fullmatch(tf):
            part["timeframe"] = tf.lower()
    return manifest


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; return ``(state_dict, manifest)``.

    Raises
    ------
    ArtifactError
        Missing files, unreadable manifest, sha256 mismatch, non-tensor or pickled
        content, or a corrupt archive.
    """
    import torch

    pt = resolve_checkpoint(path)
    js = pt.with_suffix(".json")
    if not pt.is_file():
        raise ArtifactError(f"{pt}: checkpoint file not found")
    if not js.is_file():
        raise ArtifactError(f"{js}: manifest not found (a checkpoint is loaded only with its manifest)")
    try:
        manifest = read_manifest(js)
    except OSError as exc:  # no permission, an I/O error
        raise ArtifactError(f"{js}: unreadable manifest ({str(exc)[:200]})") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{js}: not a format-{MANIFEST_FORMAT} manifest")
    try:
        digest = _sha256(pt)
    except OSError as exc:  # no read permission, an I/O error: a model that cannot be used, not a storage fault
        raise ArtifactError(f"{pt}: unreadable checkpoint ({exc.strerror or type(exc).__name__})") from exc
    if digest != manifest.get("sha256"):
        raise ArtifactError(
            f"{pt}: sha256 mismatch (file {digest[:12]}…, manifest {str(manifest.get('sha256'))[:12]}…); refusing it"
        )
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        AttributeError,
        TypeError,
    ) as exc:
        raise ArtifactError(f"{pt}: refused by the weights-only loader ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ArtifactError(f"{pt}: not a state dict of tensors")
    return state, manifest
