"""``python -m reprior.sbc ...``: the same as ``reprior sbc ...``."""

from . import main

raise SystemExit(main())
