"""`python -m stcn.cli ...`: the `stcn` command."""

from stcn.cli.app import main

if __name__ == "__main__":
    main()
