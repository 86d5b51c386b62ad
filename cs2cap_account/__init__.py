"""Async SDK for the CS2Cap Account API, with safe root-key rotation."""

from cs2cap_account._secret import SecretKey

__all__ = ["SecretKey"]
