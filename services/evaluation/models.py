"""Evaluation tables and schemas."""
