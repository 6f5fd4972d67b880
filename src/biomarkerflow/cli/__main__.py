"""`python -m biomarkerflow.cli ...` runs the command line."""

from biomarkerflow.cli import main

main()
