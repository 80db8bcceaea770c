"""exchange."""

from exchange import compiled

compiled.install()  # before anything imports the core: the build it runs (exchange/compiled.py)
