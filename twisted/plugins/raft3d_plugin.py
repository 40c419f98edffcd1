"""
The C{twistd raft3d} plugin.  Deliberately tiny: plugin discovery imports
every file in this directory, so C{raft3d.tap} is only named here and
imported when the command is actually run.
"""

from twisted.application.service import ServiceMaker

raft3d = ServiceMaker("Raft3D", "raft3d.tap", "Replicated 3D print-farm manager", "raft3d")
