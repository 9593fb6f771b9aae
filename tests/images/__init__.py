"""The service images built and run for real with a Docker engine (`make test-images`).

Not part of `make test`: pyproject.toml's pytest options ignore this folder, since building
the images takes many minutes and a Docker engine that few test machines have.
"""
