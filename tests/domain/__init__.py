"""Tests for the pure domain XML layer, L{qemud.domain}."""
