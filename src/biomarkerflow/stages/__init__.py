"""The two stages: discovery (workflow 1: configs -> studies and files in the catalog) and
processing (workflow 2: gate, claim, run each file's job, record it). See docs/architecture.md."""
