"""`python -m star ...` (also under `torchrun -m star`): the same as the `star` command."""

import sys

from star.tools.cli import main

sys.exit(main())
