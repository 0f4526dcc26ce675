"""The student search of `--student auto` (edgekd/stages/search.py): family and pruned-teacher candidates,
latency on the target first, then successive halving of short distillation runs on the val split."""
