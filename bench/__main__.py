"""`python -m bench ...`: the `arlon-bench` command where the package is not installed (PYTHONPATH=.)."""

from bench.cli.app import main

main()
