"""`python3 -m modeldock`: the same as the wheel's modeldock-py command (modeldock.cli)."""
import sys

from modeldock.cli import main

sys.exit(main())
