"""``python -m annotation_pipeline.cli``: the same as the ``annotation-pipeline`` script."""

import sys

from annotation_pipeline.cli.main import main

sys.exit(main())
