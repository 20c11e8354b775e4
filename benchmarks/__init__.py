"""Re-runnable benchmarks of sb3_cemah: each module is a script (``python -m benchmarks.<name> --help``)
that writes its raw results (CSV/JSON) and a markdown ``README.md`` into its output folder under ``docs/``."""
