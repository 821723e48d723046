"""Profiles: the standard profile's members are the ones its rule names."""

from __future__ import annotations

import ast
import json

from cst_bayes.core import config
from cst_bayes.run.context import PROFILES, STANDARD_MEMBERS


def _greedy_cover(sets: dict[str, set[str]], share: float) -> list[str]:
    total = set().union(*sets.values())
    left, chosen = set(total), []
    while len(total) - len(left) < share * len(total):
        best = max(sorted(sets), key=lambda k: len(sets[k] & left))
        chosen.append(best)
        left -= sets[best]
    return chosen


def test_standard_members_follow_the_documented_rule():
    manifest = json.loads((config.RECONSTRUCTED_DIR / "manifest.json").read_text())
    by_family: dict[str, list[str]] = {}
    attains: dict[str, set[str]] = {}
    for m in manifest["members"]:
        name = m["file"].removesuffix(".csv")
        by_family.setdefault(m["family"], []).append(name)
        if m["family"] == "extreme":
            dep = m["dependence"]
            dep = ast.literal_eval(dep) if isinstance(dep, str) else dep
            attains[name] = set(dep["attains"])
    generated = [n for fam, names in by_family.items() if fam != "extreme" for n in names[:2]]
    extremes = _greedy_cover(attains, 106 / 121)
    assert len(extremes) == 8
    assert sorted(generated + extremes) == sorted(STANDARD_MEMBERS)
    assert PROFILES["standard"].members == STANDARD_MEMBERS
    assert PROFILES["full"].members is None


def test_standard_profile_loads_its_members(tmp_path):
    from cst_bayes.run.context import prepare

    ctx = prepare(tmp_path / "run", profile="standard", progress=False, weighting_stage=False)
    assert ctx.dataset_ids == list(STANDARD_MEMBERS)
