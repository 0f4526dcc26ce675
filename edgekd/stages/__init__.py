"""One module per stage: `NAME`, `Config`, `READS_DATA`, `DISTRIBUTED`, `run(config, parents, ctx)`."""
