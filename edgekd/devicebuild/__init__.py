"""On-device builds (`edgekd compile`) and their records (compiled.json); no torch, runtimes imported lazily."""
