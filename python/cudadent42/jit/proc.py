"""Run a toolchain command with a time limit, never outliving this process.

nvcc does not stop its own children: measured here (nvcc 13.0), SIGTERM to
nvcc while cicc compiled ended nvcc at once and left cicc running, re-parented
to init. So a command runs in its own session (one process group) under a
two-line sh wrapper: a timeout kills the whole group (os.killpg), and on Linux
the wrapper asks the kernel (prctl PR_SET_PDEATHSIG) for SIGTERM when the
thread that started it dies, on which it kills its group. Each build waits for
its command on the thread that started it, so that thread dies only with the
process.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

# sh waits in `wait`, which a trapped signal interrupts (POSIX), so the trap
# runs while the command is still going; `kill 0` signals the whole group,
# this shell included.
_WRAPPER = 'trap "kill -KILL 0" TERM HUP INT; "$@" & wait $!'
_PR_SET_PDEATHSIG = 1


class ToolTimeout(Exception):
    """The command ran past its limit; its process group was killed."""

    def __init__(self, seconds: float, output: str):
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds, self.output = seconds, output


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


_PRCTL = _prctl()  # looked up once here: the forked child must not load libraries


def _die_with_parent():
    if _PRCTL is None:
        return None
    parent, sig = os.getpid(), int(signal.SIGTERM)

    def preexec():  # runs in the child between fork and exec: keep it to two system calls
        _PRCTL(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the session leader's pid is the group id


def run(cmd: list[str], *, timeout: float, cwd=None) -> tuple[int, str]:
    """(exit status, stdout and stderr interleaved). Raises ToolTimeout past `timeout`
    seconds and OSError when the wrapper cannot start; a missing command is status 127."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", _WRAPPER, "sh", *cmd], cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        start_new_session=True, preexec_fn=_die_with_parent(),
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, _ = proc.communicate()  # every writer is dead: reads to EOF at once
        raise ToolTimeout(timeout, out or "") from None
    except BaseException:  # KeyboardInterrupt in the waiting thread: take the group down too
        _kill_group(proc.pid)
        proc.wait()
        raise
    return proc.returncode, out or ""
