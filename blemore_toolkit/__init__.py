"""Commands and pipelines of the BLEMORE toolkit (the schema and dataset builder live in ``blemore.py``)."""
