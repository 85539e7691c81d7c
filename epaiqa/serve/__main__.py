"""``python -m epaiqa.serve serve RUN`` / ``app RUN``: the same as ``epaiqa serve`` / ``epaiqa app``."""

import sys

from epaiqa.serve.commands import main

sys.exit(main())
