"""The command-line tools (bac-eval, bac-schedules, bac-collect, bac-benchmark, bac-suite, bac-default,
bac-aggregate, bac-demos): thin parsers over library functions; shared flags in flags.py."""
