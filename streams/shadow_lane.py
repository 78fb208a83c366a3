"""The candle agent's shadow lane (issue 16): a challenger in shadow forecasts beside the champion.

For every series whose own key has a version in shadow (:meth:`ModelBook.shadow
<retraining.serving.ModelBook.shadow>`), each champion forecast the agent emits is followed
by the shadow's forecast of the same request (same seeding rule: the predictor seeds from
symbol, timeframe, origin and its own version; same sampling budget). Shadow forecasts are
**not published** -- neither on ``fx.forecasts`` nor in the ``forecasts`` table: consumers
only ever see the champion. They are kept beside the champion's in a
:class:`~forex_diffusion.quality.shadow.ShadowTracker` (checkpointed with the partition's state),
realised by the following candles, and each fully realised origin becomes a
``shadow_scores`` row, stored in the same transaction as the checkpoint (the consumer's
effects buffer, :mod:`streams.consumer`). After each
checkpoint (and every 15 s) :func:`~retraining.shadow_verdict.settle_shadow` decides the shadows
that have enough realised forecasts; on a decision the model book is refreshed first, then
the decision is announced on ``fx.models`` like a job's outcome (whoever reads it finds this
worker serving by it). Degraded batches (the worker is behind) make no
shadow forecasts. Nothing here can stop the champion's path: its errors are logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ForexDiffusionError
from forex_diffusion.forecast.batching import steps_for
from forex_diffusion.quality.shadow import ShadowTracker
from retraining.records import JobOutcome, encode_outcome
from retraining.registry import serving_champion
from retraining.serving import ModelBook
from retraining.shadow_verdict import ShadowState, settle_shadow

if TYPE_CHECKING:
    from forex_diffusion.diffusion.context import ForecastRequest
    from forex_diffusion.forecast.forecaster import CandleOutcome

    from .metrics import Metrics

__all__ = ["ShadowLane"]

log = logging.getLogger(__name__)


class ShadowLane:
    """Shadow forecasts, their realised scores and the decisions, for one candle agent.

    Parameters
    ----------
    models
        The agent's model book (champions and shadows).
    metrics
        Returns the worker's metrics (or None).
    send
        Queues one ``(topic kind, key, value)`` record with the agent's next checkpoint.
    store
        Queues one realised ``shadow_scores`` row of a partition with its next checkpoint.
    """

    def __init__(
        self,
        models: ModelBook,
        *,
        metrics: Callable[[], Metrics | None],
        send: Callable[[str, bytes, bytes], None],
        store: Callable[[int, dict[str, Any]], None],
    ) -> None:
        self.models = models
        self.metrics = metrics
        self.send = send
        self.store = store
        self.tracker = ShadowTracker()
        self.forecasts = 0  # shadow forecasts made
        self.errors = 0
        self._settling = asyncio.Lock()
        # settle() runs in the background after a checkpoint: the loop keeps only weak
        # references to tasks, so they are held here until done
        self._background: set[asyncio.Future[list[ShadowState]]] = set()

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self, symbols: Iterable[str]) -> dict[str, Any]:
        """The unrealised pairs of a partition's symbols (part of its checkpointed state)."""
        return self.tracker.snapshot(symbols)

    def restore(self, data: Any) -> None:
        """Add a partition's checkpointed pairs (None: a state from before the shadow lane)."""
        if data is not None:
            self.tracker.restore(data)

    def drop(self, symbols: Iterable[str]) -> None:
        """Forget a revoked partition's pairs (its next owner replays them)."""
        self.tracker.drop(symbols)

    # -- the stream ----------------------------------------------------------------------------

    def on_candle(self, partition: int, candle: Candle) -> None:
        """A new closed candle (never a duplicate): realise one step of its series' pairs."""
        try:
            for r in self.tracker.on_candle(candle):
                self.store(partition, r.row())
        except Exception:  # noqa: BLE001 - the shadow never stops the champion's path
            self.errors += 1
            log.exception("shadow.score_failed symbol=%s timeframe=%s", candle.symbol, candle.timeframe)

    async def forecast(
        self,
        done: list[tuple[int, CandleOutcome, Any]],
        request_of: Callable[[CandleOutcome, Any], ForecastRequest | None],
        *,
        steps: int | None,
        samples: int | None,
        degraded: bool,
    ) -> int:
        """Forecast with the shadows of the series just forecast by their champions.

        ``done`` holds ``(partition, outcome, champion forecast)``; ``request_of(outcome,
        predictor)`` builds a predictor's request as the champion's was built. Returns the
        number of shadow forecasts kept.
        """
        if degraded or not done:
            return 0
        groups: dict[int, tuple[Any, list[tuple[int, CandleOutcome, Any, ForecastRequest]]]] = {}
        loop = asyncio.get_running_loop()
        for p, o, fc in done:
            try:
                key = (o.candle.symbol, o.candle.timeframe)
                if self.models.shadow_resolved(*key):
                    sp = self.models.shadow(*key)
                else:  # a registry query and maybe a model's load: not on the loop
                    sp = await loop.run_in_executor(None, self.models.shadow, *key)
                if sp is None or getattr(sp, "version", None) == fc.model_version:
                    continue
                r = request_of(o, sp)
            except Exception:  # noqa: BLE001
                self.errors += 1
                log.exception("shadow.request_failed symbol=%s", o.candle.symbol)
                continue
            if r is not None:
                groups.setdefault(id(sp), (sp, []))[1].append((p, o, fc, r))
        kept = 0
        for sp, items in groups.values():
            reqs = [r for *_, r in items]
            try:
                fcs = await loop.run_in_executor(
                    None, partial(sp.forecast, reqs, steps=steps_for(sp, steps), samples=samples)
                )
            except Exception as exc:  # noqa: BLE001 - a failing shadow only realises fewer forecasts
                self.errors += 1
                log.error("shadow.forecast_failed model=%s error=%s", getattr(sp, "version", "?"), type(exc).__name__)
                continue
            for (p, o, champion, _r), sfc in zip(items, fcs, strict=True):
                if self.tracker.add(sfc, champion, sigma=o.sigma):
                    kept += 1
                for realised in self.tracker.drain():
                    self.store(p, realised.row())
        self.forecasts += kept
        return kept

    # -- checkpoints and decisions ---------------------------------------------------------------

    def persisted(self, rows: Iterable[dict[str, Any]]) -> None:
        """The checkpoint holding ``rows`` is durable: settle the shadows they belong to (in the background)."""
        versions = {r["version"] for r in rows}
        if versions:
            task = asyncio.ensure_future(self.settle(versions))
            self._background.add(task)
            task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Future[list[ShadowState]]) -> None:
        """A background settle ended: forget it, and log an error it raised (the 15 s timer retries)."""
        self._background.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.errors += 1
            log.error("shadow.settle_error error=%s: %s", type(exc).__name__, str(exc)[:200])

    def versions(self) -> set[str]:
        """The versions in shadow that this worker's series run."""
        return set(self.models.shadow_versions().values())

    async def settle(self, versions: Iterable[str] | None = None) -> list[ShadowState]:
        """Decide the shadows of ``versions`` (default: every one running here) that have enough
        realised forecasts; export where each stands; apply the decisions, then announce them."""
        wanted = sorted(self.versions() if versions is None else set(versions))
        if not wanted or self.models.registry is None:
            return []
        reg = self.models.registry
        loop = asyncio.get_running_loop()
        out: list[ShadowState] = []
        decided: list[tuple[ShadowState, str | None]] = []
        async with self._settling:
            for version in wanted:

                def one(version: str = version) -> tuple[ShadowState, str | None]:
                    st = settle_shadow(reg, version)
                    if not st.decided_now:
                        return st, None
                    try:  # the decision is stored (once): a failed lookup only leaves the champion unnamed
                        champion = serving_champion(reg, st.version.key)
                    except ForexDiffusionError as exc:
                        log.warning("shadow.champion_unresolved version=%s error=%s", version, exc)
                        return st, None
                    return st, None if champion is None else champion.version

                try:
                    st, champion = await loop.run_in_executor(None, one)
                except ForexDiffusionError as exc:
                    log.warning("shadow.settle_failed version=%s error=%s", version, exc)
                    continue
                out.append(st)
                self._export(st)
                if st.decided_now:
                    decided.append((st, champion))
            if decided:
                # the book first, then the announcement: whoever reads the decision on
                # fx.models finds this worker serving by it (a promoted shadow forecasts the
                # next candle, a rejected one no longer shadows)
                try:
                    await loop.run_in_executor(None, self.models.refresh)
                except ForexDiffusionError as exc:  # the 15 s refresh retries; the decision stands
                    log.warning("shadow.refresh_failed error=%s", exc)
                for st, champion in decided:
                    self._announce(st, champion)
        return out

    def _export(self, st: ShadowState) -> None:
        m = self.metrics()
        if m is None:
            return
        key = str(st.version.key)
        if st.state == "waiting":
            m.shadow_progress(
                key,
                st.version.version,
                realised=st.realised,
                required=st.required,
                crps=st.scores.crps,
                champion_crps=st.scores.champion_crps,
            )
        else:
            m.shadow_ended(key, st.state if st.decided_now and st.state in ("promoted", "rejected") else None)

    def _announce(self, st: ShadowState, champion: str | None) -> None:
        v = st.version
        outcome = JobOutcome(
            request_id=v.request_id or "shadow",
            key=str(v.key),
            symbol=v.key.symbol,
            timeframe=v.key.timeframe,
            horizon=v.key.horizon,
            version=v.version,
            status="promoted" if st.state == "promoted" else "rejected",
            reason=st.reason,
            metrics={"shadow": st.scores.to_dict(), "required": st.required},
            champion=champion,
            artifact=None if self.models.registry is None else str(self.models.registry.path_of(v)),
            sha256=v.sha256,
            finished_at_ms=int(time.time() * 1000),
        )
        try:
            self.send("models", v.key.symbol.encode(), encode_outcome(outcome))
        except ForexDiffusionError as exc:
            log.error("shadow.announce_failed version=%s error=%s", v.version, exc)
        log.info("shadow.%s version=%s key=%s reason=%s", outcome.status, v.version, v.key, st.reason)
