"""evaluate metric modules; each folder loads with ``evaluate.load("metrics/<name>")``."""
