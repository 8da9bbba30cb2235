"""``python -m refimpl``: see :mod:`refimpl.cli`."""

from refimpl.cli import main

raise SystemExit(main())
