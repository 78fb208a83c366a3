"""The model registry: versions in the database, artifacts in the model directory.

:class:`ModelRegistry` joins the registry tables (:mod:`forex_diffusion.storage.model_registry`)
to the files under ``model_dir``::

    <model_dir>/<SYMBOL-tf-hH>/<version>.pt      weights only (torch.save of tensors)
    <model_dir>/<SYMBOL-tf-hH>/<version>.json    manifest with the sha256 of the .pt
    <model_dir>/.staging/<SYMBOL-tf-hH>-<id>/     where a job trains (never loaded from)

Rules it keeps:

- an artifact enters its key directory only complete: staged files are fsynced, then
  renamed (``os.replace``) into place, the manifest last, then the directory is fsynced;
  a loader needs both files and a matching hash, so a crash at any point leaves nothing
  loadable that is not whole;
- an alias moves only to a version whose artifact loads (:meth:`verify` runs
  :meth:`Predictor.load <forex_diffusion.diffusion.Predictor.load>`, and the manifest's
  sha256 must equal the one registered);
- every database change is one transaction;
- :meth:`recover` removes what a killed job left (staging directories, temp files,
  artifacts no registry row names); :meth:`apply_retention` deletes what the retention
  rule does not keep.
"""

from __future__ import annotations

import builtins
import filecmp
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from forex_diffusion.diffusion.checkpoint import read_manifest
from forex_diffusion.errors import ArtifactError, ConfigError, RegistryError
from forex_diffusion.storage import model_registry as store
from forex_diffusion.storage.model_registry import AliasChange, ModelKey, ModelVersion
from forex_diffusion.timeframes import Timeframe

from .failpoints import failpoint

if TYPE_CHECKING:
    from forex_diffusion.diffusion.predictor import Predictor

__all__ = [
    "ModelRegistry",
    "RetentionResult",
    "config_hash",
    "fsync_path",
    "model_symbols",
    "read_manifest",
    "select_retained",
    "summarise_train_metrics",
    "serving_champion",
]

logger = logging.getLogger(__name__)

STAGING = ".staging"
#: A staging job id: a request id, ``-`` and a random suffix, or ``import-<version>``.
_JOB_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: A version an imported manifest may name (training writes ``20261128T193249642148Z-6fc34c47``).
_VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
#: A canonical symbol (the wire's pattern): what a global model's symbol set holds.
_SYMBOL = re.compile(r"[A-Z]{6}")
#: The most symbols one global model names (a set beyond this is refused, not read).
SYMBOLS_MAX = 4096


def model_symbols(value: object, what: str) -> tuple[str, ...]:
    """The canonical symbols of a global model's ``symbols`` value (a manifest's or a registry
    row's), sorted and distinct.

    ``value`` must be a list of at most :data:`SYMBOLS_MAX` strings, each a currency pair
    (six ASCII letters; lower case is read as upper case). An empty list serves nothing.

    >>> model_symbols(["GBPUSD", "eurusd", "EURUSD"], "manifest")
    ('EURUSD', 'GBPUSD')
    >>> model_symbols(5, "manifest")
    Traceback (most recent call last):
    ...
    forex_diffusion.errors.ArtifactError: manifest: symbols must be a list of currency pairs, got int

    Raises
    ------
    ArtifactError
        Anything else; the message names ``what`` and shows no more than 40 characters of it.
    """
    if not isinstance(value, list) or len(value) > SYMBOLS_MAX:
        shown = type(value).__name__ if not isinstance(value, list) else f"{len(value)} items"
        raise ArtifactError(f"{what}: symbols must be a list of currency pairs, got {shown}")
    out = set()
    for x in value:
        if (pair := _pair(x)) is None:
            shown = repr(x[:40]) if isinstance(x, str) else f"a {type(x).__name__}"
            raise ArtifactError(f"{what}: symbols must be currency pairs such as EURUSD, not {shown}")
        out.add(pair)
    return tuple(sorted(out))


def _pair(value: object) -> str | None:
    """``value`` as a canonical currency pair (six ASCII letters, lower case read as upper), or None."""
    if isinstance(value, str) and value.isascii() and _SYMBOL.fullmatch(value.upper()):
        return value.upper()
    return None


def _inside(root: Path, path: Path) -> Path:
    """Return ``path`` if it resolves inside ``root`` (issue 13: paths built from a record stay there).

    Raises
    ------
    RegistryError
        ``path`` resolves outside ``root`` (``..``, an absolute part, a symlink out).
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise RegistryError(f"path {str(path)[:200]!r} leaves its root {str(root)!r}")
    return path


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) content to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def config_hash(train_config: Mapping[str, Any]) -> str:
    """Return the sha256 of a training config's canonical JSON."""
    text = json.dumps(train_config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _mean(values: Any) -> float | None:
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return sum(vals) / len(vals) if vals else None


def _epoch_ms(value: Any) -> int | None:
    """A manifest's data-window bound if it is one (an epoch time in ms), else unknown."""
    return value if type(value) is int and 0 <= value < 2**53 else None


def summarise_train_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Compact training metrics (means over steps of the test scores) for the registry row."""
    out: dict[str, Any] = {
        k: metrics[k] for k in ("steps", "stop_reason", "train_seconds", "params", "best_val_crps") if k in metrics
    }
    test = metrics.get("test")
    if isinstance(test, Mapping):
        for name in ("crps", "rw_crps", "skill", "cover50", "cover90"):
            if name in test:
                out[f"test_{name}"] = _mean(test[name])
        out["test_n"] = test.get("n")
    return out


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What :meth:`ModelRegistry.apply_retention` kept and deleted (version ids)."""

    kept: tuple[str, ...]
    deleted: tuple[str, ...]


def select_retained(
    versions: Sequence[ModelVersion],
    *,
    champion: str | None,
    previous: str | None,
    challenger: str | None,
    referenced: Iterable[str],
    keep_last: int,
) -> set[str]:
    """Return the versions the retention rule keeps (pure).

    Kept: the champion, the previous champion (what a rollback restores), the challenger,
    every version in ``referenced`` (named by forecasts in the audit window) and the
    ``keep_last`` newest non-deleted versions. Deleted versions are never in the result.
    """
    if keep_last < 0:
        raise ConfigError(f"keep_last must be >= 0, got {keep_last}")
    live = [v for v in versions if v.status != "deleted"]
    newest = sorted(live, key=lambda v: (v.created_ms, v.version))[-keep_last:] if keep_last else []
    keep = {v.version for v in newest}
    keep |= {x for x in (champion, previous, challenger) if x is not None}
    keep |= set(referenced)
    return keep & {v.version for v in live}


class ModelRegistry:
    """Model versions of every key: register, promote, reject, roll back, retain.

    Parameters
    ----------
    engine
        Database holding the registry tables.
    model_dir
        Artifact root.
    clock
        Epoch-ms clock (tests pass a fake one).
    """

    def __init__(
        self,
        engine: Engine,
        model_dir: str | Path,
        *,
        clock: Callable[[], int] | None = None,
        on_refused: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.engine = engine
        self.model_dir = Path(model_dir)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._symbols: dict[str, frozenset[str]] = {}  # version -> its symbol set (never changes)
        self._unreadable: set[str] = set()  # versions whose manifest could not be read (said once)
        self._said: set[tuple[Any, ...]] = set()  # aliases naming no readable row of their key (said once)
        # called once per version whose symbol set is refused (the worker counts it as a rejected artifact)
        self.on_refused = on_refused

    # -- paths and verification --------------------------------------------------------------

    def key_dir(self, key: ModelKey) -> Path:
        """Directory of ``key``'s artifacts (checked to stay under the model directory)."""
        return _inside(self.model_dir, self.model_dir / key.dir_name)

    def path_of(self, version: ModelVersion) -> Path:
        """Path of a version's ``.pt`` file under the model directory.

        Raises
        ------
        RegistryError
            The row's artifact resolves outside the model directory (a symbolic link out; the
            registry reads no row whose artifact is absolute or climbs with ``..``).
        """
        return _inside(self.model_dir, self.model_dir / version.artifact)

    @staticmethod
    def _misfit(version: ModelVersion, predictor: Predictor) -> str | None:
        """Why ``predictor`` cannot serve ``version``'s key, or None: a network forecasting
        another number of steps than the key's horizon (a row written by hand may name a
        24-step model's file under a 12-step key; the worker would publish its 24 steps as
        the key's 12). The timeframe is the key's to say (``import_artifact(key=...)`` may
        re-key a model; ``forexd models register --key`` refuses another timeframe)."""
        if predictor.horizon != version.key.horizon:
            return f"it forecasts {predictor.horizon} steps, and its key {version.key} {version.key.horizon}"
        return None

    def staging_dir(self, key: ModelKey, job_id: str) -> Path:
        """A fresh staging directory for one job of ``key``.

        Raises
        ------
        RegistryError
            ``job_id`` is not a plain name (letters, digits, ``_``, ``.``, ``-``; no leading
            dot) or the directory would leave ``<model_dir>/.staging``; nothing is created.
        """
        if not _JOB_ID.fullmatch(job_id):
            raise RegistryError(f"bad staging job id {job_id[:80]!r}")
        root = self.model_dir / STAGING
        d = _inside(root, root / f"{key.dir_name}-{job_id}")
        d.mkdir(parents=True, exist_ok=True)
        return d

    def verify(self, version: ModelVersion) -> bool:
        """Whether the version's artifact loads, is the one registered (sha256) and forecasts
        its key's horizon."""
        try:
            predictor = _load_predictor(self.path_of(version))
        except (ArtifactError, RegistryError) as exc:
            logger.warning("registry artifact refused version=%s error=%s", version.version, exc)
            return False
        if predictor.manifest.get("sha256") != version.sha256:
            logger.warning("registry sha256 differs from the registered one version=%s", version.version)
            return False
        if (misfit := self._misfit(version, predictor)) is not None:
            logger.warning("registry artifact refused version=%s error=%s", version.version, misfit)
            return False
        return True

    def load(self, version: ModelVersion, *, device: str = "cpu") -> Predictor:
        """Load a verified version (onto ``device``: cpu, cuda, cuda:N, auto).

        Raises
        ------
        ArtifactError
            The artifact is missing, corrupt, unsafe, not the one registered or of another
            horizon than its key.
        RegistryError
            The artifact's path leaves the model directory.
        """
        predictor = _load_predictor(self.path_of(version), device=device)
        if predictor.manifest.get("sha256") != version.sha256:
            raise ArtifactError(f"{version.version}: sha256 differs from the registry's")
        if (misfit := self._misfit(version, predictor)) is not None:
            raise ArtifactError(f"{version.version}: {misfit}")
        return predictor

    # -- writing artifacts -------------------------------------------------------------------

    def publish(self, checkpoint: str | Path, key: ModelKey) -> Path:
        """Move a staged checkpoint (``.pt`` + ``.json``) into ``key``'s directory; return the new ``.pt``.

        Both files are fsynced, renamed into place (weights first, manifest last) and the
        directory is fsynced; until the manifest lands nothing there loads. A name the
        directory already holds with other contents is refused (:class:`ArtifactError`):
        renaming over it would replace a registered version's weights, and its champion would
        no longer load. The same contents are published again (a retry).
        """
        pt = Path(checkpoint)
        js = pt.with_suffix(".json")
        if not (pt.is_file() and js.is_file()):
            raise ArtifactError(f"{pt}: staged checkpoint or manifest missing")
        dest = self.key_dir(key)
        dest.mkdir(parents=True, exist_ok=True)
        fsync_path(pt)
        fsync_path(js)
        final_pt, final_js = dest / pt.name, dest / js.name
        for staged, final in ((pt, final_pt), (js, final_js)):
            # another version's weights are never replaced; the same bytes are (a register that
            # failed after its copy, run again once the database is back)
            if final.exists() and not filecmp.cmp(staged, final, shallow=False):
                raise ArtifactError(
                    f"{final} already exists with other contents; a checkpoint is published once, under its version"
                )
        os.replace(pt, final_pt)
        failpoint("retrain.write")  # crash here: a .pt without manifest (not loadable)
        os.replace(js, final_js)
        fsync_path(dest)
        logger.info("registry published path=%s", final_pt)
        return final_pt

    def import_artifact(
        self, checkpoint: str | Path, *, key: ModelKey | None = None, request_id: str | None = None
    ) -> ModelVersion:
        """Copy an existing checkpoint (e.g. from ``forexd train``) into the registry and register it."""
        state_path = Path(checkpoint)
        # refuses a corrupt, pickle-bearing, hash-mismatched or ill-fitting one before any copy
        predictor = _load_predictor(state_path)
        manifest, version = predictor.manifest, predictor.manifest.get("version")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise RegistryError(f"{state_path}: bad version {str(version)[:80]!r} in the manifest")
        for name in ("metrics", "data_window"):
            if not isinstance(manifest.get(name, {}), Mapping):
                raise RegistryError(f"{state_path}: the manifest's {name} is not an object")
        if key is None and not all(isinstance(manifest.get(n), str) for n in ("symbol", "timeframe")):
            raise RegistryError(f"{state_path}: the manifest names no symbol and timeframe; pass --key")
        # the timeframe as the stream spells it (a manifest's 60m is the stream's 1h: a key
        # stored as EURUSD/60m/24 was served by no worker)
        k = key or ModelKey(
            symbol=manifest["symbol"], timeframe=Timeframe.parse(manifest["timeframe"]).name, horizon=predictor.horizon
        )
        metrics = summarise_train_metrics(manifest.get("metrics", {}))
        if store.get_version(self.engine, version) is not None:
            raise RegistryError(f"version {version} is already registered")
        src = state_path if state_path.suffix == ".pt" else state_path.with_suffix(".pt")
        stage = self.staging_dir(k, f"import-{version}")
        try:
            # named by its version (as training names a checkpoint), not by the file given: two
            # files called model.pt of two versions are two artifacts
            for suffix in (".pt", ".json"):
                shutil.copyfile(src.with_suffix(suffix), stage / f"{version}{suffix}")
            final = self.publish(stage / f"{version}.pt", k)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        try:
            return self.register(
                final,
                key=k,
                metrics=metrics,
                request_id=request_id,
                challenger=False,
            )
        except BaseException:
            try:
                named = store.row_names(self.engine, k, include_deleted=True) & {version, final.stem}
            except Exception:  # noqa: BLE001 - the database fails: the copy stays for recover() to judge
                named = {version}
            if not named:
                self._unlink(final)  # not registered (a table another program made, a refused row): the copy goes
            raise

    def register(
        self,
        checkpoint: str | Path,
        *,
        key: ModelKey,
        metrics: Mapping[str, Any],
        request_id: str | None = None,
        challenger: bool = True,
    ) -> ModelVersion:
        """Register a published checkpoint (status ``registered``; optionally the challenger).

        Raises
        ------
        ArtifactError
            The checkpoint does not load.
        """
        pt = Path(checkpoint)
        predictor = _load_predictor(pt)  # never register what does not load
        m = predictor.manifest
        window = m.get("data_window")
        window = window if isinstance(window, Mapping) else {}
        try:
            rel = pt.resolve().relative_to(self.model_dir.resolve())
        except ValueError as exc:
            raise RegistryError(f"{pt} is not under the model directory {self.model_dir}") from exc
        v = ModelVersion(
            version=str(m["version"]),
            key=key,
            artifact=rel.as_posix(),
            sha256=str(m["sha256"]),
            config_hash=config_hash(m.get("train_config", {})),
            data_first_ms=_epoch_ms(window.get("first_close_ms")),
            data_last_ms=_epoch_ms(window.get("last_close_ms")),
            metrics={**metrics, **({"symbols": list(m["symbols"])} if m.get("symbols") else {})},
            request_id=request_id,
        )
        return store.insert_version(self.engine, v, challenger=challenger, now_ms=self._clock())

    # -- aliases -----------------------------------------------------------------------------

    def get(self, version: str) -> ModelVersion:
        """Return one version.

        Raises
        ------
        RegistryError
            Unknown version.
        """
        v = store.get_version(self.engine, version)
        if v is None:
            raise RegistryError(f"unknown version {version}")
        return v

    def _aliased(self, key: ModelKey, alias: str) -> ModelVersion | None:
        """The version ``alias`` of ``key`` points at, or None.

        An alias naming a version the registry does not hold, a row it cannot read, or a row
        of another key (rows written by hand) points at nothing: the stream serves as if the
        key had no such alias (its fallback) instead of failing, or serving another key's
        model. Said once per registry (a worker looks it up on every refresh).
        """
        version = store.get_aliases(self.engine, key).get(alias)
        if version is None:
            return None
        try:
            v = store.get_version(self.engine, version)
        except RegistryError as exc:
            problem = str(exc)
        else:
            if v is not None and v.key == key:
                return v
            problem = "no such version" if v is None else f"the version is of key {v.key}"
        if (key, alias, version, problem) not in self._said:
            self._said.add((key, alias, version, problem))
            logger.warning(
                "registry.alias_unresolved key=%s alias=%s version=%s problem=%s: read as no %s",
                key,
                alias,
                version,
                problem,
                alias,
            )
        return None

    def champion(self, key: ModelKey) -> ModelVersion | None:
        """The champion of ``key``, or None (also for an alias naming no readable row of ``key``)."""
        return self._aliased(key, "champion")

    def challenger(self, key: ModelKey) -> ModelVersion | None:
        """The latest challenger of ``key`` (until promoted), or None."""
        return self._aliased(key, "challenger")

    def resolve_champion(self, symbol: str, timeframe: str, horizon: int) -> ModelVersion | None:
        """The champion serving a series, the most specific first: its own key's, else that
        of a global model whose symbol set holds ``symbol`` (the smallest set; of equal
        sizes the newest champion), else the ``*`` key's."""
        return self._resolve(symbol, timeframe, horizon, None)

    def _resolve(
        self, symbol: str, timeframe: str, horizon: int, globs: builtins.list[ModelVersion] | None
    ) -> ModelVersion | None:
        """:meth:`resolve_champion`, given the :meth:`global_champions` when known already
        (one registry scan for many symbols, not one each)."""
        own = self.champion(ModelKey(symbol=symbol, timeframe=timeframe, horizon=horizon))
        if own is not None:
            return own
        covering = [
            (len(syms), -v.created_ms, v.version, v)
            for v in (self.global_champions(timeframe, horizon) if globs is None else globs)
            if symbol.upper() in (syms := self.symbols_of(v))
        ]
        if covering:
            return min(covering, key=lambda c: c[:3])[3]
        return self.champion(ModelKey(symbol="*", timeframe=timeframe, horizon=horizon))

    def global_champions(self, timeframe: str, horizon: int) -> builtins.list[ModelVersion]:
        """Champions of the global-model keys (symbol sets) of ``(timeframe, horizon)``."""
        keys = {
            v.key
            for v in self.list(include_deleted=False)
            if v.key.is_symbol_set and v.key.timeframe == timeframe and v.key.horizon == horizon
        }
        return [c for c in (self.champion(k) for k in sorted(keys, key=str)) if c is not None]

    def symbols_of(self, version: ModelVersion) -> frozenset[str]:
        """The symbols a global model version serves (its registry row's ``symbols``, else its
        manifest's); empty for a per-series or ``*`` model.

        Never raises: a malformed set (:func:`model_symbols`, :func:`read_manifest`) serves no
        symbol, and is logged (and given to ``on_refused``) once; a manifest that cannot be
        read now serves none until it can (logged once).
        """
        if not version.key.is_symbol_set:
            return frozenset()
        known = self._symbols.get(version.version)
        if known is not None:
            return known
        try:
            metrics = version.metrics if isinstance(version.metrics, Mapping) else {}
            syms = metrics.get("symbols")
            if syms is not None:
                names = model_symbols(syms, f"version {version.version}: the registry row's metrics")
            else:
                js = self.path_of(version).with_suffix(".json")
                names = model_symbols(read_manifest(js).get("symbols"), f"version {version.version}: {js.name}")
        except OSError as exc:  # unreadable now: not remembered, asked again next time
            if version.version not in self._unreadable:
                self._unreadable.add(version.version)
                logger.warning(
                    "registry.manifest_unreadable version=%s error=%s: serves no symbol until it can be read",
                    version.version,
                    type(exc).__name__,
                )
            return frozenset()
        except ArtifactError as exc:
            logger.error("registry.symbols_refused version=%s reason=%s: serves no symbol", version.version, exc)
            if self.on_refused is not None:
                self.on_refused(version.version, exc)
            names = ()
        self._unreadable.discard(version.version)
        known = self._symbols[version.version] = frozenset(names)
        return known

    def previous_champion(self, key: ModelKey) -> ModelVersion | None:
        """The version :meth:`rollback` would restore, or None."""
        return store.previous_champion(self.engine, key)

    def promote(self, version: str, reason: str, *, expect_status: str | None = None) -> ModelVersion:
        """Make ``version`` its key's champion after verifying its artifact.

        With ``expect_status`` (``shadow``), a version whose status differs is returned
        unchanged: the shadow was decided (or superseded) already.

        Raises
        ------
        RegistryError
            Unknown or deleted version, or an artifact that does not load.
        """
        return store.promote_version(
            self.engine,
            version,
            reason=reason,
            now_ms=self._clock(),
            usable=self.verify,
            before_commit=lambda: failpoint("registry.promote"),
            expect_status=expect_status,
        )

    def reject(self, version: str, reason: str, *, expect_status: str | None = None) -> ModelVersion:
        """Mark a version rejected (unchanged if ``expect_status`` is given and differs)."""
        return store.reject_version(
            self.engine, version, reason=reason, now_ms=self._clock(), expect_status=expect_status
        )

    def shadow(self, key: ModelKey) -> ModelVersion | None:
        """The version in shadow for ``key`` (issue 16), or None."""
        return self._aliased(key, "shadow")

    def shadow_runs_on(self, version: ModelVersion) -> str | None:
        """The one symbol a global model's shadow is scored on: the recorded one
        (:func:`shadow_series`) while its key's champion still serves it, else the first
        symbol of its set (sorted) that key's champion serves -- a series given its own model
        since leaves the shadow to another, never to none. None for a per-series version, or
        a set whose key serves none of its symbols now."""
        if not version.key.is_symbol_set:
            return None
        recorded = shadow_series(version)
        symbols = sorted(self.symbols_of(version))
        tf, h = version.key.timeframe, version.key.horizon
        globs = self.global_champions(tf, h)  # once: a set may hold thousands of symbols
        for symbol in ([recorded] if recorded in symbols else []) + [s for s in symbols if s != recorded]:
            champ = self._resolve(symbol, tf, h, globs)
            if champ is not None and champ.key == version.key:
                return symbol
        return None

    def start_shadow(self, version: str, reason: str, *, required: int, series: str | None = None) -> ModelVersion:
        """Put ``version`` in shadow until ``required`` live forecasts are realised (artifact verified first).

        ``series``: the one symbol a global model's shadow runs on (:func:`shadow_series`),
        one of its set (``RegistryError`` otherwise, or for a per-series version).

        Raises
        ------
        RegistryError
            Unknown, deleted or champion version, or an artifact that does not load.
        """
        if series is not None:
            v = self.get(version)
            if not v.key.is_symbol_set or series.upper() not in self.symbols_of(v):
                raise RegistryError(f"version {version} of {v.key} does not serve {series[:32]!r}: no shadow on it")
            series = series.upper()
        return store.start_shadow(
            self.engine,
            version,
            reason=reason,
            required=required,
            now_ms=self._clock(),
            usable=self.verify,
            series=series,
        )

    def rollback(self, key: ModelKey, reason: str = "manual") -> ModelVersion:
        """Restore the previous champion of ``key``; return it.

        Raises
        ------
        RegistryError
            No champion, nothing to restore, or its artifact does not load.
        """
        restored, _ = store.rollback_champion(self.engine, key, reason=reason, now_ms=self._clock(), usable=self.verify)
        return restored

    def history(self, key: ModelKey) -> list[AliasChange]:
        """Alias changes of ``key``, oldest first."""
        return store.alias_history(self.engine, key)

    def list(self, key: ModelKey | None = None, *, include_deleted: bool = True) -> builtins.list[ModelVersion]:
        """Versions (of one key or all), oldest first."""
        return store.list_versions(self.engine, key, include_deleted=include_deleted)

    # -- retention and recovery --------------------------------------------------------------

    def apply_retention(self, key: ModelKey, *, keep_last: int, audit_window_ms: int) -> RetentionResult:
        """Delete the versions of ``key`` the retention rule does not keep.

        Rows are marked ``deleted`` first (one transaction, refused for an aliased
        version), then their files are removed; a crash in between leaves files no live
        row names, which :meth:`recover` removes.
        """
        versions = self.list(key)
        aliases = store.get_aliases(self.engine, key)
        prev = self.previous_champion(key)
        referenced = store.referenced_versions(
            self.engine,
            [v.version for v in versions if v.status != "deleted"],
            since_ms=self._clock() - audit_window_ms,
        )
        keep = select_retained(
            versions,
            champion=aliases.get("champion"),
            previous=None if prev is None else prev.version,
            challenger=aliases.get("challenger"),
            referenced=set(referenced) | {v for a, v in aliases.items() if a == "shadow"},
            keep_last=keep_last,
        )
        doomed = [v for v in versions if v.status != "deleted" and v.version not in keep]
        deleted = (
            store.mark_deleted(
                self.engine,
                [v.version for v in doomed],
                reason=f"retention: not among the last {keep_last}, unaliased, unreferenced for {audit_window_ms} ms",
                now_ms=self._clock(),
            )
            if doomed
            else []
        )
        for v in doomed:
            if v.version in deleted:
                try:
                    self._unlink(self.path_of(v))
                except RegistryError as exc:  # a link out of the model directory: nothing there is removed
                    logger.warning("registry retention kept the files of version=%s: %s", v.version, exc)
        logger.info("registry retention key=%s kept=%d deleted=%d", key, len(keep), len(deleted))
        return RetentionResult(kept=tuple(sorted(keep)), deleted=tuple(deleted))

    def _unlink(self, pt: Path) -> None:
        pt.with_suffix(".json").unlink(missing_ok=True)  # manifest first: the .pt stops loading
        pt.unlink(missing_ok=True)

    def recover(self, key: ModelKey) -> builtins.list[Path]:
        """Remove what a killed job of ``key`` left behind; return the removed paths.

        Removes ``key``'s staging directories, temp files in its directory, and artifacts
        that no live (non-deleted) registry row names. Run it only while no other job of
        ``key`` is running (the in-flight tracker and the CLI make sure of that).
        """
        removed: builtins.list[Path] = []
        staging = self.model_dir / STAGING
        if staging.is_dir():
            for d in staging.glob(f"{key.dir_name}-*"):
                _inside(staging, d)  # the key's parts are validated (ModelKey); checked anyway
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
        d = self.key_dir(key)
        if d.is_dir():
            # every row not deleted keeps its files, readable or not: a row someone damaged
            # is repaired, not found to have lost its model
            live = store.row_names(self.engine, key)
            for f in sorted(d.iterdir()):
                if not f.is_file():
                    continue
                name = f.name
                orphan = f.suffix in (".pt", ".json") and f.stem not in live
                if name.endswith(".tmp") or orphan:
                    f.unlink(missing_ok=True)
                    removed.append(f)
        if removed:
            logger.warning("registry recovered key=%s removed=%s", key, [p.name for p in removed])
        return removed


def _load_predictor(path: str | Path, *, device: str = "cpu") -> Predictor:
    """:meth:`Predictor.load <forex_diffusion.diffusion.Predictor.load>`, imported on first use:
    listing, promoting and rolling back versions (``forexd models``) load no torch."""
    from forex_diffusion.diffusion.predictor import Predictor

    return Predictor.load(path, device=device)


def shadow_series(version: ModelVersion) -> str | None:
    """The symbol recorded for a global model's shadow (``metrics.shadow.symbol``, set by the
    retrain job that asked for it), canonical (lower case read as upper case, as every symbol
    field of the registry); None for a per-series shadow, or a row holding no pair there."""
    shadow = version.metrics.get("shadow") if isinstance(version.metrics, Mapping) else None
    return _pair(shadow.get("symbol")) if isinstance(shadow, Mapping) else None


def serving_champion(reg: ModelRegistry, key: ModelKey) -> ModelVersion | None:
    """The champion serving ``key``'s series: for a per-series key its own champion, else the
    global (symbol-set) or ``*`` model the stream routes the symbol to
    (:meth:`~retraining.registry.ModelRegistry.resolve_champion`); for a global or ``*`` key
    its own champion. A per-series challenger faces this model (offline and in shadow)."""
    if key.is_symbol_set or key.symbol == "*":
        return reg.champion(key)
    return reg.resolve_champion(key.symbol, key.timeframe, key.horizon)
