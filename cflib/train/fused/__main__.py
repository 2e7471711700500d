"""``python -m cflib.train.fused``: build the fused training op (``cflib.train.fused``)."""

import sys

from cflib.train.fused import main

if __name__ == "__main__":
    sys.exit(main())
