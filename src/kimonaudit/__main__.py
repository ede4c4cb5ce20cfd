"""`python -m kimonaudit` and the `kimonaudit` command.

The command needs the server's dependencies; with only the light client
installed (`pip install kimonaudit`) it says how to get them instead of
failing on an import."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from kimonaudit.cli import main as cli_main
    except ModuleNotFoundError as exc:
        sys.stderr.write(
            f"kimonaudit: the command needs the server install ({exc.name} is missing): "
            "pip install 'kimonaudit[server]'\n"
        )
        raise SystemExit(2) from None
    cli_main()


if __name__ == "__main__":
    main()
