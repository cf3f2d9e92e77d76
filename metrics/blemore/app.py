"""The metric's Space: evaluate's Gradio widget around this folder's module (``blemore.py`` beside this file).

Loaded by path, so the Space works under any repo name and the folder runs the same as a local checkout.
"""

from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load(str(Path(__file__).resolve().with_name("blemore.py")))
launch_gradio_widget(module)
