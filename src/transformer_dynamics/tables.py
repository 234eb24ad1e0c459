"""Per-block tables gathered into one: the fan-in of the unit-block fan-out (§2.2-2.6).

The per-unit analyses run one job per unit block and write one parquet table per block;
the gather rules concatenate them here, in block order, so every gathered table is built
the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd


def concat_blocks(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The per-block tables at ``paths`` concatenated in the given (block) order, with a fresh
    0..n-1 index."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
