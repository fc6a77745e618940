"""``python -m harness report`` / ``python -m harness layout``: see :mod:`harness.cli`."""

from harness.cli import main

raise SystemExit(main())
