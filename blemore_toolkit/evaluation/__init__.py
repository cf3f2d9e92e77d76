"""Evaluation: predictions → the challenge's numbers.

``submission`` parses and checks the challenge's JSON/zip format; ``scoring`` scores a submission against references;
``baselines`` gives the trivial most-frequent baselines; ``tuning`` searches the α/β decoding thresholds;
``probabilities`` reads and writes ``probabilities.csv``. The per-clip arithmetic is ``metrics.blemore.challenge``,
the same code the evaluate metric runs.
"""
