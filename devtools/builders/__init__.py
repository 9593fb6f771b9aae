"""Models with the real formats and random weights, and photos, built in code: weights
cannot be downloaded here, and tests and benchmarks both need them."""
