"""Extractors for the default corpora: one function x_NAME per method that the
extract column of sources.tsv may name ("NAME key=value ...").

An extractor gets the Context of corpora.py (ctx.pkg(name) for a fetched
package, ctx.decode(bytes) for counted UTF-8 decoding, ctx.count(key) for
what it skipped, ctx.used(pkg, pattern) for the card's origin) and the row's
options as keyword strings, and yields (id, text) in a fixed order; text may
be bytes (decoded and counted by the writer) or str. Comma-separated options
are lists. Patterns are fnmatch patterns on package paths, where * also
matches "/".
"""
import email
import email.header
import email.policy
import fnmatch
import gzip
import json
import os
import re
import sqlite3
import subprocess
import tarfile


def _list(v):
    return [x for x in v.split(",") if x] if v else []


def natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _matches(path, include, exclude):
    return (any(fnmatch.fnmatchcase(path, p) for p in include)
            and not any(fnmatch.fnmatchcase(path, p) for p in exclude))


def select(ctx, pkg, include, exclude=""):
    """(Pkg, package path) for every file of the packages matching the patterns."""
    inc, exc = _list(include), _list(exclude)
    out = []
    for name in _list(pkg):
        p = ctx.pkg(name)
        for pat in inc:
            ctx.used(p, pat)
        out += [(p, f) for f in p.files() if _matches(f, inc, exc)]
    out.sort(key=lambda pf: (natural_key(pf[1]), pf[0].name))
    if not out:
        raise RuntimeError(f"{ctx.src.name}: no file of {pkg} matches {include}")
    return out


def read(p, path):
    with open(p.path(path), "rb") as f:
        data = f.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def _doc_id(path):
    return path[:-3] if path.endswith(".gz") else path


# ------------------------------------------------------------ generic

def x_files(ctx, pkg, include, exclude="", maxbytes="0"):
    """One document per file (a .gz file is read decompressed)."""
    limit = int(maxbytes)
    for p, path in select(ctx, pkg, include, exclude):
        data = read(p, path)
        if limit and len(data) > limit:
            ctx.count("over_maxbytes")
            continue
        yield _doc_id(path), data


def x_tar(ctx, pkg, tarball, include, exclude="", maxbytes="0"):
    """One document per member of a tarball, streamed (never unpacked)."""
    p = ctx.pkg(pkg)
    inc, exc, limit = _list(include), _list(exclude), int(maxbytes)
    ctx.used(p, tarball)
    for pat in inc:
        ctx.used(p, tarball + ":" + pat)
    with tarfile.open(p.path(tarball), "r|*") as t:
        for m in t:
            if not m.isfile() or not _matches(m.name, inc, exc):
                continue
            if limit and m.size > limit:
                ctx.count("over_maxbytes")
                continue
            yield m.name, t.extractfile(m).read()


# ------------------------------------------------------------ dictionaries

_DICTD_DIGITS = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _dictd_num(s):
    n = 0
    for c in s:
        n = n * 64 + _DICTD_DIGITS[c]
    return n


def x_dictd(ctx, pkg, db):
    """One document per entry of a dictd database (.index + .dict.dz; dictzip
    is gzip). Entries are found through the index, each once, in file order;
    the 00-database-* entries (metadata) are left out."""
    p = ctx.pkg(pkg)
    ctx.used(p, db + ".index")
    ctx.used(p, db + ".dict.dz")
    entries = {}
    with open(p.path(db + ".index"), "rb") as f:
        for line in f:
            word, off, length = line.rstrip(b"\n").split(b"\t")[:3]
            key = (_dictd_num(off.decode()), _dictd_num(length.decode()))
            if word.startswith(b"00-database") or word.startswith(b"00database"):
                entries[key] = None
            elif key not in entries:
                entries[key] = word
    with gzip.open(p.path(db + ".dict.dz"), "rb") as f:
        data = f.read()
    for (off, length), word in sorted(entries.items()):
        if word is None:
            ctx.count("metadata_entries")
            continue
        yield os.path.basename(db) + ":" + ctx.decode(word), data[off:off + length]


def x_fortune(ctx, pkg, include, exclude=""):
    """One document per fortune (the files are %-separated)."""
    for p, path in select(ctx, pkg, include, exclude):
        text = ctx.decode(read(p, path))
        for n, item in enumerate(re.split(r"(?m)^%[ \t]*\n", text + "\n"), 1):
            item = item.rstrip()
            if item.strip():
                yield f"{os.path.basename(path)}#{n}", item


_NOUN_LEX = {"Tops": 3, "act": 4, "animal": 5, "artifact": 6, "attribute": 7, "body": 8,
             "cognition": 9, "communication": 10, "event": 11, "feeling": 12, "food": 13,
             "group": 14, "location": 15, "motive": 16, "object": 17, "person": 18,
             "phenomenon": 19, "plant": 20, "possession": 21, "process": 22, "quantity": 23,
             "relation": 24, "shape": 25, "state": 26, "substance": 27, "time": 28}


def _wordnet(path):
    """offset -> (lexfile, words, pointers, gloss) for one data.* file."""
    out = {}
    with open(path, "rb") as f:
        for raw in f:
            if raw.startswith(b"  "):  # the licence header
                continue
            line = raw.decode("utf-8").rstrip("\n")
            head, _, gloss = line.partition(" | ")
            fl = head.split()
            n = int(fl[3], 16)
            words = [re.sub(r"\((a|p|ip)\)$", "", fl[4 + 2 * i]).replace("_", " ") for i in range(n)]
            i = 4 + 2 * n
            pc = int(fl[i])
            ptrs = [(fl[i + 1 + 4 * k], fl[i + 2 + 4 * k], fl[i + 3 + 4 * k]) for k in range(pc)]
            out[fl[0]] = (int(fl[1]), words, ptrs, gloss.strip())
    return out


def x_wordnet_visual(ctx, pkg, nouns, attribute="visual property"):
    """WordNet synsets about the visible world, one document per synset
    ("words (pos): gloss"): every noun synset of the lexicographer files named
    in nouns (noun.animal, ...); the noun.attribute synsets under the
    attribute synset (visual property: colours, lightness, ...); and the
    adjective synsets whose attribute pointer (=) names one of those, with
    their satellites (similar-to, &)."""
    p = ctx.pkg(pkg)
    for f in ("data.noun", "data.adj"):
        ctx.used(p, "/usr/share/wordnet/" + f)
    N = _wordnet(p.path("/usr/share/wordnet/data.noun"))
    A = _wordnet(p.path("/usr/share/wordnet/data.adj"))
    lexes = {_NOUN_LEX[n.replace("noun.", "")] for n in _list(nouns)}
    attribute = attribute.replace("_", " ")
    seeds = [o for o, v in N.items() if v[0] == 7 and attribute in v[1]]
    if not seeds:
        raise RuntimeError(f"no noun.attribute synset {attribute!r}")
    attr, todo = set(), list(seeds)
    while todo:  # hyponyms (~) of the attribute synset
        o = todo.pop()
        if o in attr:
            continue
        attr.add(o)
        todo += [t for s, t, pos in N[o][2] if s == "~" and pos == "n"]
    heads = {o for o, v in A.items() if any(s == "=" and t in attr for s, t, _ in v[2])}
    adjs = set(heads)
    for o in heads:
        adjs |= {t for s, t, pos in A[o][2] if s == "&" and pos in ("a", "s")}
    for o in sorted(N):
        if N[o][0] in lexes or o in attr:
            yield f"wn:n:{o}", f"{', '.join(N[o][1])} (noun): {N[o][3]}"
    for o in sorted(adjs):
        yield f"wn:a:{o}", f"{', '.join(A[o][1])} (adjective): {A[o][3]}"


# ------------------------------------------------------------ mathematics

_MM_HEADER = re.compile(r"(?m)^[ \t]*\$\([ \t]*\n(?:[ \t]*\n)*[ \t]*(?:####|#\*#\*|=-=-|-\.-\.)")
_MM_MARKER = re.compile(r"^\s*(####|#\*#\*|=-=-|-\.-\.)")
_MM_TOKENS = re.compile(r"(\$\(.*?\$\))|(\$=.*?\$\.)", re.S)


def x_metamath(ctx, pkg, include, proofs="strip"):
    """One document per section of a Metamath database (a section starts at a
    header comment: a line of ####, #*#*, =-=- or -.-. marks). With
    proofs=strip each proof is replaced by "$= ? $." (Metamath's own notation
    for an unproved step): compressed proofs are base-26 noise to a language
    model and are two thirds of set.mm."""
    for p, path in select(ctx, pkg, include):
        text = ctx.decode(read(p, path))
        if proofs == "strip":
            n = [0]

            def sub(m):
                if m.group(1):
                    return m.group(1)
                n[0] += 1
                return "$= ? $."
            text = _MM_TOKENS.sub(sub, text)
            ctx.count("proofs_stripped", n[0])
        starts = [0] + [m.start() for m in _MM_HEADER.finditer(text)]
        ends = starts[1:] + [len(text)]
        base = os.path.basename(path)
        for s, e in zip(starts, ends):
            chunk = text[s:e].strip("\n")
            title = "preamble"
            if s:
                lines = [ln.strip() for ln in chunk.splitlines()[1:8]]
                title = next((ln for ln in lines if ln and not _MM_MARKER.match(ln)), "section")
            yield f"{base}:{title}", chunk


# ------------------------------------------------------------ prose corpora

_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "''", "'", "%", "n't"}
_NO_SPACE_AFTER = {"(", "[", "{", "``", "`", "$"}
_CLITICS = {"'s", "'re", "'ll", "'d", "'ve", "'m"}


def _detok(words):
    out, prev = [], None
    for w in words:
        if prev is not None and not (w in _NO_SPACE_BEFORE or w.lower() in _CLITICS
                                     or prev in _NO_SPACE_AFTER):
            out.append(" ")
        out.append(w)
        prev = w
    return "".join(out).replace("``", '"').replace("''", '"')


def x_brown(ctx, pkg, genres):
    """One document per Brown Corpus sample (about 2,000 words), untagged:
    the form-C files are word/tag tokens, a sentence a line, paragraphs
    between blank lines; tags are dropped and the tokens joined back with
    English spacing."""
    gen = "".join(_list(genres))
    for p, path in select(ctx, pkg, ",".join(f"c{g}[0-9][0-9]" for g in gen)):
        raw = ctx.decode(read(p, path))
        paras = []
        for block in re.split(r"\n[ \t]*\n", raw):
            sents = [_detok([t.rsplit("/", 1)[0] for t in line.split()])
                     for line in block.splitlines() if line.strip()]
            if sents:
                paras.append(" ".join(sents))
        yield f"brown:{path}", "\n\n".join(paras)


def x_spdx(ctx, pkg, file):
    """One document per licence text of the SPDX licence list."""
    p = ctx.pkg(pkg)
    ctx.used(p, file)
    d = json.loads(read(p, file))
    for lid in sorted(d):
        yield f"spdx:{lid}", d[lid].get("licenseText") or ""


def x_go_terms(ctx, pkg, db):
    """One document per Gene Ontology term: "term (ontology): definition",
    then its exact synonyms. Read from the SQLite file of Bioconductor's GO.db
    with Python's sqlite3."""
    p = ctx.pkg(pkg)
    ctx.used(p, db)
    con = sqlite3.connect(f"file:{p.path(db)}?mode=ro&immutable=1", uri=True)
    syn = {}
    for _id, s in con.execute("SELECT _id, synonym FROM go_synonym WHERE like_go_id = 0 ORDER BY rowid"):
        syn.setdefault(_id, []).append(s)
    q = ("SELECT t._id, t.go_id, t.term, o.term_type, t.definition FROM go_term t "
         "JOIN go_ontology o ON o.ontology = t.ontology ORDER BY t.go_id")
    for _id, go_id, term, onto, definition in con.execute(q):
        if not definition or go_id == "all":
            ctx.count("no_definition")
            continue
        text = f"{term} ({onto.replace('_', ' ')}): {definition}"
        if syn.get(_id):
            text += "\nAlso called: " + "; ".join(syn[_id]) + "."
        yield go_id, text
    con.close()


def x_email(ctx, pkg, include, exclude=""):
    """One document per e-mail: "Subject: ..." then the text/plain body. The
    other headers (addresses, routes) are dropped; a message without a
    text/plain part is skipped and counted."""
    for p, path in select(ctx, pkg, include, exclude):
        msg = email.message_from_bytes(read(p, path), policy=email.policy.compat32)
        subject = str(email.header.make_header(email.header.decode_header(msg.get("Subject", "")))) \
            if msg.get("Subject") else ""
        bodies = []
        for part in msg.walk():
            if part.get_content_type() != "text/plain" or part.get_filename():
                continue
            data = part.get_payload(decode=True) or b""
            cs = (part.get_content_charset() or "utf-8").lower()
            try:
                bodies.append(data.decode(cs) if cs not in ("utf-8", "utf8", "us-ascii", "ascii")
                              else ctx.decode(data))
            except (LookupError, UnicodeDecodeError):
                bodies.append(ctx.decode(data))
        if not bodies:
            ctx.count("no_text_part")
            continue
        rel = "/".join(path.split("/")[-2:])
        rel = rel[:-4] if rel.endswith(".txt") else rel
        yield rel, f"Subject: {' '.join(subject.split())}\n\n" + "\n\n".join(b.strip("\n") for b in bodies)


def x_bible(ctx, pkg, data):
    """One document per book of the King James Bible, printed by the bible
    program of bible-kjv (its own compressed format) without line wrapping:
    "Book N" chapter headings and numbered verses."""
    prog, texts = ctx.pkg(pkg), ctx.pkg(data)
    ctx.used(prog, "/usr/bin/bible")
    ctx.used(texts, "/usr/lib/bible.data")
    out = subprocess.run([prog.path("/usr/bin/bible"), "-p", texts.path("/usr/lib"), "-l100000",
                          "Gen1:1-Rev22:21"], capture_output=True, check=True).stdout
    book, lines, n = None, [], 0
    for line in ctx.decode(out).splitlines():
        m = re.fullmatch(r"(\S.*) (\d+)", line)
        if m and m.group(1) != book:
            if book:
                n += 1
                yield f"kjv:{n:02d}:{book}", "\n".join(lines).strip() + "\n"
            book, lines = m.group(1), []
        lines.append(line.strip())
    if book:
        yield f"kjv:{n + 1:02d}:{book}", "\n".join(lines).strip() + "\n"


def x_colornames(ctx, pkg, file):
    """One document per named colour: "Name (#hex)"."""
    p = ctx.pkg(pkg)
    ctx.used(p, file)
    for i, c in enumerate(json.loads(read(p, file))):
        yield f"color:{i}", f"{c['name']} ({c['hex']})"
