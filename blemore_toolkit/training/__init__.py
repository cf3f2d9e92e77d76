"""Training: the ``modeling/`` classifier fine-tuned with the transformers Trainer, and its predictions.

``batches`` decodes clips into model inputs; ``train`` runs the folds and the final fit; ``predict`` turns a saved
model into probabilities and a submission; ``model_card`` writes the Hub model card; ``tiny`` builds the small random
model of the demo and the tests.

Building blocks for a Trainer script of your own (see ``notebooks/03_your_own_trainer.ipynb``):
``batches.ClipCollator`` (plain dataset rows + the model's processor → batches), ``train.challenge_metrics``
(a ``compute_metrics`` reporting the challenge accuracies) and, for each clip's reference in the metric's form,
``blemore_toolkit.modeling.decoding_blemore.outcomes_to_predictions(ds["outcome"])``; ``BlemoreTrainer``
(``trainer``), the Trainer whose ``push_to_hub()`` uploads the BLEMORE model card.
"""

import importlib

#: Public names, imported on first use (``import blemore_toolkit.training.predict`` need not load the Trainer).
_EXPORTS = {"BlemoreTrainer": "trainer"}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = list(_EXPORTS)
