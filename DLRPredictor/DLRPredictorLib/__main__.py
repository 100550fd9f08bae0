"""`python -m DLRPredictorLib` is the `dlrpredictor` command."""

import sys

from .cli import main

sys.exit(main())
