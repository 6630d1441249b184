"""Typed events to signals: HTTP spans, RED metrics, routes."""
