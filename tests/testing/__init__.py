"""Tests of cs2cap_account.testing: the fake Account API, its plugin and its CLI."""
