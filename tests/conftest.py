"""Shared test configuration."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

import pytest

# The test models are tiny: one torch thread is faster than two and does not fight with
# pytest workers or other processes for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)


def _answer_in_forked_child(check: Callable[[], bool], timeout: float) -> bool | None:
    """Runs ``check`` in a forked child: its answer, or None if the child did not answer
    within ``timeout`` seconds (a deadlock); the child is reaped (or killed) either way."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.write(write_fd, b"1" if check() else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], timeout)
        return os.read(read_fd, 1) == b"1" if ready else None
    finally:
        os.close(read_fd)
        for _ in range(100):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


@pytest.fixture
def forked_child() -> Callable[[Callable[[], bool], float], bool | None]:
    """``forked_child(check, timeout)``: ``check()`` run in a forked child, None without an
    answer within ``timeout`` seconds (needs ``os.fork``: mark such tests to skip without it)."""
    return _answer_in_forked_child
