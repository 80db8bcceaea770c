"""The web console (docs/console.md) and the nodes' Prometheus metrics."""
