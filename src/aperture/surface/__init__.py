"""Surfaces: how callers reach the gateway (MCP today)."""
