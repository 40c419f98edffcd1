# -*- test-case-name: tests.test_tap -*-
"""
Node 2 of the seed README's local three-node cluster: it waits until the
leader contacts it.

Run from the repository root, each in its own terminal:

    twistd -ny tac/node2.tac

It builds exactly the service of

    twistd -n raft3d --id node2 --raft-addr localhost:7001 --raft-dir data/node2
        --http-addr localhost:8001 --peers localhost:7000,localhost:7001,localhost:7002

(the data directory is relative to the current directory).
"""

from twisted.application.service import Application

from raft3d.tap import Options, makeService

options = Options()
options.parseOptions(
    [
        "--id",
        "node2",
        "--raft-addr",
        "localhost:7001",
        "--raft-dir",
        "data/node2",
        "--http-addr",
        "localhost:8001",
        "--peers",
        "localhost:7000,localhost:7001,localhost:7002",
    ]
)
application = Application("raft3d-node2")
makeService(options).setServiceParent(application)
