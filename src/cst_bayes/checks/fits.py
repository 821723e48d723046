"""What the checks need of a fitted model: its outcome, spec and (per member) posterior."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import COUNT, OUTCOME
from cst_bayes.core.errors import InputError


def model_outcome(fit: Any) -> str:
    """The outcome a fitted model (Fit, PooledFit or InferenceData) describes."""
    spec = getattr(fit, "spec", None)
    if spec is not None and getattr(spec, "outcome", None):
        return str(spec.outcome)
    idata = getattr(fit, "idata", fit)
    attrs: dict[str, Any] = {}
    post = getattr(idata, "posterior", None)
    if post is not None:
        attrs = dict(post.attrs)
    if attrs.get("outcome"):
        return str(attrs["outcome"])
    if attrs.get("spec_toml"):
        import tomllib

        try:
            return str(tomllib.loads(str(attrs["spec_toml"]))["model"]["outcome"])
        except (tomllib.TOMLDecodeError, KeyError):
            pass
    for group in ("observed_data", "log_likelihood"):
        ds = getattr(idata, group, None)
        if ds is not None:
            names = [str(v) for v in ds.data_vars]
            if COUNT in names:
                return COUNT
            if OUTCOME in names:
                return OUTCOME
    raise InputError("cannot tell the model's outcome (no spec, no 'outcome' attribute)")


def _as_fit(fit_or_idata: Any) -> Any:
    """A models.Fit (or PooledFit) from a Fit, PooledFit, path or InferenceData."""
    from cst_bayes.bayes import models

    if hasattr(fit_or_idata, "idata") and hasattr(fit_or_idata, "spec"):
        return fit_or_idata
    if isinstance(fit_or_idata, (str, Path)):
        return models.read_fit(fit_or_idata)
    if hasattr(fit_or_idata, "posterior"):
        # models.fit embeds the spec's TOML text; read_fit rebuilds the spec the same way
        attrs = fit_or_idata.posterior.attrs
        if "spec_toml" not in attrs:
            raise InputError("the InferenceData has no embedded model spec (spec_toml attribute)")
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / f"{attrs.get('model', 'model')}.toml"
            p.write_text(str(attrs["spec_toml"]), encoding="utf-8")
            spec = models.load_spec(p)
        return _MemberFit(spec=spec, idata=fit_or_idata, xbar_=None)
    raise InputError(f"cannot use a {type(fit_or_idata).__name__} as a fitted model")


@dataclass
class _MemberFit:
    """What :func:`cst_bayes.bayes.models.replicate` needs of a fit: spec, idata, centring means."""

    spec: Any
    idata: Any
    xbar_: np.ndarray | None

    @property
    def xbar(self) -> np.ndarray:
        if self.xbar_ is not None:
            return self.xbar_
        return np.asarray(self.idata.constant_data["xbar"].to_numpy(), dtype=float)


def _member_of(fit: Any, df: pd.DataFrame) -> int:
    """The ensemble member (1-based) a pooled fit was fitted on ``df`` as, by data hash."""
    from cst_bayes.bayes.models import _data_hash

    hashes = str(fit.idata.posterior.attrs.get("member_data_hashes", "")).split(",")
    h = _data_hash(df, fit.spec)
    if h not in hashes:
        raise InputError(
            "these data are not one of the reconstructions the pooled fit was fitted on; "
            "pass the whole ensemble (the folder) instead",
            path=df.attrs.get("source"),
        )
    return hashes.index(h) + 1


def check_fitted_on(fit: Any, frames: list[pd.DataFrame]) -> None:
    """Refuse data other than what a fit was fitted on (its stored data hash says which).

    A pooled fit stores one hash per member; a single fit one. Checks and comparisons on
    other data would run and print meaningless numbers.
    """
    from cst_bayes.bayes.models import _data_hash

    attrs = fit.idata.posterior.attrs
    stored = str(attrs.get("member_data_hashes") or attrs.get("data_hash") or "")
    if not stored:
        return  # a fit written before hashes were stored: nothing to compare
    known = set(stored.split(","))
    for df in frames:
        if _data_hash(df, fit.spec) not in known:
            raise InputError(
                f"the fit {fit.spec.name} was not fitted on these data (their hash differs from "
                "the one stored in the fit); pass the data it was fitted on",
                path=df.attrs.get("source"),
            )


def is_pooled(fit: Any) -> bool:
    """Whether a fit (or InferenceData) is stacked over reconstructions."""
    idata = getattr(fit, "idata", fit)
    return "reconstruction" in getattr(idata, "posterior", {}).coords
