"""`python -m bellm.cli`: the same as the `bellm` command."""

from bellm.cli import main

main()
