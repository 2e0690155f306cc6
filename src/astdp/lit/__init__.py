"""Harness: Lightning modules, config checks, logging and the train/evaluate flows (no equations here)."""
