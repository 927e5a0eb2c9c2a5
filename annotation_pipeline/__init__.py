"""annotation_pipeline: an ML data-annotation program as one Dagster asset graph.

Domain modules here are plain Python (pandas, numpy, shapely, Great Expectations, DVC) and
import nothing from Dagster; the Dagster wiring lives in ``annotation_pipeline.defs``.
"""

__version__ = "0.1.0"
