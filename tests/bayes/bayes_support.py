"""Formula specs shared by the bayes tests."""

from __future__ import annotations

from pathlib import Path

INTERACTION = """
[model]
name = "logit_interaction"
description = "main model plus victim_service x task_force, fixed strata"
family = "bernoulli"
link = "logit"
formula = "any_cst ~ court + victim_service + task_force + victim_service:task_force + stratum"

[priors.intercept]
dist = "normal"
mu = -1.5
sigma = 2.5
reason = "log-odds of an average agency"

[priors.beta]
dist = "normal"
mu = 0.0
sigma = 2.5
reason = "weakly informative"

[priors."victim_service:task_force"]
dist = "student_t"
nu = 3.0
mu = 0.0
sigma = 1.0
reason = "interactions are usually smaller than main effects"
"""


def write_spec(tmp_path: Path, text: str, name: str = "spec") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p
