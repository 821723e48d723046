"""Shared per-frame arrays and the observed-statistics cache (cst_bayes.checks.tablestats).

References: the arrays are rebuilt from pandas in the test (get_dummies, column selection);
the cached observed statistics are compared with a fresh run of the frequentist code; the
one-thread BLAS statistics with the same statistics under two BLAS threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cst_bayes.checks import tablestats as T
from cst_bayes.core.blas import one_blas_thread
from cst_bayes.core.config import APPROACHES, COUNT, STRATA, STRATUM

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "reconstructed"


@pytest.fixture(scope="module")
def members():
    from cst_bayes.data.ensemble import load_frames

    if not list(SHIPPED.glob("reconstruction-*.csv")):
        pytest.fail("no shipped ensemble in data/reconstructed")
    return load_frames(SHIPPED)[:3]


def test_frame_design_equals_fresh_pandas_conversions(members):
    for df in members:
        fd = T.FrameDesign(df)
        oh = pd.get_dummies(df[STRATUM].astype(str)).reindex(columns=list(STRATA), fill_value=0)
        np.testing.assert_array_equal(fd.onehot, oh.to_numpy(dtype=float))
        np.testing.assert_array_equal(fd.approaches, df[list(APPROACHES)].to_numpy(dtype=float))
        np.testing.assert_array_equal(fd.counts, df[list(APPROACHES)].sum(axis=1).to_numpy())
        for a in APPROACHES:
            np.testing.assert_array_equal(fd.column(a), df[a].to_numpy(dtype=float))
        assert T.frame_design(fd) is fd
        ones = np.ones((len(df), 1))
        xa, xc = df[list(APPROACHES)].to_numpy(float), df[[COUNT]].to_numpy(float)
        dummies = oh.to_numpy(float)[:, 1:]  # reference stratum 1-49 is STRATA[0]
        assert STRATA[0] == "1-49"
        ref = {
            ("1", "no"): np.hstack([ones, xa]),
            ("1", "yes"): np.hstack([ones, xa, dummies]),
            ("2", "no"): np.hstack([ones, xc]),
            ("2", "yes"): np.hstack([ones, xc, dummies]),
        }
        for key, (X, terms) in fd.table3.items():
            np.testing.assert_array_equal(X, ref[key])
            assert len(terms) == X.shape[1] - 1


def test_statistics_from_a_frame_design_equal_those_from_the_frame(members):
    rng = np.random.default_rng(4)
    df = members[0]
    Y = (rng.random((6, len(df))) < df["any_cst"].mean()).astype(float)
    tabs = ("table1", "fig1", "table3")
    np.testing.assert_array_equal(
        T.batched_statistics(T.FrameDesign(df), Y, tables=tabs),
        T.batched_statistics(df, Y, tables=tabs),
    )


def test_observed_statistics_are_cached_by_content_only(members, monkeypatch):
    tabs = ("table1", "fig1", "table3")
    df = members[1]
    fresh = T._frequentist_statistics(df, tables=tabs)
    np.testing.assert_array_equal(T.frequentist_statistics(df, tables=tabs), fresh)
    # the same content in a new frame hits the cache and gives the same numbers
    with monkeypatch.context() as m:
        m.setattr(T, "_frequentist_statistics", lambda *a, **k: pytest.fail("not cached"))
        np.testing.assert_array_equal(T.frequentist_statistics(df.copy(), tables=tabs), fresh)
    # a changed outcome is a different frame: never a stale answer
    changed = df.copy()
    i = int(np.flatnonzero(changed["any_cst"].to_numpy() == 1)[0])
    changed.loc[changed.index[i], "any_cst"] = 0
    assert T.frame_fingerprint(changed) != T.frame_fingerprint(df)
    got = T.frequentist_statistics(changed, tables=tabs)
    np.testing.assert_array_equal(got, T._frequentist_statistics(changed, tables=tabs))
    assert not np.array_equal(got, fresh, equal_nan=True)
    # the cached array is not the caller's to change
    got[:] = -1
    np.testing.assert_array_equal(
        T.frequentist_statistics(changed, tables=tabs),
        T._frequentist_statistics(changed, tables=tabs),
    )


def test_one_blas_thread_moves_the_statistics_by_rounding_only(members):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(9)
    tabs = ("table1", "fig1", "table3")
    for df in members:
        Y = (rng.random((12, len(df))) < df["any_cst"].mean()).astype(float)
        with threadpool_limits(limits=2):
            two = T.batched_statistics(df, Y, tables=tabs)
        with one_blas_thread():
            one = T.batched_statistics(df, Y, tables=tabs)
        np.testing.assert_allclose(one, two, rtol=1e-10, atol=0)
        assert np.isfinite(one).mean() > 0.9


def test_a_frame_pandas_cannot_hash_is_computed_and_not_kept(members):
    tabs = ("table1",)
    df = members[2].assign(notes=[[0]] * len(members[2]))  # list cells: unhashable
    with pytest.raises(TypeError):
        T.frame_fingerprint(df)
    before = len(T._OBSERVED)
    np.testing.assert_array_equal(
        T.frequentist_statistics(df, tables=tabs),
        T._frequentist_statistics(members[2], tables=tabs),
    )
    assert len(T._OBSERVED) == before


def test_batched_glm_on_distinct_rows_equals_the_row_by_row_fit():
    # the collapsed likelihood (outcome sums and multiplicities per distinct design row) is the
    # same function, so the MLE (and which replicates have none) must not move
    rng = np.random.default_rng(3)
    n = 2000
    X = np.column_stack(
        [np.ones(n), rng.integers(0, 2, (n, 3)), rng.integers(0, 4, n) == 2]
    ).astype(float)
    assert len(np.unique(X, axis=0)) < n // 2
    for link in ("logit", "log"):
        eta = X @ np.array([-1.0, 0.7, -0.4, 0.2, 1.1])
        mean = 1 / (1 + np.exp(-eta)) if link == "logit" else np.exp(eta - 1)
        Y = (
            (rng.random((40, n)) < mean).astype(float)
            if link == "logit"
            else rng.poisson(np.broadcast_to(mean, (40, n))).astype(float)
        )
        Y[0, X[:, 1] == 1] = 0.0  # a replicate with quasi-separation: no finite MLE
        collapsed = T.batched_glm(X, Y, link=link)
        rowwise = T._newton(X, Y, np.ones(n), link=link, max_iter=100, tol=1e-10)
        np.testing.assert_array_equal(np.isnan(collapsed), np.isnan(rowwise))
        np.testing.assert_allclose(collapsed, rowwise, rtol=1e-9, atol=1e-9)
        assert np.isnan(collapsed[0]).all() and np.isfinite(collapsed[1:]).all()
