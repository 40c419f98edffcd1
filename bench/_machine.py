# -*- test-case-name: tests.bench.test_machine -*-
"""
What the benchmark ran on, recorded with every result: numbers from another
machine are not comparable, and a shared 2-core VM is not a server.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any, Sequence


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_model(cpuinfo: str) -> str:
    """
    The first C{model name} of C{/proc/cpuinfo}.
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def mount_of(path: str, mounts: str) -> dict[str, str]:
    """
    The C{/proc/mounts} entry (device, mount point, type) holding C{path}.
    """
    path = os.path.realpath(path)
    best: dict[str, str] = {}
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, kind = fields[:3]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best.get("mount_point", "")):
            best = {"device": device, "mount_point": point, "type": kind}
    return best


def _version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (done.stdout or done.stderr).decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "unknown"


def raft3d_under_test(repo: str) -> dict[str, Any]:
    """
    Which Raft3D the nodes run: the installed package (where, its newest
    file's time and a digest of its sources) and the checkout's commit and
    whether it has changes.  The nodes import the installed package, which
    others may reinstall between runs.
    """
    import hashlib
    from datetime import UTC, datetime

    out: dict[str, Any] = {}
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-P",
                "-c",
                "import raft3d, os; print(os.path.dirname(raft3d.__file__))",
            ],
            capture_output=True,
            timeout=30,
            cwd="/",
            check=False,
        )
        package = done.stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        package = ""
    if package and os.path.isdir(package):
        digest = hashlib.sha256()
        newest = 0.0
        for root, _, files in sorted(os.walk(package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    with open(path, "rb") as f:
                        digest.update(path[len(package) :].encode() + b"\0" + f.read())
                    newest = max(newest, os.path.getmtime(path))
        out["installed_at"] = package
        out["installed_sources_sha256"] = digest.hexdigest()[:16]
        out["installed_newest_file"] = datetime.fromtimestamp(newest, tz=UTC).isoformat(
            timespec="seconds"
        )
    for key, argv in (
        ("git_head", ["git", "rev-parse", "--short", "HEAD"]),
        ("git_changed_files", ["git", "status", "--porcelain", "--untracked-files=no"]),
    ):
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30, cwd=repo, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = done.stdout.decode("utf-8", "replace").strip()
        out[key] = len(text.splitlines()) if key == "git_changed_files" else text
    return out


def describe(work_dir: str, etcd: str | None, wrk: str | None) -> dict[str, Any]:
    """
    The machine, the software versions and the disk holding C{work_dir}.
    """
    import twisted

    meminfo = _read("/proc/meminfo").splitlines()
    total = next((line.split()[1] for line in meminfo if line.startswith("MemTotal:")), "0")
    os_name = "unknown"
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.partition("=")[2].strip('"')
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo")),
        "cores": os.cpu_count(),
        "memory_gib": round(int(total) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": os_name,
        "python": sys.version.split()[0],
        "twisted": twisted.__version__,
        "etcd": _version([etcd, "--version"]) if etcd else "not installed",
        "wrk": _version([wrk, "--version"]) if wrk else "not installed",
        "work_dir": work_dir,
        "work_dir_mount": mount_of(work_dir, _read("/proc/mounts")),
    }
