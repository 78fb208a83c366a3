"""Two-sample Kolmogorov-Smirnov test between a reference feature window and the recent one.

Part of :mod:`forex_diffusion.drift`; see its docstring for the detectors and their names.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from scipy import stats as sp_stats

from forex_diffusion.drift.base import _Detector
from forex_diffusion.errors import ConfigError

__all__ = ["KSFeatureDetector"]


class KSFeatureDetector(_Detector):
    """Two-sample Kolmogorov-Smirnov test between a reference feature window and the recent one.

    The reference is the first ``reference_size`` rows after start (or after a detection,
    or what :meth:`set_reference` gives: e.g. the training window). Every ``check_every``
    rows, once both windows are full, each feature is tested with
    :func:`scipy.stats.ks_2samp`; a detection needs a p-value below ``alpha / n_features``
    (Bonferroni). ``statistic`` is the largest KS distance among the rejected features and
    ``threshold`` the asymptotic critical distance at that level. After a detection the
    reference is rebuilt from the rows that follow.

    Parameters
    ----------
    reference_size, recent_size
        Window lengths in rows.
    alpha
        Family-wise false-alarm level per check.
    check_every
        Rows between tests.
    features
        Feature names to test (default: every name seen, so a feature that only appears
        after warm-up is added when it first shows up).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> ks = KSFeatureDetector(reference_size=200, recent_size=100, check_every=10)
    >>> for i in range(600):
    ...     ks.update({"x": rng.gauss(0.0 if i < 400 else 1.5, 1.0)})
    ...     if ks.drift_detected:
    ...         break
    >>> 400 <= i < 500, ks.feature
    (True, 'x')
    """

    def __init__(
        self,
        *,
        reference_size: int = 500,
        recent_size: int = 200,
        alpha: float = 1e-4,
        check_every: int = 50,
        features: Sequence[str] | None = None,
    ) -> None:
        if reference_size < 20 or recent_size < 20 or check_every < 1 or not 0 < alpha < 1:
            raise ConfigError("KS needs windows >= 20 rows, check_every >= 1, alpha in (0, 1)")
        self.name = "ks:features"
        self.reference_size = reference_size
        self.recent_size = recent_size
        self.alpha = alpha
        self.check_every = check_every
        self.features: tuple[str, ...] | None = tuple(features) if features is not None else None
        self._auto = features is None
        self._reference: dict[str, list[float]] = {}
        self._recent: dict[str, deque[float]] = {}
        self._n_ref = 0
        self._since_check = 0
        self._detected = False
        self._statistic = math.nan
        self._threshold = math.nan
        self._feature: str | None = None

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a change."""
        return self._detected

    @property
    def feature(self) -> str | None:
        """The feature with the largest rejected distance at the last detection."""
        return self._feature

    @property
    def reference_ready(self) -> bool:
        """Whether the reference window is full."""
        return self._n_ref >= self.reference_size

    def set_reference(self, rows: Iterable[Mapping[str, float]]) -> None:
        """Replace the reference window with the last ``reference_size`` of ``rows``."""
        rows = list(rows)[-self.reference_size :]
        names = self.features or (tuple(rows[0]) if rows else ())
        self._reference = {k: [float(r[k]) for r in rows if k in r and math.isfinite(r[k])] for k in names}
        self._n_ref = len(rows)

    def update(self, features: Mapping[str, float]) -> None:
        """Feed one feature row (missing or non-finite values are skipped per feature)."""
        self._detected = False
        if self._auto and not features.keys() <= set(self.features or ()):
            # names learned from the data; a feature that appears after warm-up joins late
            self.features = tuple(sorted(set(self.features or ()) | set(features)))
        if not self.features:
            return
        if not self.reference_ready:
            for k in self.features:
                v = features.get(k)
                if v is not None and math.isfinite(v):
                    self._reference.setdefault(k, []).append(float(v))
            self._n_ref += 1
            return
        for k in self.features:
            v = features.get(k)
            if v is not None and math.isfinite(v):
                self._recent.setdefault(k, deque(maxlen=self.recent_size)).append(float(v))
        self._since_check += 1
        if self._since_check < self.check_every:
            return
        self._since_check = 0
        self._test()

    def _test(self) -> None:
        level = self.alpha / max(len(self.features or ()), 1)
        worst: tuple[float, float, str] | None = None
        for k in self.features or ():
            ref = self._reference.get(k, [])
            rec = self._recent.get(k)
            if rec is None or len(rec) < self.recent_size or len(ref) < 20:
                continue
            res = sp_stats.ks_2samp(ref, list(rec), method="asymp")
            if res.pvalue < level:
                n, m = len(ref), len(rec)
                crit = math.sqrt(-math.log(level / 2.0) / 2.0) * math.sqrt((n + m) / (n * m))
                if worst is None or res.statistic > worst[0]:
                    worst = (float(res.statistic), crit, k)
        if worst is not None:
            self._detected = True
            self._statistic, self._threshold, self._feature = worst
            self._reference = {}
            self._recent = {}
            self._n_ref = 0
