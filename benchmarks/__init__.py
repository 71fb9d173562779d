"""hpcne's benchmark suite: throughput, scaling, EvoTorch side by side, time to solve, communication.

Run from the repository root, in hpcne's virtual environment::

    python -m benchmarks --help
    python -m benchmarks throughput [--quick]

Every measure prints a Markdown table and writes its numbers to a CSV file (``.bench/results/``
by default). Not part of the installed package, and never imported by it.
"""
