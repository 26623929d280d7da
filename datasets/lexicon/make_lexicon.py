"""Generates the WordNet-derived lexicons of the segment tagger (datasets/labels.c).

    /usr/bin/python3 datasets/lexicon/make_lexicon.py [WORDNET_DIR] [COLOR_NAME_LIST_JSON]

WORDNET_DIR defaults to /usr/share/wordnet (Debian's wordnet-base); the colour
list to build/npm-corpora/color-name-list/dist/colornames.json (npm
color-name-list, fetched by `make corpora`). Writes, next to this script:

  concepts.txt  nouns whose usual sense is a visible thing: WordNet's
                noun.animal, noun.artifact, noun.body, noun.food, noun.object
                and noun.plant lexicographer files. A word is kept when those
                senses carry at least half of its SemCor frequency (cntlist),
                or, for words SemCor never saw, when it has no verb or
                adjective sense and most of its noun senses are there. Single
                words of 3+ letters; the hand-written stop list below removes
                the few that are mostly abstract in running text.
  colours.txt   the hyponyms of WordNet's chromatic and achromatic colour
                synsets, plus single-word names of color-name-list that
                WordNet also files as a colour. (Most of the list's 30,000
                names are ordinary words, "Abbey" or "Absolute Zero", and
                would drown the signal; the cross-check keeps the colour ones.)

The other lexicons (attributes, relations, science, math, code) are written
by hand. Output is sorted and deterministic; re-run after editing."""
import json, os, re, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", ".."))
wn = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet"
colour_json = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "build/npm-corpora/color-name-list/dist/colornames.json")

VISUAL_LEXFILES = {5, 6, 8, 13, 17, 20}  # noun.animal artifact body food object plant
SS_TYPE = {"n": 1, "v": 2, "a": 3, "s": 5, "r": 4}
WORD = re.compile(r"^[a-z]{3,}$")
# Usual senses in running prose are not a visible thing (checked by hand on
# code, licences and docs, where they fired without a visual context).
STOP = set("""
file files program programs key keys string strings table tables system systems device devices
function module modules interface interfaces unit units line lines set sets type types case cases
driver drivers port ports register registers bus buses block blocks page pages memory buffer buffers
stack stacks queue queues list lists tree trees node nodes link links chain chains pipe pipes
channel channels socket sockets slot slots switch switches lock locks filter filters handle handles
hook hooks box boxes field fields cell cells frame frames screen window windows display terminal
console library libraries package packages service services network networks machine machines engine
engines tool tools instrument instruments means way ways work works copy copies record records
document documents paper papers article articles book books source sources form forms side sides
back front top bottom end ends point points part parts piece pieces base bases support center centre
level levels space spaces area areas board boards post posts bar bars mark marks sign signs signal
signals code codes view views model models pattern patterns image images picture pictures figure
figures diagram diagrams chart charts map maps release releases version versions patch patches fix
fixes build builds test tests kit net web site sites mail email letter letters note notes card cards
ticket tickets check checks bill bills stamp stamps bond bonds share shares stock stocks cpu max
kernel boot counter cap setup output pointer res flag assembly segment bitmap clock hardware header
crypt trap root timer platform trampoline bank gate msg track barrier structure snapshot container
trigger architecture leaf instrumentation padding auto chip landing slab bridge hole stream marker
cursor accumulator aperture quad agent shell generator sock converter factory fork capsule wrapper
pool strip separator subsection button layer computer snippet widget machinery facility banner
compressor loading remains matrix wrapping shortcut product holder provisions oeuvre uniform
recording steps equipment office repository interchange apparatus slicer diffuser copier glyph
emblem constituent rom mac razor alb asp led pub building infrastructure modem firewall laptop dvd
monkey bug bugs daemon daemons virus crawler socket jack jacks bit bits byte bytes word words
sentence calculus binder preserves primer blackboard turnstile equalizer additive tag tags label
labels bin bins cache heap heaps gateway router server servers client clients host hosts terminal
terminals vector vectors array arrays sample samples specimen specimens element elements item items
object objects article provision section sections paragraph clause clauses schedule appendix annex
exhibit instrument arrangement establishment institution publication edition issue issues may doe
genu ness bot tor van das mit art tung meth python java gnu pud camellia serpent blowfish lat col
internet bush coco jailhouse oder lem ani cab sess daw tup revers semi
""".split())


def read_data(pos):
    """lemma -> list of (ss_type, lexfile, offset) for one data.* file."""
    out = {}
    for line in open(os.path.join(wn, "data." + pos), encoding="latin-1"):
        if line.startswith("  "):
            continue
        f = line.split()
        offset, lexfile, ss_type, wcnt = f[0], int(f[1]), f[2], int(f[3], 16)
        for k in range(wcnt):
            word = re.sub(r"\(.*\)$", "", f[4 + 2 * k])
            # Capitalised lemmas are names (Europe, Pacific, Python the genus):
            # not a kind of visible thing.
            if word != word.lower():
                continue
            out.setdefault(word, []).append((SS_TYPE[ss_type], lexfile, offset))
    return out


def read_counts():
    """(lemma, ss_type, lexfile) -> SemCor count."""
    counts = {}
    for line in open(os.path.join(wn, "cntlist.rev"), encoding="latin-1"):
        key, _, cnt = line.split()
        lemma, rest = key.split("%", 1)
        ss_type, lexfile = rest.split(":")[0:2]
        k = (lemma.lower(), int(ss_type), int(lexfile))
        counts[k] = counts.get(k, 0) + int(cnt)
    return counts


def concepts(nouns, others, counts):
    keep = []
    for lemma, senses in nouns.items():
        if not WORD.match(lemma) or lemma in STOP:
            continue
        visual = [s for s in senses if s[1] in VISUAL_LEXFILES]
        if not visual:
            continue
        all_senses = senses + others.get(lemma, [])
        # cntlist counts per sense key (lemma, type, lexfile, ...): sum over
        # the distinct (type, lexfile) pairs of the senses.
        total = sum(counts.get(k, 0) for k in set((lemma, s[0], s[1]) for s in all_senses))
        vis = sum(counts.get(k, 0) for k in set((lemma, s[0], s[1]) for s in visual))
        if total >= 3:
            ok = vis * 2 >= total
        else:
            ok = lemma not in others and len(visual) * 2 > len(senses)
        if ok:
            keep.append(lemma)
    return sorted(keep)


def colour_words(nouns_by_offset, hyponyms, roots):
    seen, stack, words = set(), list(roots), set()
    while stack:
        off = stack.pop()
        if off in seen:
            continue
        seen.add(off)
        for w in nouns_by_offset.get(off, []):
            if WORD.match(w):
                words.add(w)
        stack.extend(hyponyms.get(off, []))
    return words


def noun_graph():
    by_offset, hyponyms, offsets_of = {}, {}, {}
    for line in open(os.path.join(wn, "data.noun"), encoding="latin-1"):
        if line.startswith("  "):
            continue
        f = line.split()
        offset, wcnt = f[0], int(f[3], 16)
        words = [re.sub(r"\(.*\)$", "", f[4 + 2 * k]).lower() for k in range(wcnt)]
        by_offset[offset] = words
        for w in words:
            offsets_of.setdefault(w, []).append(offset)
        i = 4 + 2 * wcnt
        for p in range(int(f[i])):
            sym, target, pos = f[i + 1 + 4 * p], f[i + 2 + 4 * p], f[i + 3 + 4 * p]
            if sym in ("~", "~i") and pos == "n":
                hyponyms.setdefault(offset, []).append(target)
    return by_offset, hyponyms, offsets_of


def main():
    nouns = read_data("noun")
    others = {}
    for pos in ("verb", "adj", "adv"):
        for lemma, senses in read_data(pos).items():
            others.setdefault(lemma, []).extend(senses)
    counts = read_counts()
    conc = concepts(nouns, others, counts)
    by_offset, hyponyms, offsets_of = noun_graph()
    roots = [o for o in offsets_of.get("chromatic_color", []) + offsets_of.get("achromatic_color", [])]
    colours = colour_words(by_offset, hyponyms, roots)
    extra = set()
    if os.path.exists(colour_json):
        for entry in json.load(open(colour_json)):
            name = entry["name"].lower()
            if WORD.match(name) and name in colours:
                extra.add(name)
    # Colour names whose usual sense is something else count for less in
    # labels.c (weight 0.3); a few that are no colour in running text go.
    colours -= {"complementary", "sanguine", "bleach", "frostiness", "inkiness", "hoariness", "viridity"}
    weak = {"amber", "apricot", "bone", "buff", "canary", "caramel", "cardinal", "carnation", "chalk", "cherry",
            "chestnut", "chocolate", "coffee", "copper", "coral", "drab", "emerald", "gold", "ivory", "jade",
            "lemon", "maize", "mocha", "navy", "olive", "orange", "peach", "pearl", "rose", "ruby", "sable",
            "salmon", "sapphire", "silver", "straw", "tan", "topaz", "wheat", "wine", "dun", "ebony", "pastel"}
    header = "# generated by make_lexicon.py from WordNet 3.0 (%s); do not edit\n"
    with open(os.path.join(here, "concepts.txt"), "w") as f:
        f.write(header % "noun.animal/artifact/body/food/object/plant")
        f.write("\n".join(conc) + "\n")
    with open(os.path.join(here, "colours.txt"), "w") as f:
        f.write(header % "hyponyms of chromatic_color and achromatic_color; %d also in color-name-list" % len(extra))
        f.write("\n".join(w + ("\t0.3" if w in weak else "") for w in sorted(colours | extra)) + "\n")
    print("concepts: %d words, colours: %d words (%d single-word names of color-name-list among them)"
          % (len(conc), len(colours | extra), len(extra)))


main()
