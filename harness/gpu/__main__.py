"""``python -m harness.gpu ...`` = ``harness profile ...`` (see :mod:`harness.gpu.profile_cli`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.gpu ...`` = ``harness profile ...``."""
    from harness.cli import main as cli_main

    return cli_main(["profile", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
