"""``python -m cflib.train.fused``: build the fused training op (``cflib.train.fused``)."""

import sys

from cflib.train.fused import main

sys.exit(main())
