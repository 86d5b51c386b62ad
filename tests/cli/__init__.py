"""Tests of the `cs2cap-account` command line, run as a subprocess against the fake API."""
