"""Design helpers: distinct rows as NumPy gives them, faster."""

from __future__ import annotations

import numpy as np
import pytest

from cst_bayes.bayes.design import unique_rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unique_rows_equals_numpy_unique_axis0(seed):
    rng = np.random.default_rng(seed)
    a = np.column_stack(
        [
            rng.integers(0, 4, 5000),
            rng.integers(0, 2, (5000, 6)),
            rng.choice([-1.5, 0.0, 2.25, 7.0], 5000),
            rng.integers(0, 10, 5000) - 3.0,
        ]
    ).astype(float)
    a[::7, 1] = -0.0  # a negative zero is the same value
    want_u, want_first, want_inv = np.unique(a, axis=0, return_index=True, return_inverse=True)
    u, first, inv = unique_rows(a)
    np.testing.assert_array_equal(u, want_u)
    np.testing.assert_array_equal(first, want_first)
    np.testing.assert_array_equal(inv, np.asarray(want_inv).ravel())


def test_unique_rows_with_too_many_values_to_combine_falls_back_exactly():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(3000, 12)).round(1)  # ~60 values per column: 60**12 > 2**63
    a[1000:] = a[:2000]
    want = np.unique(a, axis=0, return_index=True, return_inverse=True)
    got = unique_rows(a)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(w).ravel(), np.asarray(g).ravel())
