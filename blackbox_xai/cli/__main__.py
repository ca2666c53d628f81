"""``python -m blackbox_xai.cli``: the same as the ``blackbox-xai`` command."""

import sys

from . import main

sys.exit(main())
