"""Unit tests: request/response mapping of the foundation, against mocked HTTP."""
