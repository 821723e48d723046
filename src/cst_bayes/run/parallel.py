"""The units of one stage on worker processes (``cst-bayes reproduce --jobs N``).

The units of a per-model stage (one per model) are independent: each reads the data and the
files of earlier stages and writes its own folder through :func:`cst_bayes.run.units.run_unit`
(scratch folder named by process id, renamed into place on success). Post-processing (PPC,
power-scaling, pooling) is single-threaded NumPy and pandas, so two processes use the two
cores a single process leaves half idle. Workers are spawned (not forked: nutpie and numba
hold threads) once per run and receive the run context once; a unit gives the same files in a
worker as in the parent (same seed, same inputs, same code).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from cst_bayes.run.units import UnitResult, run_unit

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext

_CTX: RunContext | None = None
_BODIES: dict[str, Callable[..., dict[str, Any]]] = {}


def _init(ctx: RunContext, bodies: dict[str, Callable[..., dict[str, Any]]]) -> None:
    global _CTX, _BODIES
    _CTX, _BODIES = ctx, bodies


def _work(
    stage: str, name: str | None, unit: str, inputs: dict[str, Any], force: bool
) -> UnitResult:
    ctx = _CTX
    assert ctx is not None, "worker not initialised"
    body = _BODIES[stage]

    def run(work: Any) -> dict[str, Any]:
        return body(ctx, work) if name is None else body(ctx, name, work)

    return run_unit(ctx.out, unit, inputs, run, restricted=ctx.restricted, force=force)


def _ready() -> None:
    """A no-op: submitted once per worker so that each starts (and imports) early."""


class Workers:
    """A pool of ``jobs`` spawned processes holding the run context, started on first use."""

    def __init__(
        self, ctx: RunContext, bodies: dict[str, Callable[..., dict[str, Any]]], jobs: int
    ) -> None:
        self.ctx, self.bodies, self.jobs = ctx, bodies, jobs
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.jobs > 1:  # start now: the workers import while the first stages run here
            self._start()
            for _ in range(self.jobs):
                assert self._pool is not None
                self._pool.submit(_ready)
        return self

    def _start(self) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=mp.get_context("spawn"),
                initializer=_init,
                initargs=(self.ctx, self.bodies),
            )

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def run(
        self, tasks: Sequence[tuple[str, str | None, str, dict[str, Any]]], force: bool
    ) -> Iterator[UnitResult]:
        """Run ``(stage, model or None, unit, inputs)`` tasks; yield results in task order."""
        self._start()
        assert self._pool is not None
        futures: list[Future[UnitResult]] = [
            self._pool.submit(_work, stage, name, unit, inputs, force)
            for stage, name, unit, inputs in tasks
        ]
        for (_, _, unit, _), fut in zip(tasks, futures, strict=True):
            try:
                yield fut.result()
            except Exception as exc:  # a worker that died (not a unit that failed: run_unit
                # records those) fails its unit; the run goes on as for any failed unit
                yield UnitResult(
                    unit, "failed", 0.0, f"worker process: {type(exc).__name__}: {exc}"
                )
