"""Tests that run the documentation's examples against the fake API."""
