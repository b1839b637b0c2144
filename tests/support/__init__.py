"""Helpers shared by the test suite (PostgreSQL discovery, throwaway databases)."""
