"""``cifarbench tune``: from a verdict to a measured cure.

A short bounded fit, its verdict, the top finding's next move (a few config overrides), a second fit, the two
compared on the measure the finding is about, the move kept if it beats the measured noise; and again, until
the run is compute-bound, no move helps, or the trials run out (:mod:`cifarbench.tuning.search`).
"""
