"""The student search of `--student auto` (edgekd/stages/search.py): family and pruned-teacher candidates,
latency on the target first, then successive halving of short distillation runs on the val split."""

from typing import Annotated

from pydantic import Field

Share = Annotated[float, Field(gt=0, lt=1)]  # strictly between 0 and 1: a pruning ratio, a share of blocks kept
