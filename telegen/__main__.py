"""python -m telegen: argv -> Config -> Agent.run()."""

import sys

from telegen.cli import main

sys.exit(main())
