"""A passthrough FUSE file system for the end-to-end tests' disk faults:
every fsync and fdatasync takes DELAY_MS longer (cli/tests/slow_fsync.rs),
and while the file CONTROL holds "hang" every open, read, write and sync
waits until it no longer does, while it holds "hang-sync" only the syncs do
(cli/tests/slow_fsync.rs), and while it holds "fail" they fail with EIO
(cli/tests/signer_fault.rs puts an HSM's token store here).

usage: faultfs.py BACKING_DIR MOUNTPOINT DELAY_MS [CONTROL]
"""

import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class FaultFs(Operations):
    def __init__(self, root, delay_s, control):
        self.root = root
        self.delay_s = delay_s
        self.control = control

    def _mode(self):
        if self.control is None:
            return ""
        try:
            with open(self.control) as f:
                return f.read().strip()
        except FileNotFoundError:
            return ""

    def _fault(self):
        while self._mode() == "hang":
            time.sleep(0.01)
        if self._mode() == "fail":
            raise FuseOSError(errno.EIO)

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._full(path))
        except OSError as e:
            raise FuseOSError(e.errno)
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        return {key: getattr(st, key) for key in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        os.rmdir(self._full(path))

    def unlink(self, path):
        os.unlink(self._full(path))

    def rename(self, old, new):
        os.rename(self._full(old), self._full(new))

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def truncate(self, path, length, fh=None):
        with open(self._full(path), "r+b") as f:
            f.truncate(length)

    def utimens(self, path, times=None):
        os.utime(self._full(path), times)

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                "f_frsize", "f_namemax")
        return {key: getattr(st, key) for key in keys}

    def open(self, path, flags):
        self._fault()
        return os.open(self._full(path), flags)

    def create(self, path, mode, fi=None):
        # fusepy gives no open flags here: read and write, as a creator that
        # opens its file O_RDWR (the state history's store) reads it back
        # through this handle.
        self._fault()
        return os.open(self._full(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, size, offset, fh):
        self._fault()
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._fault()
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        self._fault()
        while self._mode() == "hang-sync":
            time.sleep(0.01)
        time.sleep(self.delay_s)
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        time.sleep(self.delay_s)
        return 0


if __name__ == "__main__":
    backing, mountpoint, delay_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    control = sys.argv[4] if len(sys.argv) > 4 else None
    FUSE(FaultFs(backing, delay_ms / 1000.0, control), mountpoint, foreground=True, nothreads=False, allow_other=True)
