"""The two stages: discovery (stage 1: configs -> studies and files in the catalog) and
processing (stage 2: gate, claim, run each file's job, record it). See docs/architecture.md."""
