# -*- test-case-name: tests.test_tap -*-
"""
Node 1 of the seed README's local three-node cluster: the bootstrap node,
which creates the cluster once nodes 2 and 3 answer.

Run from the repository root, each in its own terminal:

    twistd -ny tac/node1.tac

It builds exactly the service of

    twistd -n raft3d --id node1 --raft-addr localhost:7000 --raft-dir data/node1
        --http-addr localhost:8000 --bootstrap --peers localhost:7000,localhost:7001,localhost:7002

(the data directory is relative to the current directory).
"""

from twisted.application.service import Application

from raft3d.tap import Options, makeService

options = Options()
options.parseOptions(
    [
        "--id",
        "node1",
        "--raft-addr",
        "localhost:7000",
        "--raft-dir",
        "data/node1",
        "--http-addr",
        "localhost:8000",
        "--bootstrap",
        "--peers",
        "localhost:7000,localhost:7001,localhost:7002",
    ]
)
application = Application("raft3d-node1")
makeService(options).setServiceParent(application)
