"""Step-time spread in bounded memory: a histogram of log-spaced buckets, read back as percentiles."""

from __future__ import annotations

import math

# Bucket edges grow by 2%: a percentile read as its bucket's geometric middle is within 1% (sqrt(1.02) - 1)
# of the exact value, well inside the 5% promised, and steps from 100 ns to a day need under 1,500 buckets.
BUCKET_RATIO = 1.02
SMALLEST_S = 1e-7


class LogHistogram:
    """Counts of values (seconds) per log-spaced bucket: memory grows with their range, not their number.

    ``quantile(q)`` follows the nearest-rank definition (the smallest value with at least ``q`` of the values
    at or below it), estimated as the geometric middle of that value's bucket; ``max`` is kept exactly.
    """

    def __init__(self, ratio: float = BUCKET_RATIO, smallest: float = SMALLEST_S) -> None:
        if ratio <= 1 or smallest <= 0:
            raise ValueError(
                f"LogHistogram(ratio={ratio!r}, smallest={smallest!r}) needs ratio > 1 and smallest > 0"
            )
        self._log_ratio = math.log(ratio)
        self._smallest = smallest
        self.counts: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, value: float) -> None:
        index = 0 if value <= self._smallest else int(math.log(value / self._smallest) / self._log_ratio) + 1
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        if value > self.max:
            self.max = value

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 < q <= 1) of the values added; 0.0 when there are none."""
        if not 0 < q <= 1:
            raise ValueError(f"LogHistogram.quantile(q={q!r}) needs 0 < q <= 1")
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(self._middle(index), self.max)
        return self.max  # not reached: the counts add up to self.count

    def _middle(self, index: int) -> float:
        if index == 0:
            return self._smallest
        return self._smallest * math.exp((index - 0.5) * self._log_ratio)
