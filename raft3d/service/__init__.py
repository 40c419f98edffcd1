"""
The service wiring of a Raft3D node: one Twisted service object per concern
(the Raft node's life cycle and cluster bootstrap, the HTTP gate and site,
the forwarding client's pool, the fatal exit, the snapshot encoder's child), composed by
L{raft3d.tap.makeService}.  Nothing here touches the global reactor.
"""

from ._bootstrap import BootstrapDiscovery
from ._channel import GuardedHTTPChannel
from ._exit import EXIT_CANNOT_START, EXIT_FATAL, FatalExit
from ._forked import ChildFailed, run_in_child, run_in_pool
from ._http import NOT_STARTED_MESSAGE, APISite, ClientPoolService, HTTPLimits, StartupGate
from ._peers import (
    BadAddress,
    PeerSpec,
    check_address,
    check_node_id,
    parse_peers,
    same_address,
    split_own,
)
from ._raft import RaftService, new_cluster_id
from ._storage import LoadOnceStorage, is_blank

__all__ = [
    "EXIT_CANNOT_START",
    "EXIT_FATAL",
    "NOT_STARTED_MESSAGE",
    "APISite",
    "BadAddress",
    "BootstrapDiscovery",
    "ChildFailed",
    "ClientPoolService",
    "FatalExit",
    "GuardedHTTPChannel",
    "HTTPLimits",
    "LoadOnceStorage",
    "PeerSpec",
    "RaftService",
    "StartupGate",
    "check_address",
    "check_node_id",
    "is_blank",
    "new_cluster_id",
    "parse_peers",
    "run_in_child",
    "run_in_pool",
    "same_address",
    "split_own",
]
