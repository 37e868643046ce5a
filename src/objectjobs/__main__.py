"""``python -m objectjobs`` is the ``objectjobs`` command."""

from objectjobs.cli import main

if __name__ == "__main__":
    main()
