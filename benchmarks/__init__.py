"""Benchmarks: how close unenroll runs to each vendor's limit, beside the scripts admins
write today. One command prints the table: ``.venv/bin/python -m benchmarks.run``.

Speed and memory are measured and printed here, never asserted in tests.
"""
