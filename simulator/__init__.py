"""Agent-based market simulations that drive the Jinlian venue (see docs/simulator.md)."""
