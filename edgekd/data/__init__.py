"""Datasets (ImageFolder trees or the embedded sklearn digits), splits, batches and calibration sets."""
