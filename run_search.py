#!/usr/bin/env python
"""Run a hyperparameter search: the same as ``hpsearch search``. See ``--help``."""

import sys

from hpsearch.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
