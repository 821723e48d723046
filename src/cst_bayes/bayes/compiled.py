"""nutpie model over the C callbacks of :mod:`cst_bayes.bayes.fastlogp`: no Python per gradient.

Why this module exists
    ``nutpie.compiled_pyfunc.from_pyfunc`` calls back into Python for every gradient, and the
    chains share the GIL, so most of the sampling time went to the callback (about 95 us per
    gradient inside nutpie against 15 us for the density itself). nutpie's own PyMC route
    hands its Rust sampler the address of a numba C function plus a user-data pointer; this
    model does the same with the disk-cached C functions of :mod:`~cst_bayes.bayes.fastlogp`
    and the packed data buffer, which the model object keeps alive.

nutpie's private API
    ``_lib.LogpFunc``, ``_lib.ExpandFunc``, ``_lib.PyVariable.new_variables``,
    ``_lib.PyMcModel`` and ``_lib.PySampler.from_pymc`` are used exactly as
    ``nutpie.compile_pymc.CompiledPyMCModel`` uses them, identical from nutpie 0.16.0 to
    0.16.11; ``_make_sampler`` passes nutpie's trailing arguments through, whose number
    changed within that range. This is the one module that touches them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from nutpie import _lib
from nutpie.sample import CompiledModel

from cst_bayes.bayes import fastlogp as F


@dataclasses.dataclass(frozen=True)
class FastModel(CompiledModel):
    """A nutpie compiled model whose density and expansion are numba C functions.

    ``user_data`` is the :func:`~cst_bayes.bayes.fastlogp.pack` buffer the C functions read;
    nutpie holds this object (and so the buffer) for as long as it samples.
    """

    user_data: np.ndarray
    names: tuple[str, ...]
    var_shapes: tuple[tuple[int, ...], ...]
    initial_point_func: Callable[[int], np.ndarray]
    _n_dim: int
    _coords: dict[str, list[Any]]

    @property
    def n_dim(self) -> int:
        return self._n_dim

    @property
    def n_expanded(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.var_shapes))

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(zip(self.names, self.var_shapes, strict=True))

    @property
    def coords(self) -> dict[str, list[Any]]:
        return self._coords

    def _make_sampler(self, settings: Any, init_mean: Any, cores: int, *rest: Any) -> Any:
        return _lib.PySampler.from_pymc(settings, cores, self._make_model(init_mean), *rest)

    def _make_model(self, init_mean: Any) -> Any:
        logp_c, expand_c = F.c_functions()
        ptr = self.user_data.ctypes.data
        logp_fn = _lib.LogpFunc(logp_c.address, ptr, self)
        expand_fn = _lib.ExpandFunc(self.n_dim, self.n_expanded, expand_c.address, ptr, self)
        dim_sizes = {k: len(v) for k, v in self._coords.items()}
        dims = dict(self.dims or {})
        variables = _lib.PyVariable.new_variables(
            list(self.names),
            ["float64"] * len(self.names),
            [tuple(s) for s in self.var_shapes],
            dim_sizes,
            dims,
        )

        def make_adapter(*args: Any, **kwargs: Any) -> Any:
            from nutpie.transform_adapter import make_transform_adapter

            return make_transform_adapter()(*args, **kwargs, logp_fn=None)

        return _lib.PyMcModel(
            logp_fn,
            expand_fn,
            variables,
            self.n_dim,
            dim_sizes,
            dict(self._coords),
            self.initial_point_func,
            make_adapter,
        )


def fast_model(
    args: Mapping[str, Any],
    x0: np.ndarray,
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
    *,
    coords: Mapping[str, Sequence[Any]],
    dims: Mapping[str, tuple[str, ...]],
) -> FastModel:
    """nutpie model of the fast density with data ``args`` (the keyword arguments of
    :func:`~cst_bayes.bayes.fastlogp.logp_grad`).

    ``names``/``shapes`` must list the expanded variables in the order the expand callback
    writes them; initial points are ``x0`` jittered by U(-1, 1) with the chain's seed, as
    nutpie and PyMC jitter PyMC's support point.
    """
    buf = F.pack(**args)
    n = len(x0)
    L = int(buf[9])
    want = F.n_expanded(args["structure"], args["n_strata"], n, L, int(buf[10]))
    if int(buf[7]) != n or sum(int(np.prod(s)) for s in shapes) != want:
        raise ValueError("fast model: initial point or variable shapes do not fit the density")
    buf.flags.writeable = False
    x0 = np.array(x0, dtype=np.float64)

    def init(seed: int) -> np.ndarray:
        return x0 + np.random.default_rng(seed).uniform(-1, 1, n)

    F.c_functions()  # load (or compile, once per machine) the cached machine code now
    return FastModel(
        dims=dict(dims),
        user_data=buf,
        names=tuple(names),
        var_shapes=tuple(tuple(s) for s in shapes),
        initial_point_func=init,
        _n_dim=n,
        _coords={k: list(v) for k, v in coords.items()},
    )
