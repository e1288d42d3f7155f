#!/usr/bin/env python3
"""lvm command prefix used by the lvmd benchmark: append the subcommand to a file, then exec the rest."""

import os
import sys

log, argv = sys.argv[1], sys.argv[2:]
with open(log, "a") as f:
    f.write(f"{argv[1] if len(argv) > 1 else '?'}\n")
os.execvp(argv[0], argv)
