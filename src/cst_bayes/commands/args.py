"""Argument types every verb shares (``argparse`` ``type=`` callables)."""

from __future__ import annotations

import argparse

from cst_bayes.core.errors import InputError, validate_seed


def seed_type(text: str) -> int:
    """``argparse`` type of a seed: an integer in ``0 .. 2**32 - 1``."""
    try:
        return validate_seed(int(text))
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(
            f"a seed is an integer from 0 to 2**32 - 1, got {text!r}"
        ) from None
