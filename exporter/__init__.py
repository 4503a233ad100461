"""Prometheus exporter for Anthropic Managed Agents self-hosted environments."""

__version__ = "0.1.0"
