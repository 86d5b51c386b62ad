"""pytest plugin for the CS2Cap Account API fake."""
