"""Training: the ``modeling/`` classifier fine-tuned with the transformers Trainer, and its predictions.

``batches`` decodes clips into model inputs; ``train`` runs the folds and the final fit; ``predict`` turns a saved
model into probabilities and a submission; ``model_card`` writes the Hub model card; ``tiny`` builds the small random
model of the demo and the tests.
"""
