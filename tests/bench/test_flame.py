"""
Tests for L{bench._flame}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench._flame import (
    flamegraph_svg,
    function_name,
    inclusive_time,
    is_idle,
    layer_of,
    parse_collapsed,
    per_request_us,
    self_time,
    split_threads,
    summarise,
    threads_summary,
    top,
    without_trunk,
)

MAIN = "thread (100): MainThread"
WRITER = "thread (101): PoolThread-raft3d-storage:/tmp/x/node1-0"
TRUNK = "<module> (twistd:1);ReactorBase.mainLoop (twisted/internet/base.py:1290)"

RAW = f"""\
{MAIN};{TRUNK};EPollReactor.doPoll (twisted/internet/epollreactor.py:370) 10
{MAIN};{TRUNK};HTTPChannel.dataReceived (twisted/web/http.py:2300);_parseContentType (twisted/web/http.py:297);HeaderRegistry.__getitem__ (email/headerregistry.py:590) 30
{MAIN};{TRUNK};HTTPChannel.dataReceived (twisted/web/http.py:2300);FarmAPI.create_printer (raft3d/api/_app.py:275) 20
{MAIN};{TRUNK};RaftNode._apply (raft3d/raft/_node.py:600);FarmState.apply (raft3d/farm/_state.py:100) 40
{WRITER};Thread._bootstrap (threading.py:1002);Queue.get (queue.py:154);Condition.wait (threading.py:295) 80
{WRITER};Thread._bootstrap (threading.py:1002);DiskStorage._append (raft3d/storage/_disk.py:682);fdatasync (raft3d/storage/_fileio.py:37) 20

garbage line without count
"""


class ParseTests(SynchronousTestCase):
    """
    Collapsed stacks are read and grouped.
    """

    def test_parse(self) -> None:
        """
        Each line is a stack (root first) and a count; junk is skipped and
        repeated stacks add up.
        """
        stacks = parse_collapsed(RAW + RAW.splitlines()[0] + "\n")
        self.assertEqual(sum(stacks.values()), 210)
        self.assertEqual(len(stacks), 6)

    def test_threads(self) -> None:
        """
        Stacks split by thread; the main thread is the reactor and the
        storage pool thread the writer; idle samples are not busy.
        """
        stacks = parse_collapsed(RAW)
        self.assertEqual(
            set(split_threads(stacks)),
            {"100 MainThread", "101 PoolThread-raft3d-storage:/tmp/x/node1-0"},
        )
        summary = {t.label: t for t in threads_summary(stacks)}
        self.assertEqual((summary["reactor"].samples, summary["reactor"].busy), (100, 90))
        self.assertEqual(
            (summary["storage writer"].samples, summary["storage writer"].busy), (100, 20)
        )

    def test_idle(self) -> None:
        """
        Waiting in epoll or on a queue is idle; working is not.
        """
        self.assertTrue(is_idle(("EPollReactor.doPoll (twisted/internet/epollreactor.py:1)",)))
        self.assertTrue(is_idle(("Condition.wait (threading.py:295)",)))
        self.assertFalse(is_idle(("fdatasync (raft3d/storage/_fileio.py:37)",)))
        self.assertTrue(is_idle(()))


class TimeTests(SynchronousTestCase):
    """
    Self and inclusive time, layers and the trunk.
    """

    def test_self_and_inclusive(self) -> None:
        """
        Self time counts leaves; inclusive time counts every function on the
        stack once per sample; line numbers are dropped.
        """
        stacks = parse_collapsed(RAW)
        reactor = split_threads(stacks)["100 MainThread"]
        own = self_time(reactor)
        self.assertEqual(own["FarmState.apply (raft3d/farm/_state.py)"], 40)
        incl = inclusive_time(reactor)
        self.assertEqual(incl["HTTPChannel.dataReceived (twisted/web/http.py)"], 50)
        self.assertEqual(function_name("f (a/b.py:12)"), "f (a/b.py)")
        self.assertEqual(top({"a": 1, "b": 3, "c": 3}, 2), [("b", 3), ("c", 3)])

    def test_trunk(self) -> None:
        """
        The reactor's call chain and anything on every sample are dropped.
        """
        counts = {
            "ReactorBase.mainLoop (twisted/internet/base.py)": 50,
            "x (y.py)": 50,
            "z (y.py)": 10,
        }
        self.assertEqual(without_trunk(counts, 50), {"z (y.py)": 10})

    def test_layers(self) -> None:
        """
        Frames map to layers by file.
        """
        self.assertEqual(layer_of("f (raft3d/raft/_core.py:1)"), "Raft engine (raft3d.raft)")
        self.assertEqual(
            layer_of("HeaderRegistry.__getitem__ (email/headerregistry.py:590)"),
            "email header parsing (twisted.web Content-Type)",
        )
        self.assertEqual(
            layer_of("untilConcludes (twisted/python/util.py:743)"), "socket/pipe system calls"
        )
        self.assertEqual(layer_of("g (somewhere.py:3)"), "other (stdlib, C)")

    def test_per_request(self) -> None:
        """
        Samples at a rate over a number of requests become microseconds per
        request; nothing for no requests.
        """
        self.assertEqual(per_request_us(100, 100.0, 1000), 1000.0)
        self.assertEqual(per_request_us(100, 100.0, 0), 0.0)

    def test_summarise(self) -> None:
        """
        The summary has the threads and the reactor's busy time by
        function and layer, without the idle samples.
        """
        s = summarise(parse_collapsed(RAW), 100.0, 90)
        threads = s["threads"]
        assert isinstance(threads, list)
        self.assertEqual([t["label"] for t in threads], ["reactor", "storage writer"])
        self.assertEqual(threads[0]["busy_us_per_request"], 10000.0)
        own = s["reactor_self"]
        assert isinstance(own, list)
        self.assertEqual(own[0]["function"], "FarmState.apply (raft3d/farm/_state.py)")
        self.assertEqual(own[0]["pct_of_busy"], 44.4)
        names = {r["function"] for r in s["reactor_inclusive"]}  # type: ignore[attr-defined]
        self.assertNotIn("ReactorBase.mainLoop (twisted/internet/base.py)", names)
        self.assertNotIn("EPollReactor.doPoll (twisted/internet/epollreactor.py)", names)

    def test_summarise_achieved_rate(self) -> None:
        """
        When py-spy took fewer samples than its rate over the window, the
        rate it achieved converts samples to time; a higher one is not
        believed.
        """
        stacks = parse_collapsed(RAW)
        nominal = summarise(stacks, 100.0, 90)
        threads = nominal["threads"]
        assert isinstance(threads, list)
        most = max(t["samples"] for t in threads)
        slow = summarise(stacks, 100.0, 90, seconds=most / 50.0)
        self.assertEqual(slow["sample_rate_hz"], 50.0)
        slow_threads = slow["threads"]
        assert isinstance(slow_threads, list)
        self.assertEqual(slow_threads[0]["busy_us_per_request"], 20000.0)
        fast = summarise(stacks, 100.0, 90, seconds=most / 200.0)
        self.assertEqual(fast["sample_rate_hz"], 100.0)


class FlamegraphTests(SynchronousTestCase):
    """
    The SVG flame graph.
    """

    def test_svg(self) -> None:
        """
        One rectangle with a tooltip per frame wide enough to draw, the
        title escaped, the root spanning everything.
        """
        svg = flamegraph_svg(parse_collapsed(RAW), "a <title>")
        self.assertTrue(svg.startswith("<svg"))
        self.assertTrue(svg.endswith("</svg>"))
        self.assertIn("a &lt;title&gt;", svg)
        self.assertIn("<title>all (200 samples, 100.00%)</title>", svg)
        self.assertIn("FarmState.apply (raft3d/farm/_state.py:100) (40 samples, 20.00%)", svg)
