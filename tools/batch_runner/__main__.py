"""Entry point, three ways (Windows included):

* ``python -m tools.batch_runner ...`` from the pack's folder;
* ``python -m batch_runner ...`` with ``tools`` on the path (what ``scripts/layerstack-batch`` does);
* ``python path/to/tools/batch_runner ...`` from any folder: the form for an embedded Python that ignores the current
  folder and PYTHONPATH (ComfyUI's Windows portable build).
"""

import os
import sys

if __package__:
    from .cli import main
else:  # run as a folder: import the package from its parent instead of its own modules as top-level ones
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))
    from batch_runner.cli import main

sys.exit(main())
