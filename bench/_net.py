# -*- test-case-name: tests.bench.test_net -*-
"""
Loopback plumbing for the harness: free ports, small blocking JSON
requests, and polling with a deadline.

The harness only talks to 127.0.0.1; every helper here refuses anything
else, so a typo cannot send load elsewhere.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any, Callable, TypeVar

HOST = "127.0.0.1"

_T = TypeVar("_T")


class Timeout(Exception):
    """
    L{wait_for} gave up.
    """


def free_ports(count: int) -> list[int]:
    """
    C{count} distinct TCP ports that were free on 127.0.0.1 a moment ago
    (all held open together while choosing, so they differ).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def check_loopback(host: str) -> None:
    """
    @raise ValueError: unless C{host} is 127.0.0.1 or localhost.
    """
    if host not in (HOST, "localhost"):
        raise ValueError(f"the benchmark only talks to {HOST}, not {host!r}")


def request(
    method: str,
    addr: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 5.0,
    raw_body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """
    One HTTP request to C{addr} (C{host:port} on the loopback); the
    answer's status, headers and decoded JSON body (L{None} if not JSON).
    """
    host, _, port = addr.rpartition(":")
    check_loopback(host)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = (
            raw_body
            if raw_body is not None
            else (json.dumps(body).encode() if body is not None else None)
        )
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        try:
            decoded = json.loads(payload) if payload else None
        except ValueError:
            decoded = None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, decoded
    finally:
        conn.close()


def try_json(method: str, addr: str, path: str, body: Any = None, timeout: float = 2.0) -> Any:
    """
    Like L{request}, but L{None} unless the answer is a 2xx (or on any
    connection error).
    """
    try:
        status, _, decoded = request(method, addr, path, body, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
    return decoded if 200 <= status < 300 else None


def wait_for(
    what: str,
    check: Callable[[], _T | None],
    timeout: float,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """
    Call C{check} until it returns something other than L{None} (returned),
    at most C{timeout} seconds.

    @raise Timeout: naming C{what}.
    """
    deadline = clock() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if clock() >= deadline:
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}")
        sleep(interval)
