"""``python -m reprior ...``: the same as the ``reprior`` command."""

from reprior.experiments.cli import main

raise SystemExit(main())
