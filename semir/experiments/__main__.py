import sys

from semir.cli import main

sys.exit(main(["experiment", *sys.argv[1:]]))
