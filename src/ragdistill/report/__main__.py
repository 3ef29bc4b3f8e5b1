"""``python -m ragdistill.report PATH...``: the same as ``ragdistill-report``."""

from ragdistill.report.command import main

if __name__ == "__main__":
    raise SystemExit(main())
