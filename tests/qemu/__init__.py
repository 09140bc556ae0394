"""Tests for L{qemud.qemu}."""
