import sys

from temporec.cli import main

sys.exit(main())
