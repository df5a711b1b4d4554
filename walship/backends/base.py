"""The segment-store interface under the path third-party backends were written against.

The interface lives in :mod:`walship.store`; this module only re-exports it.
"""

from walship.store import SegmentFile, SegmentStore, StoreCapabilities

__all__ = ["SegmentFile", "SegmentStore", "StoreCapabilities"]
