import sys

from clvsmim.cli import main

sys.exit(main())
