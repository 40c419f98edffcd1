"""
Tests for L{bench._machine}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench._machine import cpu_model, mount_of

MOUNTS = """\
/dev/vda / ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
proc /proc proc rw 0 0
"""


class MachineTests(SynchronousTestCase):
    """
    Reading C{/proc}.
    """

    def test_cpu_model(self) -> None:
        """
        The first model name, or "unknown".
        """
        self.assertEqual(cpu_model("processor\t: 0\nmodel name\t: AMD EPYC\n"), "AMD EPYC")
        self.assertEqual(cpu_model(""), "unknown")

    def test_mount(self) -> None:
        """
        The longest mount point holding the path wins.
        """
        self.assertEqual(
            mount_of("/tmp/x/y", MOUNTS),
            {"device": "tmpfs", "mount_point": "/tmp", "type": "tmpfs"},
        )
        self.assertEqual(mount_of("/work/main", MOUNTS)["device"], "/dev/vda")
