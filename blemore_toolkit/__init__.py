"""The BLEMORE toolkit, in the order data flows through it.

* ``data`` — a download (or ``blemore synth``) → a prepared, Hub-native dataset folder: the synthetic generator,
  ``prepare`` with its worker pool and shards, the dataset card, reference labels, loading, the Hub.
* ``evaluation`` — predictions → numbers: submissions, scoring, the trivial baselines, α/β threshold tuning,
  probability files. The challenge arithmetic itself lives in ``metrics/blemore`` and is imported from there.
* ``training`` — the model in ``modeling/`` trained with the Trainer: batches, the training loop, prediction,
  the model card, the tiny demo model.
* ``features`` — frozen-encoder features stored as dataset configs, and the heads trained on them.
* ``cli`` (the ``blemore`` command) and ``demo`` sit on top and only call the stages.

A stage imports only the stages before it (data ← evaluation ← features ← training ← cli/demo);
``tests/test_layout.py`` checks it. ``docs/architecture.md`` names the module at each step.
"""
