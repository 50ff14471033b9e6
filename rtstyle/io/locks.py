"""Output locks that another machine's run cannot mistake for dead ones.

A lock file claims an output for one run. It is removed by another run only when its writer is
provably gone:

1. The file system's own lock (`flock`) is held for as long as the writer runs. A lock whose
   `flock` is held is alive, whatever else it says. The kernel drops it when the writer dies.
2. The lock names its writer: host name, boot id, pid namespace, pid and the pid's start time.
   On the same host, boot and pid namespace, a writer whose pid is gone, or now belongs to a
   process that started at another time (pid reuse), is dead.
3. Elsewhere (another host, container or boot), `flock` may or may not reach across (NFS does
   through its lock manager; `local_lock=flock`, some FUSE and SMB mounts do not), so it proves
   nothing there. The writer renews a lease instead, touching the lock every `RENEW_S`; a lock
   whose lease has run out by a clear margin (`EXPIRES_S`, measured on the file system's clock,
   not this machine's) is dead.

Temporary files name the claim they belong to (`token`), so a temporary file is dead when its
output's lock is gone, dead, or held by another claim.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputError

log = logging.getLogger(__name__)
LOCK = ".rtstyle-lock"
PARTIAL = ".rtstyle-partial"
RENEW_S = 10.0  # how often a writer touches its lock
EXPIRES_S = 120.0  # a lease not renewed for this long (12 renewals missed) is dead
_claims: dict[str, str] = {}  # lock path -> token of this process's live claims
_swept: dict[str, float] = {}  # folder -> monotonic time of its last sweep for dead temporary files


@dataclass(frozen=True)
class Writer:
    """Who holds a lock: enough to tell, on the same host, whether it still runs."""

    host: str
    boot: str
    pidns: str
    pid: int
    started: str
    token: str

    @classmethod
    def me(cls, token: str) -> Writer:
        return cls(_host(), _boot_id(), _pid_namespace(), os.getpid(), _my_start_time(os.getpid()), token)

    def same_machine(self) -> bool:
        """Same host, boot and pid namespace as this process: its pid means the same here."""
        return bool(self.boot) and (self.host, self.boot, self.pidns) == (_host(), _boot_id(), _pid_namespace())

    def running(self) -> bool:
        """Only meaningful where `same_machine()`: its pid runs, and is the process that took the lock."""
        return _pid_runs(self.pid) and (not self.started or _start_time(self.pid) in ("", self.started))

    def where(self) -> str:
        return "" if self.same_machine() else f" on {self.host}"


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


@functools.lru_cache(maxsize=1)
def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def _host() -> str:
    return socket.gethostname()


@functools.lru_cache(maxsize=4)
def _my_start_time(pid: int) -> str:  # keyed by pid: a forked child has its own
    return _start_time(pid)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), '' if unknown."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[-1].split()[19] if stat else ""


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def lock_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}{LOCK}")


def _flock(fd: int) -> bool | None:
    """Take the file system lock without waiting: True taken, False held by another, None not supported."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            return False
        return None  # ENOLCK, EINVAL, EOPNOTSUPP: this file system keeps no such locks
    return True


def filesystem_now(folder: Path) -> float:
    """The file system's clock, read from a file made there (on NFS the server's, which lock mtimes use)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rtstyle-clock.") as probe:
            return os.fstat(probe.fileno()).st_mtime
    except OSError:
        return time.time()


def _parse(text: str) -> Writer | None:
    try:
        fields = json.loads(text)
        return Writer(str(fields["host"]), str(fields["boot"]), str(fields["pidns"]), int(fields["pid"]),
                      str(fields["started"]), str(fields["token"]))
    except (ValueError, KeyError, TypeError):
        return None  # being written, or left by an older rtstyle (a bare pid): judged by its lease alone


def judge(lock: Path, now: float | None = None) -> tuple[bool, Writer | None, int | None]:
    """(alive, its writer, an fd holding its flock when dead and taken) for the lock file `lock`.

    A dead lock's fd is returned with its `flock` held, so the caller can remove it without racing
    another run that also found it dead; None where the lock is gone or the file system has no flock.
    """
    try:
        fd = _open_existing(lock)
    except FileNotFoundError:
        return False, None, None
    except OSError:
        return True, None, None  # cannot even open it: leave it
    try:
        taken = _flock(fd)
        stat = os.fstat(fd)
        writer = _parse(os.read(fd, 4096).decode(errors="replace"))
    except OSError:
        os.close(fd)
        return True, None, None
    if taken is False:  # the file system says its writer holds it
        os.close(fd)
        return True, writer, None
    if writer is not None and writer.same_machine():
        alive = writer.running()
    else:
        now = filesystem_now(lock.parent) if now is None else now
        alive = now - stat.st_mtime < EXPIRES_S
    if alive:
        os.close(fd)
        return True, writer, None
    return False, writer, fd if taken else (os.close(fd) or None)


def _open_existing(lock: Path) -> int:
    try:
        return os.open(lock, os.O_RDWR)  # NFS emulates flock with POSIX locks, which want write access
    except PermissionError:
        return os.open(lock, os.O_RDONLY)  # another user's lock: flock needs only read access


def _remove_if_same(lock: Path, fd: int | None) -> None:
    """Unlink `lock` if it is still the file `fd` holds (another run may have replaced it meanwhile)."""
    try:
        if fd is None:
            lock.unlink(missing_ok=True)
            return
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                lock.unlink()
        except FileNotFoundError:
            pass
    finally:
        if fd is not None:
            os.close(fd)


def partial_token(path: Path) -> tuple[str, str]:
    """(output name, claim token) of a temporary file `.STEM.TOKEN-XXXXXX.rtstyle-partial.EXT`."""
    head, _, suffix = path.name.partition(PARTIAL)
    stem, _, tail = head[1:].rpartition(".")
    return stem + suffix, tail.rsplit("-", 1)[0]


def shown_path(path: Path) -> Path:
    """The output a temporary file will become, for messages (the user never asked for the hidden name)."""
    if path.name.startswith(".") and PARTIAL in path.name:
        return path.with_name(partial_token(path)[0])
    return path


def temporary_name(dst: Path) -> Path:
    """A hidden name beside `dst` that names this process's claim on it (or its pid, outside a claim)."""
    token = _claims.get(str(lock_path(dst).absolute()), str(os.getpid()))
    return dst.with_name(f".{dst.stem}.{token}-{secrets.token_hex(3)}{PARTIAL}{dst.suffix}")


def remove_dead_partials(folder: Path, force: bool = False) -> None:
    """Delete temporary files whose claim is provably over (see the module's docstring).

    A folder is swept at most once per `RENEW_S` in a process unless `force`: a batch of N files in
    one folder then lists it a few times, not N times (which grows with the square of N).
    """
    key = str(folder.absolute())
    if not force and time.monotonic() - _swept.get(key, -RENEW_S) < RENEW_S:
        return
    _swept[key] = time.monotonic()
    now = None
    try:
        entries = [entry for entry in os.scandir(folder) if entry.name.startswith(".") and PARTIAL in entry.name]
    except OSError:
        return
    verdicts: dict[str, tuple[bool, str]] = {}  # output name -> (lock alive, its token)
    for entry in entries:
        path = Path(entry.path)
        output, token = partial_token(path)
        if output not in verdicts:
            now = filesystem_now(folder) if now is None else now
            alive, writer, fd = judge(lock_path(folder / output), now)
            if fd is not None:
                os.close(fd)
            verdicts[output] = (alive, writer.token if writer else "")
        alive, owner = verdicts[output]
        if alive and (not owner or owner == token):
            continue  # its claim runs (or a lock whose owner this rtstyle cannot read: kept to be safe)
        log.info("removing %s, left by a run that is over", path.name)
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def claim(dst: Path) -> Iterator[str]:
    """Hold `dst` for this process: a lock file made with O_EXCL, `flock`ed and renewed while held.

    Yields the claim's token (temporary files beside `dst` carry it). A dead claim is taken over;
    a live one is refused in one line.
    """
    lock = lock_path(dst)
    token = secrets.token_hex(6)
    writer = Writer.me(token)
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)  # the umask decides, as for outputs
        except FileExistsError:
            alive, owner, held = judge(lock)
            if alive:
                legacy = _read(str(lock))
                who = f"pid {owner.pid}" if owner else f"pid {legacy}" if legacy.isdigit() else "a run"
                raise OutputError(f"another rtstyle run ({who}) is writing {dst}{owner.where() if owner else ''}; "
                                  "wait for it or choose another output") from None
            log.info("taking over %s from a run that is over", lock.name)
            _remove_if_same(lock, held)
            continue
        except OSError as exc:
            raise OutputError(f"cannot write to {dst.parent}: {exc.strerror or exc}") from None
        break
    else:
        raise OutputError(f"cannot claim {dst}: {lock.name} keeps reappearing")
    try:
        for _ in range(100):  # another run judging this new lock holds its flock for a moment: wait that out
            if _flock(fd) is not False:
                break
            time.sleep(0.01)
        os.write(fd, json.dumps(writer.__dict__).encode())
        key = str(lock.absolute())
        _claims[key] = token
        _renewing(fd, lock)
        try:
            remove_dead_partials(dst.parent)
            yield token
        finally:
            _renewing(fd, None)
            _claims.pop(key, None)
    finally:
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                lock.unlink()
        except OSError:
            pass
        os.close(fd)  # drops the flock


_held: dict[int, Path] = {}  # fd -> lock file, of the claims this process holds
_held_lock = threading.Lock()
_wake = threading.Event()  # set: renew now (tests that shorten RENEW_S)
_renewer: threading.Thread | None = None


def _renewing(fd: int, lock: Path | None) -> None:
    """Start (a lock) or stop (None) renewing the lease of `fd`: one thread renews every claim of the process
    (a thread per claim would cost a batch of small files more than their conversions), and ends when a
    renewal period passes with none held."""
    global _renewer
    with _held_lock:  # also keeps a closed fd, perhaps reused by another file, from being touched
        if lock is None:
            _held.pop(fd, None)
            return
        _held[fd] = lock
        if _renewer is None or not _renewer.is_alive():
            _renewer = threading.Thread(target=_renew, name="rtstyle-lease", daemon=True)
            _renewer.start()


def _renew() -> None:
    """Touch each held lock every RENEW_S (on NFS, with the server's time) so other machines see it live."""
    global _renewer
    while True:
        _wake.wait(RENEW_S)
        _wake.clear()
        with _held_lock:
            if not _held:  # idle for a renewal period: gone until the next claim
                _renewer = None
                return
            for fd, lock in _held.items():
                try:
                    os.utime(fd)
                except OSError as exc:
                    log.warning("cannot renew the lease on %s (%s); another machine may take it over after %.0f s",
                                lock.name, exc.strerror or exc, EXPIRES_S)
