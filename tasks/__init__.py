"""Prefect tasks: thin wrappers over `bellm` functions. Inputs and outputs are plain data (paths, dicts),
never model objects, so results persist and cache keys are content hashes."""
