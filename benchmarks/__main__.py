"""C{python -m benchmarks SCENARIO ...}, from the repository root."""

from benchmarks.driver import main

raise SystemExit(main())
