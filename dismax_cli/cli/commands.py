"""Registers every command module with the app (import order = help order)."""

from __future__ import annotations
