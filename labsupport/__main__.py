import sys

from labsupport.cli import main

sys.exit(main())
