"""Pytest fixtures shared by every app."""
