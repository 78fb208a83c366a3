"""Huge-jump guard (bad-input catalogue B9): hold a jump until the new level is confirmed.

A tick of one symbol is a *jump* when its mid is far from the last accepted ("good") mid::

    r = |log(mid / last_good_mid)|        jump  <=>  r > max(k * sigma, min_move)

Both bounds must be exceeded: ``k * sigma`` adapts to the symbol's tick noise and
``min_move`` keeps ordinary bursts out (on the real EUR/USD tick files the largest tick
return is 0.22 %, well below the default 0.5 %).

**Estimator.** ``sigma`` is an exponentially weighted mean of the absolute log mid returns
between consecutive *accepted* ticks, ``sigma += a * (r - sigma)``, with ``a = 1/m`` for
the ``m``-th return while ``m < 1/alpha`` (a plain running mean, so the start is not biased
towards 0) and ``a = alpha`` afterwards. It is a mean absolute deviation, not a standard
deviation (for Gaussian returns ``sigma ~= 0.8 * std``). **Warm-up:** nothing is held
before ``warmup`` ticks have been accepted.

**Hold.** A jump is not deleted: it is held (with whatever the caller attached to it),
and the ticks after it decide:

* a tick within the threshold of the *first* held tick's mid confirms the new level; after
  ``confirm`` (M) consecutive confirmations every held tick is released in arrival order,
  ``last_good`` moves to the last of them and the returns between them (not the jump
  itself) are folded into ``sigma``;
* a tick that is not a jump from ``last_good`` (back near the old level) ends the hold: the
  held ticks are quarantined (``spike_unconfirmed``) and that tick passes normally;
* a tick that is a jump from ``last_good`` but far from the held level starts a new hold
  (the previous held ticks are quarantined).

So at most ``confirm`` ticks wait at a time (the next confirmation releases them). A real
level change such as EUR/CHF 1.2011 -> 0.8597 on 2015-01-15 is accepted as soon as M ticks
stay near a new level. The confirmation tolerance is the threshold of before the jump
(``sigma`` does not move during a hold), so a market that keeps printing farther apart than
that (the minutes after the SNB decision) restarts the hold, and the prints in between are
quarantined, until M + 1 consecutive ticks agree; returns of the new regime then raise
``sigma`` and with it the threshold. The guard never moves a price and never decides on
time: the caller owns what a held tick means for its clock (see
:class:`~forex_diffusion.ingest.pipeline.TickPipeline`).

The jump test is done against the precomputed pass band ``last_good * exp(∓threshold)``
(same test, no logarithm per tick); once the start is over, :meth:`SpikeGuard.accept` costs
one logarithm and a few float operations.

>>> g = SpikeGuard(SpikeConfig(warmup=3, confirm=2))
>>> for mid in (1.2011, 1.2012, 1.2010):
...     g.accept(mid)
>>> g.low <= 0.8597 <= g.high, g.classify(0.8597)
(False, 'start')
>>> g.hold("t1", 0.8597), g.classify(0.8600), g.hold("t2", 0.8600)
(None, 'confirm', None)
>>> g.classify(0.8590), g.hold("t3", 0.8590)
('confirm', ['t1', 't2', 't3'])
>>> round(g.last_good or 0.0, 4), g.holding
(0.859, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from forex_diffusion.errors import ConfigError, StateError
from forex_diffusion.ingest.validation import MAX_PRICE
from forex_diffusion.state import count, malformed, number, time_ms, unwrap, wrap

__all__ = ["HeldVerdict", "SpikeConfig", "SpikeCounters", "SpikeGuard"]

T = TypeVar("T")
A = TypeVar("A", int, float)  # where a hold stands: a level (float) or an event time (int)

HeldVerdict = Literal["start", "confirm", "revert", "restart"]
_Expired = tuple[float, int, int]  # an expired hold: its level, its ticks, their latest event time

_log = math.log
_INF = math.inf
#: the largest x whose exp(x) is a float
_MAX_LOG = math.log(2.0**1023 * (2.0 - 2.0**-52))
#: the smallest mid a snapshot may hold: any price up to MAX_PRICE divided by it is a float
_MID_FLOOR = MAX_PRICE * 2.0**-1000


@dataclass(frozen=True, slots=True, kw_only=True)
class SpikeConfig:
    """Huge-jump guard settings (conservative: no hold on the real tick files, see docs).

    enabled: False turns the guard off (every tick passes).
    k: jump bound in units of ``sigma`` (EWMA of absolute log returns); default 25.
    min_move: jump bound as an absolute log return (0.005 ~= 0.5 %); a tick must exceed
        both ``k * sigma`` and ``min_move`` to be held.
    alpha: EWMA weight of the newest return (0.01: a memory of about 100 ticks).
    warmup: accepted ticks of a symbol before anything can be held.
    confirm: M, the consecutive ticks near the new level that accept it.
    """

    enabled: bool = True
    k: float = 25.0
    min_move: float = 0.005
    alpha: float = 0.01
    warmup: int = 100
    confirm: int = 3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k) and self.k > 0):
            raise ConfigError("k must be a positive finite number")
        if not (0 < self.min_move < 1):
            raise ConfigError("min_move must be in (0, 1)")
        if not (0 < self.alpha <= 1):
            raise ConfigError("alpha must be in (0, 1]")
        if type(self.warmup) is not int or self.warmup < 2:
            raise ConfigError("warmup must be an int >= 2")
        if type(self.confirm) is not int or not (1 <= self.confirm <= 100):
            raise ConfigError("confirm must be an int in [1, 100]")


@dataclass(slots=True)
class SpikeCounters:
    """What the guards of one pipeline did, summed over symbols."""

    holds: int = 0  # holds started
    confirmed: int = 0  # holds that ended with the new level accepted
    unconfirmed: int = 0  # holds that ended in quarantine
    released: int = 0  # ticks released by confirmed holds
    quarantined: int = 0  # ticks quarantined as spike_unconfirmed


class Holding(Generic[T, A]):
    """What a guard that holds items until they are confirmed shows of them (``_held``), and
    what it remembers of a hold that expired on a quiet feed (its ``expire``).

    A memory is ``(anchor, ticks, latest)``: where the expired hold stood (a level, an event
    time: ``A``), how many confirmations it had counted and the latest event time of its
    ticks. ``_expired`` is the memory waiting for the next tick; ``_carry`` the one the hold
    in progress goes on. A subclass says when a value is near an anchor (``_near``).
    """

    __slots__ = ("_expired", "_carry")
    state_kind: str
    _held: list[T]
    _expired: tuple[A, int, int] | None
    _carry: tuple[A, int, int] | None

    @property
    def holding(self) -> bool:
        """Whether ticks are held, waiting for confirmation."""
        return bool(self._held)

    @property
    def held(self) -> tuple[T, ...]:
        """The held items, in arrival order."""
        return tuple(self._held)

    def _near(self, x: A, anchor: A) -> bool:
        raise NotImplementedError

    def continued_ms(self, x: A) -> int | None:
        """The latest event time of the expired ticks that a tick at ``x`` goes on
        confirming (those the hold in progress took over, or those of the expired hold a tick
        near it takes over), or None: lateness is judged as if they were still held, as in a
        file."""
        if self._held:
            return None if self._carry is None else self._carry[2]
        e = self._expired
        return e[2] if e is not None and self._near(x, e[0]) else None

    def _taken_over(self, x: A) -> tuple[A, int, int] | None:
        """The expired hold a hold starting at ``x`` goes on (None: none); forgotten either way."""
        expired, self._expired = self._expired, None
        if expired is None or not self._near(x, expired[0]):
            return None
        return expired

    def _anchor(self, first: A) -> A:
        """Where the hold in progress stands: its first value, or the expired hold it goes on."""
        return first if self._carry is None else self._carry[0]

    def _counted(self) -> int:
        """Confirmations the hold in progress has counted (its held items and those it took over)."""
        return len(self._held) + (0 if self._carry is None else self._carry[1])

    def _remember(self, first: A, latest_ms: int, confirm: int) -> list[T]:
        """End the hold in progress (its first value ``first``, its latest event time at least
        ``latest_ms``) and remember it as expired; return the held items."""
        memory = self._carry or (first, 0, latest_ms)
        anchor, ticks, latest = memory[0], min(confirm, self._counted()), max(memory[2], latest_ms)
        items = self.end_hold()
        self._expired = (anchor, ticks, latest)
        return items

    def end_hold(self) -> list[T]:
        raise NotImplementedError

    def _memory_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with the memories that are present (absent keys: older workers read it)."""
        if self._expired is not None:
            state["expired"] = list(self._expired)
        if self._carry is not None:
            state["carry"] = list(self._carry)
        return state

    def _check_memory(
        self,
        expired: tuple[A, int, int] | None,
        carry: tuple[A, int, int] | None,
        held: int,
        started: bool,
        confirm: int,
    ) -> None:
        """Refuse restored memories that cannot stand beside ``held`` items: an expired hold
        waits only while nothing is held in a started series; a carried one only under a hold
        whose count stays within ``confirm``."""
        if (expired is not None and (held or not started)) or (
            carry is not None and (not started or not held or held + carry[1] > confirm)
        ):
            what = self.state_kind.replace("_", " ")
            raise StateError(f"{what} snapshot's expired hold does not fit its held ticks")

    def _fitting(
        self, expired: tuple[A, int, int] | None, carry: tuple[A, int, int] | None
    ) -> tuple[tuple[A, int, int] | None, tuple[A, int, int] | None]:
        """The restored memories that stand where a hold can stand (the rest forgotten): an
        anchor that is a jump from the series (:meth:`_jumps`), ticks no later than one
        reach from it (:meth:`_spans`), a carried one near the first held value. A guard never
        writes another; one edited, or written under other settings (``k``, ``max_jump``),
        made every tick near a stale anchor late, or counted confirmations it never saw.
        Forgetting one loses nothing but those confirmations."""

        def fits(m: tuple[A, int, int] | None) -> bool:
            return m is not None and self._jumps(m[0]) and self._spans(m[0], m[2])

        carry_fits = carry is not None and fits(carry) and self._near(self._first(), carry[0])
        return (expired if fits(expired) else None), (carry if carry_fits else None)

    def forget_after(self, latest_ms: int) -> None:
        """Forget a restored memory whose ticks are later than ``latest_ms``: the series'
        time, when the ticks this guard holds passed a time guard first (they cannot be later
        than the time it took from them). One edited a year ahead made every tick near its
        anchor late."""
        if self._expired is not None and self._expired[2] > latest_ms:
            self._expired = None
        if self._carry is not None and self._carry[2] > latest_ms:
            self._carry = None

    def _jumps(self, anchor: A) -> bool:
        raise NotImplementedError

    def _spans(self, anchor: A, latest_ms: int) -> bool:
        """Whether ticks near ``anchor`` can reach ``latest_ms`` (no bound by default)."""
        return True

    def _first(self) -> A:
        raise NotImplementedError


class SpikeGuard(Holding[T, float]):
    """Hold huge mid jumps of one symbol until ``confirm`` ticks confirm the new level.

    Hot path: a mid inside the pass band ``low <= mid <= high`` is not a jump (and nothing
    is held); the caller keeps the tick and calls :meth:`accept`. The band is
    ``last_good * exp(∓threshold)`` once warm, everything during warm-up, and empty while
    ticks are held (or the next tick decides whether an expired hold goes on: :meth:`expire`),
    so one comparison covers the cases without a logarithm.
    Otherwise the caller asks :meth:`classify` (``start`` when nothing is held) and acts:
    ``start``/``confirm`` → :meth:`hold`; ``restart`` → :meth:`end_hold` then :meth:`hold`;
    ``revert`` → :meth:`end_hold` then :meth:`accept`. Held items are opaque to the guard.
    """

    __slots__ = (
        "config",
        "n",
        "last_good",
        "sigma",
        "threshold",
        "low",
        "high",
        "_f_lo",
        "_f_hi",
        "_wide",
        "_held",
        "_held_mids",
        "_k",
        "_min",
        "_alpha",
        "_switch",
        "_warmup",
        "_steady",
        "_bind",
    )

    state_kind = "spike_guard"
    state_version = 1

    def __init__(self, config: SpikeConfig | None = None) -> None:
        cfg = config or SpikeConfig()
        self.config = cfg
        self._k = cfg.k
        self._min = cfg.min_move
        self._alpha = cfg.alpha
        self._switch = 1.0 / cfg.alpha
        self._warmup = cfg.warmup
        self._steady = max(cfg.warmup, math.ceil(self._switch))  # accept's fast path from here
        self._bind = cfg.min_move / cfg.k  # sigma above this: k * sigma binds
        self.reset()

    def reset(self) -> None:
        """Forget everything (warm-up starts again; held items are dropped)."""
        self.n = 0  # accepted ticks, counted until the start is over (then it stops)
        self.last_good: float | None = None
        self.sigma = 0.0
        self._set_threshold(self._min)
        self.low, self.high = 0.0, _INF  # the pass band: everything during warm-up
        self._held: list[T] = []
        self._held_mids: list[float] = []
        self._expired: _Expired | None = None  # see expire()
        self._carry: _Expired | None = None  # the expired hold the one in progress goes on

    def _set_threshold(self, t: float) -> None:
        if t <= self._min:
            t = self._min
        elif t > _MAX_LOG:  # exp(t) a float whatever sigma a restored level made (no jump is that far)
            t = _MAX_LOG
        self.threshold = t
        self._wide = t > self._min
        self._f_lo, self._f_hi = math.exp(-t), math.exp(t)

    def _set_band(self) -> None:
        last = self.last_good
        if self._held or self._expired is not None:  # the next tick goes to classify
            self.low, self.high = _INF, -_INF
        elif last is None or self.n < self._warmup:
            self.low, self.high = 0.0, _INF
        else:
            self.low, self.high = last * self._f_lo, last * self._f_hi

    # -- hot path ---------------------------------------------------------------------------

    def accept(self, mid: float) -> None:
        """Take ``mid`` as the new good mid: fold its return into ``sigma``, move the band."""
        if self.n < self._steady:  # warm-up or the running-mean start of sigma
            self._accept_start(mid)
            return
        # steady state: n stops counting (it only gates the start), a few float ops
        r = _log(mid / self.last_good)  # type: ignore[operator]
        sigma = self.sigma
        sigma += ((r if r > 0.0 else -r) - sigma) * self._alpha
        self.sigma = sigma
        self.last_good = mid
        if sigma > self._bind or self._wide:  # k * sigma > min_move: the threshold follows sigma
            self._set_threshold(self._k * sigma)
        self.low = mid * self._f_lo
        self.high = mid * self._f_hi

    def _accept_start(self, mid: float) -> None:
        n = self.n
        last = self.last_good
        if last is not None:
            r = _log(mid) - _log(last)  # the start only: no ratio of extreme prices underflows to 0
            sigma = self.sigma
            sigma += ((r if r > 0.0 else -r) - sigma) * (1.0 / n if n < self._switch else self._alpha)
            self.sigma = sigma
            self._set_threshold(self._k * sigma)
        self.last_good = mid
        self.n = n = n + 1
        if n >= self._warmup:
            self.low = mid * self._f_lo
            self.high = mid * self._f_hi

    def is_jump(self, mid: float) -> bool:
        """Return whether ``mid`` is a jump from the last good mid (never during warm-up)."""
        last = self.last_good
        if last is None or self.n < self._warmup:
            return False
        return not (last * self._f_lo <= mid <= last * self._f_hi)

    # -- hold -------------------------------------------------------------------------------

    def classify(self, mid: float) -> HeldVerdict:
        """Judge ``mid`` outside the pass band (pure).

        ``revert``: not a jump from the last good mid (ends a hold). ``start``: a jump and
        nothing is held. ``confirm``: within the threshold of the first held mid.
        ``restart``: a jump to a third level. (A hold that goes on an expired one is judged
        by that one's level: :meth:`expire`.)
        """
        if not self.is_jump(mid):
            return "revert"
        if not self._held:
            return "start"
        return "confirm" if self._near(mid, self._anchor(self._held_mids[0])) else "restart"

    def hold(self, item: T, mid: float) -> list[T] | None:
        """Hold ``item`` whose mid is ``mid``; return every held item once the level is confirmed.

        The first held item sets the level; each later one must have been judged
        ``confirm`` by :meth:`classify`. On the ``confirm``-th confirmation the held items
        are returned in arrival order, ``last_good`` becomes the last one's mid and the
        returns between them (not the jump) are folded into ``sigma``. A hold that starts
        near the level of the hold just expired (:meth:`expire`) goes on counting its
        confirmations.
        """
        if not self._held:
            self._carry = self._taken_over(mid)
        self._held.append(item)
        self._held_mids.append(mid)
        if self._counted() <= self.config.confirm:
            self.low, self.high = _INF, -_INF  # empty band: every tick goes to classify
            return None
        items, mids = self._held, self._held_mids
        self._held, self._held_mids, self._carry = [], [], None
        self.last_good = mids[0]
        self.n += 1
        for m in mids[1:]:
            self.accept(m)
        self._set_band()
        return items

    @property
    def held_mids(self) -> tuple[float, ...]:
        """The mids of the held items, in arrival order."""
        return tuple(self._held_mids)

    def _near(self, x: float, anchor: float) -> bool:
        return anchor * self._f_lo <= x <= anchor * self._f_hi

    def _jumps(self, anchor: float) -> bool:
        return self.is_jump(anchor)

    def _first(self) -> float:
        return self._held_mids[0]

    def end_hold(self) -> list[T]:
        """Stop holding; return the held items (the caller quarantines them)."""
        items = self._held
        self._held, self._held_mids, self._carry, self._expired = [], [], None, None
        self._set_band()
        return items

    def expire(self, latest_ms: int) -> list[T]:
        """Stop holding because the feed went quiet; return the held items (the caller
        quarantines them), but remember their level, their count and ``latest_ms``, the
        latest event time among them (the guard does not read its items).

        Quiet time says nothing of the level: a thin feed (a tick every 15 s, an idle close
        after 10 s) had each tick of a real new level held alone, expired and quarantined, for
        ever, while the same ticks in a file confirmed it. The next hold that starts near this
        level, with no good tick in between, counts these ticks among its ``confirm``: the
        level is accepted after ``confirm`` + 1 consecutive ticks near it, quiet or not (the
        ticks already expired stay quarantined).
        """
        if not self._held:
            return []
        items = self._remember(self._held_mids[0], latest_ms, self.config.confirm)
        self._set_band()  # empty: the next tick, near the old level or not, ends or goes on it
        return items

    # -- state ------------------------------------------------------------------------------

    def snapshot(self, encode: Callable[[T], Any]) -> dict[str, Any]:
        """Plain-data state (in the envelope); ``encode`` turns a held item into JSON-able data."""
        state: dict[str, Any] = {
            "n": self.n,
            "last_good": self.last_good,
            "sigma": self.sigma,
            "held": [[m, encode(x)] for m, x in zip(self._held_mids, self._held, strict=True)],
        }
        return wrap(self, self._memory_state(state))

    def restore(self, data: dict[str, Any], decode: Callable[[Any], T]) -> None:
        """Inverse of :meth:`snapshot` (``decode`` inverts its ``encode``); the bare layout
        written before the envelope is read too."""
        state = unwrap(data, self, legacy=lambda old: old)
        with malformed(self):
            # a mid is a price (in (0, MAX_PRICE], the wire's bound: the next tick divides by it
            # and takes a logarithm); sigma a mean absolute log return (>= 0, exp(k * sigma) a float)
            n, last = count(state["n"], field="n"), state["last_good"]
            sigma = number(state["sigma"], low=0.0, high=_MAX_LOG / self._k, field="sigma")
            last = None if last is None else number(last, low=_MID_FLOOR, high=MAX_PRICE, field="last_good")
            raw = state["held"]
            if isinstance(raw, list) and len(raw) > self.config.confirm:  # before decoding a long list
                raise StateError("spike guard snapshot holds more ticks than confirm allows")
            held = [(number(m, low=_MID_FLOOR, high=MAX_PRICE, field="held mid"), decode(x)) for m, x in raw]
            expired, carry = (self._level(state.get(key), key) for key in ("expired", "carry"))
        if (last is None) != (n == 0):
            raise StateError("malformed spike guard snapshot")
        if len(held) > self.config.confirm or (held and last is None):
            raise StateError(
                "spike guard snapshot holds more ticks than confirm allows, or holds ticks before any was accepted"
            )
        self._check_memory(expired, carry, len(held), last is not None, self.config.confirm)
        self.reset()
        self.n, self.sigma = n, sigma
        self.last_good = last
        self._set_threshold(self._k * sigma)
        self._held_mids = [m for m, _ in held]
        self._held = [x for _, x in held]
        self._expired, self._carry = self._fitting(expired, carry)
        self._set_band()

    def _level(self, data: Any, field: str) -> _Expired | None:
        """An expired hold's ``[level, ticks, latest time]`` read back (ticks in [1, confirm];
        absent: None)."""
        if data is None:
            return None
        level, ticks, latest = data
        if type(ticks) is not int or not (1 <= ticks <= self.config.confirm):
            raise StateError(f"spike guard snapshot's {field} ticks must be an int in [1, confirm], got {ticks!r}")
        level = number(level, low=_MID_FLOOR, high=MAX_PRICE, field=f"{field} level")
        return level, ticks, time_ms(latest, field=f"{field} latest time")
