"""Training: the ``modeling/`` classifier fine-tuned with the transformers Trainer, and its predictions.

``batches`` decodes clips into model inputs; ``train`` runs the folds and the final fit; ``predict`` turns a saved
model into probabilities and a submission; ``model_card`` writes the Hub model card; ``tiny`` builds the small random
model of the demo and the tests.

Building blocks for a Trainer script of your own (see ``notebooks/03_your_own_trainer.ipynb``):
``batches.ClipCollator`` (plain dataset rows + the model's processor → batches), ``train.challenge_metrics``
(a ``compute_metrics`` reporting the challenge accuracies) and, for each clip's reference in the metric's form,
``blemore_toolkit.modeling.decoding_blemore.outcomes_to_predictions(ds["outcome"])``.
"""
