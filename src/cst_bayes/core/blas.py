"""BLAS on one thread for the small dense algebra of statistics, refits and weighting."""

from __future__ import annotations

import contextlib


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """BLAS limited to one thread inside the ``with`` block.

    The matrices here are small (agencies x at most 13 columns, a few dozen replicates):
    more threads only add contention. On a shared 2-core machine, with the two BLAS runtimes a
    fitted model's imports load, batched GLM refits ran ~7x slower and the frequentist fits
    ~10x. One thread also makes the last bit of a sum independent of the core count.
    """
    from threadpoolctl import threadpool_limits  # a declared dependency

    return threadpool_limits(limits=1)
