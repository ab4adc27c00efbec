"""``python -m convert2snn``: the command line (`convert2snn.cli.main`)."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
