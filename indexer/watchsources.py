"""Where the watcher hears about changes: inotify events, or polling where events can't be trusted.

One :class:`ChangeFeed` per watcher. It watches every folder of the tree with one inotify
descriptor (Linux) and one reader thread, and polls, on a second thread, the folders inotify
can't see: folders past the watch limit (``fs.inotify.max_user_watches``, or ``max_watches``),
folders on network and FUSE mounts (NFS, CIFS/SMB, sshfs: changes made by other machines never
raise an event here), everything with ``--poll``, and everything off Linux. Either way it only
says *which paths changed*; the watcher decides what that means by scanning them.

Why not watchdog or watchfiles (both measured, benchmarks/RESULTS.md): both start one inotify
watch per folder just as this does, but neither can watch part of a tree and poll the rest when
the kernel's watch limit is reached (watchdog's emitter fails, watchfiles raises), and the issue
asks for exactly that. Talking to inotify directly is ~100 lines of ctypes and one thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import queue
import select
import stat
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Sequence

log = logging.getLogger(__name__)

# inotify(7)
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_IN_UNMOUNT, _IN_Q_OVERFLOW, _IN_IGNORED, _IN_ISDIR = 0x2000, 0x4000, 0x8000, 0x40000000
_IN_ONLYDIR, _IN_DONT_FOLLOW, _IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
         | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR | _IN_DONT_FOLLOW | _IN_EXCL_UNLINK)
_EVENT = struct.Struct("iIII")

#: File systems whose changes made elsewhere raise no inotify event here. (``fuseblk`` is a local
#: disk through FUSE, e.g. NTFS: every change passes this kernel, so events work.)
REMOTE_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
                       "lustre", "gpfs", "davfs", "fuse", "sshfs", "virtiofs", "vboxsf"})

#: Seconds between polls by default (``--poll`` alone, and folders events can't see).
POLL_SECONDS = 10.0

#: A folder rename or a new folder reports its path; the watcher rescans it. The whole tree is
#: rescanned when the kernel's event queue overflowed: this path stands for "every root".
RESCAN_ALL = ""


def remote_mounts(mounts_file: str = "/proc/mounts") -> dict[str, str]:
    """Mount points of file systems inotify can't follow, with their type (empty off Linux)."""
    found: dict[str, str] = {}
    try:
        with open(mounts_file, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        fstype = parts[2]
        base = fstype.split(".", 1)[0]
        if fstype in REMOTE_FS or (base == "fuse" and fstype != "fuseblk") or fstype.startswith("fuse."):
            found[point] = fstype
    return found


def mount_of(path: str, mounts: dict[str, str]) -> tuple[str, str] | None:
    """The remote mount ``path`` lies on (mount point, type), or None."""
    best = None
    for point, fstype in mounts.items():
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) > len(best[0]):
                best = (point, fstype)
    return best


class _Inotify:
    """One inotify descriptor: watches by folder, events parsed into (path, mask, is_dir)."""

    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        self.fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.paths: dict[int, str] = {}  # wd -> folder
        self.wds: dict[str, int] = {}  # folder -> wd

    def add(self, folder: str) -> None:
        """Watch ``folder``. Raises OSError (ENOSPC: the watch limit) when the kernel refuses."""
        wd = self._add(self.fd, os.fsencode(folder), _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), folder)
        self.paths[wd] = folder
        self.wds[folder] = wd

    def forget_under(self, folder: str) -> None:
        """Stop watching ``folder`` and everything under it (it was moved away or deleted)."""
        prefix = folder.rstrip("/") + "/"
        for path in [p for p in self.wds if p == folder or p.startswith(prefix)]:
            wd = self.wds.pop(path)
            self.paths.pop(wd, None)
            self._rm(self.fd, wd)  # fails harmlessly when the kernel already dropped it

    def read(self) -> Iterable[tuple[str | None, int]]:
        """Events waiting now: (path, mask); path None for a queue overflow."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                yield None, mask
                continue
            folder = self.paths.get(wd)
            if mask & _IN_IGNORED:
                if folder is not None and self.wds.get(folder) == wd:
                    del self.wds[folder]
                self.paths.pop(wd, None)
                continue
            if folder is None:
                continue
            yield (os.path.join(folder, os.fsdecode(raw)) if raw else folder), mask

    @property
    def count(self) -> int:
        return len(self.wds)

    def close(self) -> None:
        os.close(self.fd)


class _Poller:
    """Folders listed every ``seconds``: a change of a name, a size or an mtime is a change.

    A folder that cannot be listed (a network mount that went away) or whose device changed (it
    was unmounted: the empty mount point shows) keeps its last listing: an outage is not a deletion.
    """

    def __init__(self):
        self.listings: dict[str, tuple[int, dict[str, tuple[bool, int, int]]]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def _list(folder: str) -> tuple[int, dict[str, tuple[bool, int, int]]] | None:
        out = {}
        try:
            device = os.stat(folder).st_dev
            with os.scandir(folder) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    out[e.name] = (stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime_ns)
        except OSError:
            return None
        return device, out

    def add(self, folder: str) -> None:
        listing = self._list(folder)
        if listing is None:
            return
        with self.lock:
            self.listings[folder] = listing

    def forget_under(self, folder: str) -> None:
        prefix = folder.rstrip("/") + "/"
        with self.lock:
            for path in [p for p in self.listings if p == folder or p.startswith(prefix)]:
                del self.listings[path]

    def poll(self) -> tuple[list[str], list[str], list[str]]:
        """Changed paths, new folders and vanished folders since the last poll."""
        changed: list[str] = []
        new_dirs: list[str] = []
        gone_dirs: list[str] = []
        with self.lock:
            folders = list(self.listings)
        for folder in folders:
            listing = self._list(folder)
            with self.lock:
                before_listing = self.listings.get(folder)
                if before_listing is None:
                    continue
                if listing is None:
                    if not os.path.lexists(folder):  # deleted: its parent's listing reports it
                        del self.listings[folder]
                    continue
                if listing[0] != before_listing[0]:
                    log.warning("%s is on another device now (unmounted?); its files are left as they are", folder)
                    continue
                self.listings[folder] = listing
            before, now = before_listing[1], listing[1]
            if now == before:
                continue
            for name in before.keys() | now.keys():
                old, new = before.get(name), now.get(name)
                if old == new:
                    continue
                path = os.path.join(folder, name)
                if new is not None and new[0] and (old is None or not old[0]):
                    new_dirs.append(path)
                elif old is not None and old[0] and (new is None or not new[0]):
                    gone_dirs.append(path)
                if not (old and new and old[0] and new[0]):  # a folder's own mtime moves with its files
                    changed.append(path)
        return changed, new_dirs, gone_dirs

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.listings)


class ChangeFeed:
    """Changed paths under ``roots``, from inotify where it can see them and polling elsewhere.

    Args:
        roots: absolute folders (files are watched through their folder).
        want_folder: whether to follow a folder (the index's hidden and ``--exclude`` rules).
        poll: poll everything every this many seconds (``--poll``); None: events where they work.
        poll_seconds: how often folders events can't see are polled.
        max_watches: watch at most this many folders with inotify (default: as many as the kernel
            allows); the rest is polled.
        follow_symlinks: follow symbolic links to folders too (as ``--follow-symlinks`` scans them).
        mounts_file: where mounts are listed (tests give their own).
    """

    def __init__(self, roots: Sequence[str], want_folder: Callable[[str], bool], poll: float | None = None,
                 poll_seconds: float = POLL_SECONDS, max_watches: int | None = None,
                 follow_symlinks: bool = False, mounts_file: str = "/proc/mounts"):
        self.roots = list(roots)
        self.want_folder = want_folder
        self.follow_symlinks = follow_symlinks
        self._lock = threading.RLock()  # both threads add and drop watches
        self.poll_seconds = poll if poll is not None else poll_seconds
        self.max_watches = max_watches
        self.notices: list[str] = []
        self._changes: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._poller = _Poller()
        self._limit_hit = False
        self._remote = remote_mounts(mounts_file)
        self._inotify: _Inotify | None = None
        self._threads: list[threading.Thread] = []
        self._wake_r, self._wake_w = os.pipe()
        if poll is None and sys.platform.startswith("linux"):
            try:
                self._inotify = _Inotify()
            except OSError as e:
                self.notices.append(f"file events are unavailable here ({e.strerror}); polling every "
                                    f"{self.poll_seconds:g} s")
        elif poll is None:
            self.notices.append(f"file events are followed on Linux only; polling every {self.poll_seconds:g} s")
        else:
            self.notices.append(f"polling every {self.poll_seconds:g} s (--poll)")

    # -- setting up -----------------------------------------------------------------------------

    def start(self) -> None:
        """Watch (or list, to poll) every folder of the tree, then follow changes on threads."""
        for root in self.roots:
            self._add_tree(root)
        if self._inotify is not None and self._poller.count:
            if self._limit_hit:
                self.notices.append(
                    f"the inotify watch limit is reached: {self._inotify.count} folders follow events, "
                    f"{self._poller.count} are polled every {self.poll_seconds:g} s; raise it with "
                    "'sudo sysctl fs.inotify.max_user_watches=524288' (and in /etc/sysctl.d/ to keep it)")
        elif self._inotify is not None:
            count = self._inotify.count
            self.notices.append(f"following file events (inotify) on {count} folder{'s' if count != 1 else ''}")
        for point, fstype in sorted(self._remote_under_roots().items()):
            self.notices.append(f"{point} is a {fstype} mount: changes made on other machines raise no events "
                                f"here, so it is polled every {self.poll_seconds:g} s")
        if self._inotify is not None:
            self._spawn(self._read_events, "searchlib-watch-events")
        self._spawn(self._poll_loop, "searchlib-watch-poll")

    def _remote_under_roots(self) -> dict[str, str]:
        out = {}
        for point, fstype in self._remote.items():
            for root in self.roots:
                if mount_of(root, {point: fstype}) or point.startswith(root.rstrip("/") + "/"):
                    out[point] = fstype
        return out

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _add_tree(self, top: str) -> None:
        """Follow ``top`` and the folders under it (those ``want_folder`` accepts)."""
        follow = self.follow_symlinks
        if not os.path.isdir(top) or (os.path.islink(top) and not follow and top not in self.roots):
            return
        seen: set[tuple[int, int]] = set()
        stack = [top]
        with self._lock:
            while stack:
                folder = stack.pop()
                try:
                    st = os.stat(folder)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:  # a symlink loop
                    continue
                seen.add((st.st_dev, st.st_ino))
                self._follow(folder)
                try:
                    with os.scandir(folder) as it:
                        subs = [e.path for e in it if e.is_dir(follow_symlinks=follow)]
                except OSError:
                    continue
                stack.extend(sorted((s for s in subs if self.want_folder(s)), reverse=True))

    def _follow(self, folder: str) -> None:
        if self._inotify is not None and not self._limit_hit and mount_of(folder, self._remote) is None:
            if self.max_watches is None or self._inotify.count < self.max_watches:
                try:
                    self._inotify.add(folder)
                    return
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        log.info("cannot watch %s (%s); polling it", folder, e.strerror)
                        self._poller.add(folder)
                        return
            if not self._limit_hit:
                self._limit_hit = True
                log.warning("inotify watch limit reached at %s; polling the folders left", folder)
        self._poller.add(folder)

    # -- following ------------------------------------------------------------------------------

    def get(self, timeout: float) -> list[str]:
        """Paths changed since the last call (waits up to ``timeout`` s for the first).
        :data:`RESCAN_ALL` means every root."""
        out = []
        try:
            out.append(self._changes.get(timeout=timeout))
            while True:
                out.append(self._changes.get_nowait())
        except queue.Empty:
            pass
        return out

    def _read_events(self) -> None:
        assert self._inotify is not None
        fd = self._inotify.fd
        while not self._stop.is_set():
            ready, _, _ = select.select([fd, self._wake_r], [], [])
            if self._stop.is_set():
                break
            if fd not in ready:
                continue
            with self._lock:
                events = list(self._inotify.read())
            for path, mask in events:
                if path is None:
                    log.warning("the kernel dropped file events (queue overflow); rescanning every folder")
                    self._changes.put(RESCAN_ALL)
                    continue
                if mask & _IN_UNMOUNT:
                    # Never a change to index: rescanning the empty mount point would drop its rows.
                    log.warning("%s was unmounted: it is no longer followed; start the watcher again once it "
                                "is mounted", path)
                    continue
                is_dir = bool(mask & _IN_ISDIR)
                if is_dir and mask & (_IN_MOVED_FROM | _IN_DELETE):
                    with self._lock:
                        self._inotify.forget_under(path)
                    self._poller.forget_under(path)
                elif is_dir and mask & (_IN_CREATE | _IN_MOVED_TO) and self.want_folder(path):
                    self._add_tree(path)
                if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF) and path.rstrip("/") not in self.roots:
                    continue  # its parent reports the same change
                self._changes.put(path)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            changed, new_dirs, gone_dirs = self._poller.poll()
            for folder in gone_dirs:
                self._poller.forget_under(folder)
            for folder in new_dirs:
                if self.want_folder(folder):
                    self._add_tree(folder)
            for path in changed:
                self._changes.put(path)

    def stop(self) -> None:
        """Stop both threads and release the inotify descriptor."""
        self._stop.set()
        os.write(self._wake_w, b"x")
        for thread in self._threads:
            thread.join(timeout=5)
        if self._inotify is not None:
            self._inotify.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def watched(self) -> int:
        """Folders followed by events."""
        return self._inotify.count if self._inotify is not None else 0

    @property
    def polled(self) -> int:
        """Folders polled."""
        return self._poller.count
