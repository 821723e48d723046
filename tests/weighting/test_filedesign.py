"""A file's own design: ``cst-bayes weights --weight-column/--strata-column/--fpc-column``.

Reference values: the ``design`` scenario rebuilt from the published frames (a file carrying
those very weights and frame sizes must give the same estimates) and a hand-written Hajek
linearisation for strata the study does not have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cst_bayes.core.config import APPROACHES, OUTCOME, STRATUM
from cst_bayes.data import microdata, published
from cst_bayes.weighting import weights as W

REF = Path(__file__).parent.parent / "reference" / "weights_sim.csv"


@pytest.fixture(scope="module")
def dta(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The reference sample as a Stata file with extra columns and its own design variables."""
    pyreadstat = pytest.importorskip("pyreadstat")
    df = microdata.load(REF)
    f = published.load_sampling_frames().set_index("stratum")["population"]
    r = df[STRATUM].astype(str).value_counts()
    s = df[STRATUM].astype(str)
    raw = pd.DataFrame({STRATUM: s})
    for c in (*APPROACHES, OUTCOME):
        raw[c] = df[c].astype(int)
    rng = np.random.default_rng(4)
    raw["region"] = rng.choice(["NE", "MW", "S", "W"], size=len(df))
    raw["pct_rural"] = rng.uniform(1, 100, size=len(df)).round(1)
    raw["w"] = (s.map(f) / s.map(r)).astype(float)  # the 'design' scenario's weights
    raw["N_h"] = s.map(f).astype(float)
    path = tmp_path_factory.mktemp("dta") / "own.dta"
    pyreadstat.write_dta(raw, str(path))
    return path, raw


def _cli(args: list[str]) -> int:
    from cst_bayes.cli import main

    return main(["weights", "--no-bayes", *args])


def test_own_weights_equal_the_rebuilt_design(dta, tmp_path, capsys):
    path, _ = dta
    out = tmp_path / "w"
    rc = _cli(
        [
            "--data",
            str(path),
            "--out",
            str(out),
            "--weight-column",
            "w",
            "--fpc-column",
            "N_h",
            "--keep-columns",
            "region",
            "pct_rural",
            "--data-class",
            "public",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"weights: column 'w' of {path} (strata 'stratum', fpc 'N_h')" in err
    est = pd.read_csv(out / "design_estimates.csv")
    assert list(dict.fromkeys(est["scenario"])) == ["unweighted", "file_weights"]
    assert est["data_status"].eq("PUBLIC").all()
    api = W.design_estimates(microdata.load(REF), [W.load_scenarios()["design"]])
    mine = est[est["scenario"] == "file_weights"].set_index("estimand")
    for r in api.itertuples(index=False):
        assert mine.loc[r.estimand, "estimate"] == pytest.approx(r.estimate, rel=1e-12)
        assert mine.loc[r.estimand, "se"] == pytest.approx(r.se, rel=1e-10)
    steps = pd.read_csv(out / "weighting_steps.csv").query("scenario == 'file_weights'")
    frames = published.load_sampling_frames().set_index("stratum")["population"]
    np.testing.assert_allclose(
        steps["weight_total"], steps["stratum"].map(frames).astype(float), rtol=1e-12
    )
    assert (out / "tipping_point.csv").exists()


def test_own_strata_without_fpc_give_the_hand_linearisation(dta, tmp_path, capsys):
    path, raw = dta
    out = tmp_path / "w"
    args = ["--data", str(path), "--out", str(out), "--weight-column", "w"]
    args += [
        "--strata-column",
        "region",
        "--keep-columns",
        "pct_rural",
        "N_h",
        "--no-tipping-point",
    ]
    assert _cli(args) == 0
    assert "(strata 'region', no fpc)" in capsys.readouterr().err
    est = pd.read_csv(out / "design_estimates.csv").set_index(["scenario", "estimand"])
    y, w = raw[OUTCOME].to_numpy(float), raw["w"].to_numpy()
    mean = (w * y).sum() / w.sum()
    z = w * (y - mean) / w.sum()
    var = 0.0
    for _, g in pd.Series(z).groupby(raw["region"].to_numpy()):
        n = len(g)
        var += n / (n - 1) * ((g - g.mean()) ** 2).sum()
    assert est.loc[("file_weights", OUTCOME), "estimate"] == pytest.approx(mean, rel=1e-12)
    assert est.loc[("file_weights", OUTCOME), "se"] == pytest.approx(np.sqrt(var), rel=1e-10)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--weight-column", "wt"], "--weight-column names no column of the file: 'wt'"),
        (["--weight-column", "w", "--fpc-column", "Nh"], "'Nh'"),
        (["--fpc-column", "N_h"], "--fpc-column needs --weight-column"),
        (
            [
                "--weight-column",
                "w",
                "--fpc-column",
                "pct_rural",
                "--keep-columns",
                "region",
                "N_h",
            ],
            "constant within",
        ),
        (["--weight-column", "w"], "region"),  # an extra column nobody kept
    ],
)
def test_bad_design_columns_exit_2_and_write_nothing(dta, tmp_path, capsys, extra, needle):
    path, _ = dta
    out = tmp_path / "w"
    rc = _cli(["--data", str(path), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()
