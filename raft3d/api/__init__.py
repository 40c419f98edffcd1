"""
The Klein REST API of a Raft3D node: printers, filaments and print jobs under
C{/api/v1}, and the node's C{/status}.  Any node takes writes (followers
forward them to the leader) and serves linearizable reads.  See
C{docs/farm.md}.
"""

from ._app import API_PREFIX, FarmAPI, iso_now
from ._dispatch import FastPath, Route
from ._errors import RETRY_AFTER_SECONDS, APIError
from ._forward import FORWARDED_HEADER, HTTPClient
from ._paging import MAX_PAGE_SIZE
from ._request import MAX_BODY_BYTES, BoundedRequest, mark_reusable

__all__ = [
    "API_PREFIX",
    "FORWARDED_HEADER",
    "MAX_BODY_BYTES",
    "MAX_PAGE_SIZE",
    "RETRY_AFTER_SECONDS",
    "Route",
    "APIError",
    "BoundedRequest",
    "FarmAPI",
    "FastPath",
    "HTTPClient",
    "iso_now",
    "mark_reusable",
]
