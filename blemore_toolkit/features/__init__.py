"""Features: frozen encoders' outputs stored as dataset configs, and the heads trained on them.

``extraction`` runs an image, video or audio encoder over a prepared folder and stores statistics and per-window
sequences as a config; ``heads`` trains the paper's linear/MLP/fusion heads on them with 5-fold CV and α/β tuning.
"""
