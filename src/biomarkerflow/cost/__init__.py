"""Metering, price tables, cost prediction models and their registry."""
