"""`python -m edgekd` (and `torchrun ... -m edgekd compress ...`)."""

from edgekd.cli.app import main

main()
