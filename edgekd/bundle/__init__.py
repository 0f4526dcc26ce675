"""Artifact bundles for mobile and device teams: models, preprocessing, labels, metrics, hashes."""
