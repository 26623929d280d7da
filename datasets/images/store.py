"""The image-set file: data/images/<set>.h5 plus <set>.jsonl beside it.

Layout (shared with the encoders' C reader, see datasets/README.md):
  /pixels  uint8 [total]   every image row-major H x W x 3, concatenated in id order
  /offsets uint64 [N]      byte offset of image i in /pixels
  /shapes  int32 [N, 3]    height, width, 3
  /ids     UTF-8 str [N]   unique
  /source  UTF-8 str [N]   package and path of the original, or "generated:<recipe>"
  attrs    format="presight-images", format_version=1, set, seed (int64)
Both files are written as NAME.tmp and renamed when complete, so a killed
build never leaves a half-written set that looks whole.
"""
import errno
import hashlib
import json
import os

import numpy as np

FORMAT = "presight-images"
FORMAT_VERSION = 1
CHUNK = 1 << 20  # bytes per /pixels chunk (gzip is transparent to readers)


class Error(Exception):
    pass


def _failed(path, e):
    """An OSError while writing `path`, as that file's error ("X.tmp: No space left on device")."""
    return Error("%s: %s" % (path, e.strerror or e))


def _room(tmp, need):
    """A full disk or a quota is found before HDF5 writes, and named (datasets/out_file.h: a
    write that fails inside HDF5 leaves a broken file behind it)."""
    st = os.statvfs(os.path.dirname(os.path.abspath(tmp)))
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise Error("%s: needs up to %.2f MB, the disk has %.2f MB free: %s" % (
            tmp, need / 1e6, free / 1e6, os.strerror(errno.ENOSPC)))


def pixel_hash(rgb):
    """SHA-256 of an image's shape and pixels (the separation test's key)."""
    h = hashlib.sha256(("%dx%dx%d:" % rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return h.hexdigest()


class SetWriter:
    """Collects images in memory-light form (one growing pixel file), then
    writes the HDF5 file in one go at close()."""

    def __init__(self, path, name, seed):
        self.path, self.name, self.seed = path, name, int(seed)
        self.ids, self.sources, self.shapes, self.offsets = [], [], [], []
        self.seen = set()
        self._raw_path = path + ".pixels.tmp"
        try:
            self._raw = open(self._raw_path, "wb")
        except OSError as e:
            raise _failed(self._raw_path, e)
        self._size = 0

    def abandon(self):
        """Removes what was written (a failed build or import)."""
        self._raw.close()
        if os.path.exists(self._raw_path):
            os.unlink(self._raw_path)

    def add(self, image_id, rgb, source):
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise Error(f"{self.name}: image {image_id} is not uint8 HxWx3 ({rgb.dtype} {rgb.shape})")
        if image_id in self.seen:
            raise Error(f"{self.name}: duplicate image id {image_id}")
        self.seen.add(image_id)
        data = np.ascontiguousarray(rgb).tobytes()
        self.offsets.append(self._size)
        self.shapes.append(rgb.shape)
        self.ids.append(image_id)
        self.sources.append(source)
        try:
            self._raw.write(data)
        except OSError as e:
            self.abandon()
            raise _failed(self._raw_path, e)
        self._size += len(data)

    def close(self):
        import h5py
        try:
            self._raw.close()
        except OSError as e:
            self.abandon()
            raise _failed(self._raw_path, e)
        tmp = self.path + ".tmp"
        try:
            # gzip never grows pixels by more than a few per mille; ids, sources and HDF5's
            # own structures are the rest
            names = sum(len(x.encode()) + len(y.encode()) + 64 for x, y in zip(self.ids, self.sources))
            _room(tmp, self._size * 1.01 + 20 * len(self.ids) + names + (256 << 10))
            self._write(h5py, tmp)
            os.replace(tmp, self.path)
        except OSError as e:
            raise _failed(tmp, e)
        finally:
            os.unlink(self._raw_path)
            if os.path.exists(tmp):
                os.unlink(tmp)
        return len(self.ids), self._size

    def _write(self, h5py, tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["set"] = self.name
            f.attrs["seed"] = np.int64(self.seed)
            n = max(self._size, 1)
            px = f.create_dataset("pixels", shape=(self._size,), dtype=np.uint8,
                                  chunks=(min(CHUNK, n),) if self._size else None,
                                  compression="gzip" if self._size else None,
                                  compression_opts=4 if self._size else None)
            raw = np.memmap(self._raw_path, dtype=np.uint8, mode="r") if self._size else None
            for lo in range(0, self._size, 64 * CHUNK):
                hi = min(self._size, lo + 64 * CHUNK)
                px[lo:hi] = raw[lo:hi]
            del raw
            f.create_dataset("offsets", data=np.array(self.offsets, dtype=np.uint64).reshape(-1))
            f.create_dataset("shapes", data=np.array(self.shapes, dtype=np.int32).reshape(-1, 3))
            st = h5py.string_dtype("utf-8")
            f.create_dataset("ids", data=np.array(self.ids, dtype=object), dtype=st)
            f.create_dataset("source", data=np.array(self.sources, dtype=object), dtype=st)


class SetReader:
    """Reads a set back with every check the schema asks of a reader."""

    def __init__(self, path):
        import h5py
        self.path = path
        try:
            self.f = h5py.File(path, "r")
        except OSError as e:
            raise Error(f"{path}: cannot open as HDF5 ({e})")
        f = self.f
        if f.attrs.get("format") != FORMAT:
            raise Error(f"{path}: attribute format is {f.attrs.get('format')!r}, want {FORMAT!r}")
        if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise Error(f"{path}: format_version {f.attrs.get('format_version')}, want {FORMAT_VERSION}")
        for name, kind, rank in (("pixels", "u", 1), ("offsets", "u", 1), ("shapes", "i", 2),
                                 ("ids", "O", 1), ("source", "O", 1)):
            if name not in f:
                raise Error(f"{path}: dataset /{name} is missing")
            d = f[name]
            if d.ndim != rank or d.dtype.kind != kind:
                raise Error(f"{path}: /{name} has rank {d.ndim} and type {d.dtype}")
        self.offsets = f["offsets"][:]
        self.shapes = f["shapes"][:]
        self.ids = [s.decode() if isinstance(s, bytes) else s for s in f["ids"][:]]
        self.sources = [s.decode() if isinstance(s, bytes) else s for s in f["source"][:]]
        n = len(self.ids)
        if len(self.offsets) != n or self.shapes.shape != (n, 3) or len(self.sources) != n:
            raise Error(f"{path}: /offsets, /shapes, /ids and /source disagree on the image count")
        if len(set(self.ids)) != n:
            raise Error(f"{path}: /ids are not unique")
        total = f["pixels"].shape[0]
        for i in range(n):
            h, w, c = (int(x) for x in self.shapes[i])
            if c != 3 or h <= 0 or w <= 0 or int(self.offsets[i]) + h * w * 3 > total:
                raise Error(f"{path}: image {self.ids[i]} (/offsets, /shapes row {i}) lies outside /pixels")
        self.index = {k: i for i, k in enumerate(self.ids)}
        self.set = f.attrs.get("set")
        self.seed = int(f.attrs.get("seed"))

    def __len__(self):
        return len(self.ids)

    def image(self, key):
        i = self.index[key] if isinstance(key, str) else key
        h, w, _ = (int(x) for x in self.shapes[i])
        o = int(self.offsets[i])
        return self.f["pixels"][o:o + h * w * 3].reshape(h, w, 3)

    def close(self):
        self.f.close()


def _write_text(path, write, commit):
    """path.tmp written by write(f), then renamed (commit) or returned for the caller to
    rename with others; a failed write leaves no .tmp and names the file."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)
        if commit:
            os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise _failed(tmp, e)
    return tmp


def write_jsonl(path, items, commit=True):
    """Writes items as JSON lines; commit=False returns path.tmp unrenamed."""
    def lines(f):
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False, sort_keys=False) + "\n")
    tmp = _write_text(path, lines, commit)
    return len(items) if commit else tmp


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path, obj, commit=True):
    """Writes obj as indented JSON; commit=False returns path.tmp unrenamed."""
    def dump(f):
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return _write_text(path, dump, commit)
