"""Re-exports :mod:`dicontour.batch` (``Batch``, ``BatchMeta``, ``case_id``), where they now live.

The batch types are shared by the loader and the cache's sample source, so
they sit below both; this module keeps old imports working.
"""

from ..batch import Batch, BatchMeta, case_id

__all__ = ["Batch", "BatchMeta", "case_id"]
