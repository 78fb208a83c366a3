"""Which model serves a key, loaded safely and swapped between two forecasts.

:class:`ModelBook` resolves the champion of ``(symbol, timeframe, horizon)`` from the
registry (a symbol-specific key first, then a global model whose symbol set holds the
symbol, the smallest such set, then ``*``; the same order for checkpoint files found
under the model directory when the registry has no champion), loads it weights-only and hash-verified,
and caches it by version. :meth:`ModelBook.refresh` (called when an ``fx.models`` record
arrives) re-resolves the champions; a model that fails to load is refused and the previous
one keeps serving. With no registered model the EWMA random walk serves, under its own
version name, so the stream always forecasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from forex_diffusion.errors import ArtifactError, ForexDiffusionError, RegistryError
from forex_diffusion.forecast.forecaster import RandomWalkPredictor
from forex_diffusion.forecast.touch import parse_touch_bands
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion, row_names

from .registry import ModelRegistry, model_symbols, read_manifest

__all__ = ["ModelBook"]

log = logging.getLogger(__name__)


class ModelBook:
    """Champion predictors per model key, with a fallback and refusal of bad artifacts."""

    def __init__(
        self,
        engine: Engine | None,
        *,
        horizon: int,
        device: str = "cpu",
        horizons: Mapping[str, int] | None = None,
        model_dir: str | Path | None = None,
        on_rejected: Callable[[str, Exception], None] | None = None,
        touch_bands: str | None = None,
        sampling_steps: Mapping[str, int | None] | None = None,
    ) -> None:
        self.engine = engine
        self.model_dir = Path(model_dir) if model_dir else None
        self.registry = (
            ModelRegistry(engine, self.model_dir, on_refused=on_rejected)
            if engine is not None and self.model_dir
            else None
        )
        self._files: dict[str, Path] = {}
        self.horizon = horizon
        self.device = device
        self.on_rejected = on_rejected
        # issue 16: the touch bands every loaded model's forecasts carry (None: the default)
        self.touch_bands = parse_touch_bands(touch_bands)
        # the configured DDIM steps by setting name (the full and the degraded budget): a model
        # whose schedule has fewer samples all of its own
        # (:func:`~forex_diffusion.forecast.batching.steps_for`), said once when it loads
        self.sampling_steps = {k: v for k, v in (sampling_steps or {}).items() if v is not None}
        self._loaded: dict[str, Any] = {}  # version -> predictor
        self._serving: dict[tuple[str, str], Any] = {}  # (symbol, tf) -> predictor
        self._shadows: dict[tuple[str, str], Any] = {}  # (symbol, tf) -> shadow predictor or None (issue 16)
        self._fallback = RandomWalkPredictor(horizon)
        # issue 16: the model horizon of each timeframe served (one per timeframe); a
        # timeframe not named serves ``horizon``. The random walk stands in at each one.
        self.horizons = dict(horizons or {})
        self._fallbacks = {h: RandomWalkPredictor(h) for h in set(self.horizons.values()) - {horizon}}
        self.rejected: dict[str, str] = {}
        self._refused_files: set[Path] = set()  # global checkpoints whose symbol set is refused (said once)

    def _champion_version(self, symbol: str, timeframe: str) -> str | None:
        if self.registry is not None:
            row = self.registry.resolve_champion(symbol, timeframe, self.horizon_of(timeframe))
            if row is not None:
                return row.version
        # no registry champion: the newest checkpoint under model_dir (e.g. a bundled model).
        # A version the registry has a row of serves only as a champion, never as a file found
        # here: not a challenger it did not promote, nor a rejected, rolled-back or unreadable one.
        if self.model_dir is not None:
            for sym in (symbol, "", "*"):  # "": a global model whose symbol set holds the symbol
                keys = (
                    [ModelKey(symbol=sym, timeframe=timeframe, horizon=self.horizon_of(timeframe))]
                    if sym
                    else self._global_keys(timeframe)
                )
                best: tuple[int, Path] | None = None
                for key in keys:
                    # every row's names, readable or not: a version whose row cannot be read
                    # (not in list()) may be a rejected model; its file never serves from here
                    known = row_names(self.registry.engine, key, include_deleted=True) if self.registry else set()
                    found = [p for p in sorted((self.model_dir / key.dir_name).glob("*.pt")) if p.stem not in known]
                    if not found:
                        continue
                    size = 0 if sym else self._file_symbols(found[-1]).get(symbol.upper(), 0)
                    if (sym or size) and (best is None or size < best[0]):
                        best = (size, found[-1])
                if best is not None:
                    self._files[best[1].stem] = best[1]
                    return best[1].stem
        return None

    def _file_symbols(self, pt: Path) -> dict[str, int]:
        """``{symbol: size of the set}`` of a global model checkpoint's manifest.

        Never raises: a manifest that cannot be read now serves no symbol; one whose set is
        malformed (:func:`~retraining.registry.model_symbols`) serves none either, and is
        logged and given to ``on_rejected`` once.
        """
        js = pt.with_suffix(".json")
        try:
            names = model_symbols(read_manifest(js).get("symbols"), f"version {pt.stem}: {js.name}")
        except OSError:
            return {}  # e.g. a manifest still being written: asked again next time
        except ArtifactError as exc:
            if pt not in self._refused_files:
                self._refused_files.add(pt)
                log.error("model.symbols_refused version=%s reason=%s: serves no symbol", pt.stem, exc)
                if self.on_rejected is not None:
                    self.on_rejected(pt.stem, exc)
            return {}
        return dict.fromkeys(names, len(names))

    def _global_keys(self, timeframe: str) -> list[ModelKey]:
        """Keys of the global models (symbol sets) of ``timeframe`` with a directory under model_dir."""
        assert self.model_dir is not None
        out = []
        for d in sorted(self.model_dir.glob(f"SET*-{timeframe}-h{self.horizon_of(timeframe)}")):
            try:
                key = ModelKey.parse(d.name)
            except ForexDiffusionError:
                continue
            if key.is_symbol_set and key.dir_name == d.name:
                out.append(key)
        return out

    def horizon_of(self, timeframe: str) -> int:
        """The model horizon served at ``timeframe`` (the key is ``(symbol, timeframe, horizon)``)."""
        return self.horizons.get(timeframe, self.horizon)

    def _load(self, version: str) -> Any | None:
        if version in self._loaded:
            return self._loaded[version]
        if version in self.rejected:
            return None
        path = self._files.get(version)
        try:
            # imported here: a worker serving only the random walk (no model yet) never loads
            # torch; a broken install is this model's refusal (the series keeps what it served)
            from forex_diffusion.diffusion.predictor import Predictor

            if path is not None:
                pred = Predictor.load(path, device=self.device)
            else:
                row = self.registry.get(version) if self.registry is not None else None
                if self.registry is None or row is None:
                    return None
                pred = self.registry.load(row, device=self.device)  # weights-only, sha256 checked
        except (ForexDiffusionError, OSError, ImportError) as exc:
            self.rejected[version] = str(exc)[:300]
            # the serving code itself failed to import (a broken torch install, or a bug): with its traceback
            broken = isinstance(exc, ImportError)
            log.error("model.rejected version=%s error=%s", version, type(exc).__name__, exc_info=broken)
            if self.on_rejected is not None:
                self.on_rejected(version, exc)
            return None
        if isinstance(pred, Predictor):
            pred.touch_bands = self.touch_bands
            for name, steps in self.sampling_steps.items():
                if steps > pred.max_steps:
                    log.warning(
                        "model.steps_capped version=%s %s=%d model_max=%d", version, name, steps, pred.max_steps
                    )
        self._loaded[version] = pred
        return pred

    def resolved(self, symbol: str, timeframe: str) -> bool:
        """Whether :meth:`predictor` knows the series already (a lookup without the registry,
        a load or an import); a first lookup may load a model, and torch with the first one."""
        return (symbol, timeframe) in self._serving

    def predictor(self, symbol: str, timeframe: str) -> Any:
        """The predictor serving ``(symbol, timeframe)`` now."""
        cur = self._serving.get((symbol, timeframe))
        if cur is None:
            cur = self._resolve(symbol, timeframe)
        return cur

    def _resolve(self, symbol: str, timeframe: str) -> Any:
        version = self._champion_version(symbol, timeframe)
        pred = self._load(version) if version else None
        prev = self._serving.get((symbol, timeframe))
        chosen = pred or prev or self._fallbacks.get(self.horizon_of(timeframe), self._fallback)
        if pred is None and prev is not None and version is not None:
            log.warning("model.kept version=%s reason=champion %s not loadable", getattr(prev, "version", "?"), version)
        self._serving[(symbol, timeframe)] = chosen
        return chosen

    def shadow_resolved(self, symbol: str, timeframe: str) -> bool:
        """Whether :meth:`shadow` knows the series already (no registry query, no load)."""
        return (symbol, timeframe) in self._shadows

    def shadow(self, symbol: str, timeframe: str) -> Any | None:
        """The version in shadow for the series, loaded (issue 16), or None.

        The series' own key's shadow; else, when a global model serves the series, the
        shadow of that global key if it runs on this symbol
        (:meth:`~retraining.registry.ModelRegistry.shadow_runs_on`: a retrain of a global key
        shadows on the series that asked for it, while the key serves it). One that does not
        load, or that already serves the series, is None. Re-resolved by :meth:`refresh`.
        """
        k = (symbol, timeframe)
        if k not in self._shadows:
            self._resolve_shadow(symbol, timeframe)
        return self._shadows[k]

    def _resolve_shadow(self, symbol: str, timeframe: str) -> None:
        pred = None
        if self.registry is not None:
            h = self.horizon_of(timeframe)
            try:
                row = self.registry.shadow(ModelKey(symbol=symbol, timeframe=timeframe, horizon=h))
                if row is None:
                    row = self._global_shadow(symbol, timeframe)
            except ForexDiffusionError as exc:
                log.warning("model.shadow_unresolved symbol=%s timeframe=%s error=%s", symbol, timeframe, exc)
                row = None
            if row is not None:
                pred = self._load(row.version)
        serving = self._serving.get((symbol, timeframe))
        if pred is not None and serving is not None and getattr(serving, "version", None) == pred.version:
            pred = None
        self._shadows[(symbol, timeframe)] = pred

    def _global_shadow(self, symbol: str, timeframe: str) -> ModelVersion | None:
        """The shadow of the global key whose version serves the series now, if it runs on
        ``symbol`` (one lookup by version: the registry row's key, not the manifest's)."""
        assert self.registry is not None
        version = getattr(self.predictor(symbol, timeframe), "version", None)
        if not isinstance(version, str) or version in self._files:  # the random walk, a file found
            return None
        try:
            row = self.registry.get(version)
        except RegistryError:  # e.g. the random walk's name: no registry row
            return None
        if not row.key.is_symbol_set:
            return None
        shadow = self.registry.shadow(row.key)
        return shadow if shadow is not None and self.registry.shadow_runs_on(shadow) == symbol else None

    def shadow_versions(self) -> dict[tuple[str, str], str]:
        """Version in shadow per ``(symbol, timeframe)`` (series without one are left out)."""
        # a copy: a first lookup in an executor thread may add a series meanwhile
        return {k: str(getattr(v, "version", "?")) for k, v in list(self._shadows.items()) if v is not None}

    def refresh(self) -> dict[tuple[str, str], str]:
        """Re-resolve every key served so far (after an ``fx.models`` record); return versions."""
        for sym, tf in list(self._serving):
            self._resolve(sym, tf)
        for sym, tf in list(self._shadows):
            self._resolve_shadow(sym, tf)
        return {k: getattr(v, "version", "?") for k, v in list(self._serving.items())}

    def versions(self) -> dict[tuple[str, str], str]:
        """Version in service per ``(symbol, timeframe)``."""
        return {k: getattr(v, "version", "?") for k, v in list(self._serving.items())}
