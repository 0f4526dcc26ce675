"""`edgekd calibrate`: fit a profile's roofline efficiencies and per-layer overhead on its device."""
