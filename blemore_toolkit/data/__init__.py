"""Data: a download → a prepared dataset folder that ``load_dataset`` reads.

``synth`` writes a synthetic download in the real layout; ``prepare`` turns a download (scanned by ``blemore.py``)
into parquet shards with embedded media; ``card`` writes the dataset card; ``loading`` reads a prepared folder back;
``references`` reads true labels from an answer key, a metadata CSV, the manifest or a prepared folder; ``hub`` pushes
a prepared folder; ``atomic`` writes files whole or not at all.
"""
