"""Imported last by prepare's worker server (multiprocessing's forkserver, see ``prepare._media_context``), and
nowhere else: the server then ends at once when prepare is gone, without the interpreter's teardown of torch.

That teardown takes one to three seconds, during which the server still holds the stdout and stderr it inherited
from prepare, so a caller reading prepare's output (a pipe, ``subprocess.run(capture_output=True)``) waited for it
after prepare had finished. The server writes nothing and owns no data; the workers it forks end with
``os._exit`` as every multiprocessing child does, so this handler never runs in them.
"""

import atexit
import os

atexit.register(os._exit, 0)
