"""The packages the image sets are built from, pinned by version and SHA-256.

Debian packages are fetched with `apt-get download PKG=VERSION` into
build/images-debs/ and unpacked there with dpkg-deb -x (never installed: the
stamps and fonts would pull in nothing we use); npm packages with `npm pack
NAME@VERSION` into build/npm-images/. A file whose SHA-256 differs from its
pin is an error: the sets are only reproducible from the same bytes.
"""
import fcntl
import hashlib
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# name: (kind, version, file, sha256, licence)
PINS = {
    "kgeography-data": ("deb", "4:22.12.3-1", "kgeography-data_4%3a22.12.3-1_all.deb",
                        "1cdaf45dea7cbf1682a05109b4e9299934f0a60ca8866fa957cf4d9dcfe3982a",
                        "GPL-2.0-or-later (KGeography maps and flags)"),
    "fonts-noto-color-emoji": ("deb", "2.042-0+deb12u1", "fonts-noto-color-emoji_2.042-0+deb12u1_all.deb",
                               "a5ab0f69c7938423862320d9aca5dd187b3fd879d6a9a57dd52e17c3fa8d2751",
                               "OFL-1.1 (font), Apache-2.0 (emoji images)"),
    "unicode-data": ("deb", "15.0.0-1", "unicode-data_15.0.0-1_all.deb",
                     "5efef23bbb1c6a133ecbdd63a2cfa07159ccacf5466a49e2426101c5ecd691fc",
                     "Unicode-DFS-2016"),
    "python3-skimage": ("deb", "0.19.3-8", "python3-skimage_0.19.3-8_all.deb",
                        "728d88c3e3440f1f3712de0805dc834d29248ff07e1eec8c0f3da07606f752f9",
                        "BSD-3-Clause (scikit-image); sample photos CC0 / public domain (skimage/data/README.txt)"),
    "tuxpaint-stamps-default": ("deb", "2022.06.04-1", "tuxpaint-stamps-default_2022.06.04-1_all.deb",
                                "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
                                "GPL-2.0-or-later"),
    "fonts-dejavu-core": ("deb", "2.37-6", "fonts-dejavu-core_2.37-6_all.deb",
                          "8892669e51aab4dc56682c8e39d8ddb7d70fad83c369344e1e240bf3ca22bb76",
                          "Bitstream-Vera and public-domain changes (DejaVu)"),
    "bsdgames": ("deb", "2.17-29+b1", "bsdgames_2.17-29+b1_amd64.deb",
                 "cc92de974a1f66623a05ac0aed6dc790f682e5aac5205f0210294744d1532d10",
                 "BSD-3-Clause (quiz data: public facts)"),
    "wordnet-base": ("deb", "1:3.0-37", "wordnet-base_1%3a3.0-37_all.deb",
                     "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
                     "WordNet-3.0 licence (Princeton)"),
    "vega-datasets": ("npm", "2.8.0", "vega-datasets-2.8.0.tgz",
                      "234330ee2d17a22b71964f428c077b156cee0f16cdd56eab2bd02f5c291c6310",
                      "BSD-3-Clause (package); each table's source in its README"),
}

# The packages each profile needs. small: what `make test` and the
# quickstart use (about 50 MB of downloads); full: the default sets.
PROFILE_PKGS = {
    "small": ["kgeography-data", "fonts-noto-color-emoji", "unicode-data", "python3-skimage",
              "fonts-dejavu-core", "bsdgames", "wordnet-base", "vega-datasets"],
    "full": ["kgeography-data", "fonts-noto-color-emoji", "unicode-data", "python3-skimage",
             "fonts-dejavu-core", "bsdgames", "wordnet-base", "vega-datasets",
             "tuxpaint-stamps-default"],
}


class Error(Exception):
    pass


def log(msg):
    print("images: " + msg, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir():
    return os.environ.get("PRESIGHT_IMAGES_CACHE", os.path.join(REPO, "build", "images-cache"))


def _download(name, kind, version, fname, dest):
    if kind == "deb":
        cmd = ["apt-get", "download", "-o", "APT::Sandbox::User=root", f"{name}={version}"]
    else:
        cmd = ["npm", "pack", "--silent", f"{name}@{version}"]
    log(f"fetching {name} {version}")
    r = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if r.returncode != 0 and kind == "deb":
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        r = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(os.path.join(dest, fname)):
        raise Error(f"fetching {name}={version} failed: {r.stderr.strip()[-800:]}")


def fetch(name):
    """Returns the folder the package is unpacked in (its file tree)."""
    if name not in PINS:
        raise Error(f"no pin for package {name}")
    kind, version, fname, sha, _ = PINS[name]
    root = cache_dir()
    os.makedirs(root, exist_ok=True)
    tree = os.path.join(root, "x", name)
    done = os.path.join(tree, ".unpacked")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(done) and open(done).read() == sha:
            return tree
        path = os.path.join(root, fname)
        if not os.path.exists(path):
            _download(name, kind, version, fname, root)
        got = sha256_file(path)
        if got != sha:
            os.unlink(path)
            raise Error(f"{path}: SHA-256 {got}, pinned {sha} (a changed package: update the pin in {__file__})")
        subprocess.run(["rm", "-rf", tree], check=True)
        os.makedirs(tree)
        if kind == "deb":
            subprocess.run(["dpkg-deb", "-x", path, tree], check=True)
        else:
            subprocess.run(["tar", "xzf", path, "-C", tree], check=True)
        with open(done, "w") as f:
            f.write(sha)
    return tree


def card_origin(name, paths=None):
    kind, version, fname, sha, licence = PINS[name]
    o = {"package": name, "version": version, "via": "apt-get download" if kind == "deb" else "npm pack",
         "file": fname, "sha256": sha, "licence": licence}
    if paths:
        o["paths"] = paths
    return o
