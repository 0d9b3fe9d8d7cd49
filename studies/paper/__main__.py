"""``python -m studies.paper``: the paper's Fig. 3, Fig. 4, text claims and baseline against the cost model."""
import sys

from . import main

sys.exit(main())
