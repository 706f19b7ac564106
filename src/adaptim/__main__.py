import sys

from adaptim.cli import main

sys.exit(main())
