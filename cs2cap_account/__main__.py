"""`python -m cs2cap_account`: the `cs2cap-account` command line."""

from cs2cap_account.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
