# -*- test-case-name: tests.raft.test_notices -*-
"""
L{CommitNotices}: a leader's commit notices, held back for a moment.

When its commit index moves, a leader tells every follower with an
C{AppendEntries} that carries no entries (etcd/raft does the same), and each
follower answers it.  Under a steady stream of writes the next batch's
C{AppendEntries} follows within a fraction of a millisecond and carries the
same news, so the notice and its answer are four messages of pure overhead
per batch, on the cores that serve the clients.  Holding a notice back for
a short delay, and dropping it when a later C{AppendEntries} to the same
follower goes out first, removes them; an idle cluster still learns its
commit index after the delay.

Two notices are not held back:

 - one that commits what a follower relayed: that follower answers its own
   clients only once it learns they are committed;
 - one that commits more than L{HOLD_ENTRIES} entries at once: a follower
   applies what a notice commits in the lull after a batch, while if the
   next batch brought the news it would apply them in the middle of storing
   that batch, and answer the leader later.  With a few entries at a time
   (one client, or a few) there is nothing to apply worth the four messages.

Holding a message back or dropping it is what any network may do, so Raft's
safety does not depend on it; heartbeats carry the commit index too.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._messages import AppendEntries, Message

HOLD_ENTRIES = 4
"""
Most entries a held-back notice may commit (see the module docstring).
"""


class CommitNotices:
    """
    The sending end of a node, holding back commit notices.

    @param clock: runs the delayed sending.
    @param delay: seconds a notice may wait; 0 sends every one at once.
    @param send: the transport's C{send}.
    """

    def __init__(
        self, clock: IReactorTime, delay: float, send: Callable[[str, Message], None]
    ) -> None:
        self._clock = clock
        self._delay = delay
        self._send = send
        self._held: dict[str, AppendEntries] = {}
        self._waiting: dict[str, int] = {}
        self._told: dict[str, int] = {}
        self._call: IDelayedCall | None = None

    def relayed(self, peer: str, index: int) -> None:
        """
        C{peer} relayed proposals appended up to C{index}: the notice that
        commits them goes at once.
        """
        if index > self._waiting.get(peer, 0):
            self._waiting[peer] = index

    def notice(self, to: str, message: Message) -> None:
        """
        Send C{message}, holding it back if it is a commit notice of a few
        entries that no relaying follower waits for.
        """
        if self._delay <= 0 or not isinstance(message, AppendEntries) or message.entries:
            self.send(to, message)
            return
        commit = message.leader_commit
        waiting = self._waiting.get(to)
        relayed = waiting is not None and waiting <= commit
        if relayed or commit - self._told.get(to, 0) > HOLD_ENTRIES:
            self.send(to, message)
            return
        self._held[to] = message
        if self._call is None:
            self._call = self._clock.callLater(self._delay, self.flush)

    def send(self, to: str, message: Message) -> None:
        """
        Send C{message} now.  A notice held for C{to} is dropped if
        C{message} is an C{AppendEntries} (it carries the commit index
        too), else sent first, so that a peer's messages keep their order.
        """
        held = self._held.pop(to, None)
        if isinstance(message, AppendEntries):
            self._told[to] = message.leader_commit
            waiting = self._waiting.get(to)
            if waiting is not None and waiting <= message.leader_commit:
                del self._waiting[to]
        elif held is not None:
            self._send(to, held)
        self._send(to, message)

    def flush(self) -> None:
        """
        Send every notice held back.
        """
        self._call = None
        held, self._held = self._held, {}
        for to, message in held.items():
            self._told[to] = message.leader_commit
            self._send(to, message)

    def stop(self) -> None:
        """
        Forget what is held, as a stopped node sends nothing more.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._held.clear()
        self._waiting.clear()
        self._told.clear()
