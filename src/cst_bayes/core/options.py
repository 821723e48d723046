"""Option types shared by the API and the CLI (the CLI takes its ``choices`` from here).

One place for every closed set of option values and for the default seed, so a help text
cannot drift from what the code accepts.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

#: What a table describes: reconstructions, restricted microdata, or data the user declared
#: public (``--data-class public``). Every output table carries it in a ``data_status`` column.
DataStatus = Literal["SYNTHETIC", "RESTRICTED", "PUBLIC"]
#: How a user declares an input file (``synthetic`` needs the package banner as first line).
DataClass = Literal["synthetic", "restricted", "public"]
Sampler = Literal["nutpie", "nutpie-c", "pymc"]
Profile = Literal["quick", "standard", "full"]
NotSure = Literal["no", "yes", "error"]
Link = Literal["both", "logit", "log"]

DEFAULT_SAMPLER: Final[Sampler] = "nutpie"
#: The one default seed of every stochastic step.
DEFAULT_SEED: Final[int] = 20240101
#: Seeds are unsigned 32-bit integers (numpy, nutpie and numba all accept them).
SEED_MAX: Final[int] = 2**32 - 1


def choices(option_type: object) -> tuple[str, ...]:
    """The values of a ``Literal`` type, for ``argparse`` ``choices=``."""
    return tuple(str(a) for a in get_args(option_type))
