/* labels.c - the segment tagger, label rates, and tagging, importing and
 * exporting the segments of ingested sources (see labels.h).
 *
 * The tagger reads decoded text once. Lines are judged for code (statement
 * ends, braces, preprocessor and definition lines, operators); characters
 * for mathematical notation (LaTeX commands, Unicode operators, Metamath
 * syntax, operators between numbers and variables); words are looked up in
 * the lexicons of datasets/lexicon/ (WordNet's visible-thing nouns, colours,
 * attribute adjectives, spatial words and phrases, science, math and code
 * vocabulary). Each label compares a density (per word or per line) with a
 * threshold; the thresholds were set against tests/fixtures/labels/, whose
 * labels a person wrote (precision and recall in datasets/README.md). */
#include "labels.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer.h"

/* ---- the lexicons, compiled in ------------------------------------------- */

/* .incbin keeps the lexicon files the single source of truth: the binary
 * carries them, no install step or search path. Each gets a NUL after it.
 * (mk/shards.mk makes labels.o depend on them.) */
#define EMBED(sym, file)                                                                   \
    __asm__(".section .rodata\n.global " #sym "\n.type " #sym ", @object\n.balign 16\n" #sym \
            ":\n.incbin \"" file "\"\n.byte 0\n.previous\n");                              \
    extern const char sym[]

EMBED(presight_lex_concepts, "datasets/lexicon/concepts.txt");
EMBED(presight_lex_colours, "datasets/lexicon/colours.txt");
EMBED(presight_lex_attributes, "datasets/lexicon/attributes.txt");
EMBED(presight_lex_relations, "datasets/lexicon/relations.txt");
EMBED(presight_lex_science, "datasets/lexicon/science.txt");
EMBED(presight_lex_math, "datasets/lexicon/math.txt");
EMBED(presight_lex_code, "datasets/lexicon/code.txt");

enum { LEX_CONCEPT, LEX_COLOUR, LEX_ATTRIBUTE, LEX_RELATION, LEX_SCIENCE, LEX_MATH, LEX_CODE, LEX_N };

static const struct {
    const char *file;
    const char *embedded;
} LEXICONS[LEX_N] = {
    {"concepts.txt", presight_lex_concepts}, {"colours.txt", presight_lex_colours},
    {"attributes.txt", presight_lex_attributes}, {"relations.txt", presight_lex_relations},
    {"science.txt", presight_lex_science}, {"math.txt", presight_lex_math}, {"code.txt", presight_lex_code},
};

static const char *const LABEL_NAMES[LABEL_COUNT] = {"code", "math", "science", "concept", "attribute", "relationship"};

const char *label_name(int label) { return label >= 0 && label < LABEL_COUNT ? LABEL_NAMES[label] : "?"; }

int label_parse(const char *name) {
    static const struct {
        const char *alias;
        int label;
    } aliases[] = {{"code reasoning", LABEL_CODE},      {"math reasoning", LABEL_MATH},
                   {"mathematics", LABEL_MATH},         {"science reasoning", LABEL_SCIENCE},
                   {"sci", LABEL_SCIENCE},              {"visual concept", LABEL_CONCEPT},
                   {"visual attribute", LABEL_ATTRIBUTE}, {"attr", LABEL_ATTRIBUTE},
                   {"visual relationship", LABEL_RELATIONSHIP}, {"visual relation", LABEL_RELATIONSHIP},
                   {"rel", LABEL_RELATIONSHIP}};
    for (int i = 0; i < LABEL_COUNT; i++)
        if (!strcasecmp(name, LABEL_NAMES[i])) return i;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcasecmp(name, aliases[i].alias)) return aliases[i].label;
    return -1;
}

/* ---- lexicon table ------------------------------------------------------- */

#define MAX_WORD 32
#define MAX_PHRASE_WORDS 4

typedef struct lex_entry {
    uint64_t hash; /* 0: empty slot */
    uint32_t key_at, key_len;
    float w[LEX_N];
    uint8_t ends_phrase; /* the last word of a multi-word term */
} lex_entry;

struct label_classifier {
    lex_entry *slots;
    size_t mask, count;
    char *keys;
    size_t keys_len, keys_cap;
};

static uint64_t hash_key(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

static const lex_entry *lex_find(const label_classifier *c, const char *s, size_t n) {
    uint64_t h = hash_key(s, n);
    for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
        const lex_entry *e = &c->slots[i];
        if (!e->hash) return NULL;
        if (e->hash == h && e->key_len == n && !memcmp(c->keys + e->key_at, s, n)) return e;
    }
}

static int lex_grow(label_classifier *c) {
    size_t cap = c->slots ? 2 * (c->mask + 1) : 1u << 15;
    lex_entry *old = c->slots, *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    size_t old_cap = old ? c->mask + 1 : 0;
    c->slots = slots;
    c->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].hash) continue;
        size_t j = old[i].hash & c->mask;
        while (slots[j].hash) j = (j + 1) & c->mask;
        slots[j] = old[i];
    }
    free(old);
    return 0;
}

/* The entry for s, created (all weights 0) when new. */
static lex_entry *lex_get(label_classifier *c, const char *s, size_t n) {
    if ((c->count + 1) * 2 > c->mask + 1 && lex_grow(c)) return NULL;
    uint64_t h = hash_key(s, n);
    size_t i = h & c->mask;
    for (;; i = (i + 1) & c->mask) {
        lex_entry *e = &c->slots[i];
        if (!e->hash) break;
        if (e->hash == h && e->key_len == n && !memcmp(c->keys + e->key_at, s, n)) return e;
    }
    if (c->keys_len + n > c->keys_cap) {
        size_t cap = c->keys_cap ? 2 * c->keys_cap : 1u << 18;
        while (cap < c->keys_len + n) cap *= 2;
        char *grown = realloc(c->keys, cap);
        if (!grown) return NULL;
        c->keys = grown;
        c->keys_cap = cap;
    }
    memcpy(c->keys + c->keys_len, s, n);
    lex_entry *e = &c->slots[i];
    *e = (lex_entry){h, (uint32_t)c->keys_len, (uint32_t)n, {0}, 0};
    c->keys_len += n;
    c->count++;
    return e;
}

/* One lexicon: "term" or "term<TAB>weight" per line, '#' comments. A term of
 * several words is stored whole, and its last word is marked so that the
 * tagger only tries phrases ending there. */
static int lex_load_text(label_classifier *c, int category, const char *text, const char *name, ps_error *err) {
    int line_no = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        line_no++;
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)(len < 255 ? len : 255), p);
        p += len + (end ? 1 : 0);
        if (!line[0] || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        float weight = 1;
        if (tab) {
            *tab = 0;
            char *stop;
            weight = strtof(tab + 1, &stop);
            if (stop == tab + 1) return ps_fail(err, "lexicon %s:%d: bad weight '%s'", name, line_no, tab + 1);
        }
        for (char *q = line; *q; q++) *q = (char)tolower((unsigned char)*q);
        lex_entry *e = lex_get(c, line, strlen(line));
        if (!e) return ps_fail(err, "out of memory loading the lexicons");
        e->w[category] = weight;
        char *last = strrchr(line, ' ');
        if (last) {
            lex_entry *tail = lex_get(c, last + 1, strlen(last + 1));
            if (!tail) return ps_fail(err, "out of memory loading the lexicons");
            tail->ends_phrase = 1;
        }
    }
    return 0;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

int label_classifier_new(label_classifier **out, const char *lexicon_dir, ps_error *err) {
    *out = NULL;
    label_classifier *c = calloc(1, sizeof *c);
    if (!c || lex_grow(c)) {
        free(c);
        return ps_fail(err, "out of memory");
    }
    for (int k = 0; k < LEX_N; k++) {
        char path[4200];
        char *owned = NULL;
        const char *text = LEXICONS[k].embedded;
        if (lexicon_dir) {
            snprintf(path, sizeof path, "%s/%s", lexicon_dir, LEXICONS[k].file);
            if (!(owned = read_text_file(path))) {
                label_classifier_free(c);
                return ps_fail(err, "%s: cannot read the lexicon", path);
            }
            text = owned;
        }
        int rc = lex_load_text(c, k, text, LEXICONS[k].file, err);
        free(owned);
        if (rc) {
            label_classifier_free(c);
            return -1;
        }
    }
    *out = c;
    return 0;
}

void label_classifier_free(label_classifier *c) {
    if (!c) return;
    free(c->slots);
    free(c->keys);
    free(c);
}

/* ---- evidence from lines: code ------------------------------------------- */

static int starts_with(const char *s, size_t n, const char *prefix) {
    size_t m = strlen(prefix);
    return n >= m && !memcmp(s, prefix, m);
}

static int contains(const char *s, size_t n, const char *needle) { return memmem(s, n, needle, strlen(needle)) != NULL; }

/* How much a line (leading and trailing blanks removed) looks like program
 * text: 1 for statement and block ends, preprocessor, definitions,
 * assignments and operators that prose does not use; 0.5 for comment lines;
 * 0 otherwise. */
static double code_line(const char *s, size_t n) {
    static const char *const starts[] = {"#include", "#define", "#if", "#endif", "#else", "#pragma", "#undef",
                                         "import ", "from ", "def ", "class ", "return", "@", ">>> ", "$ ",
                                         "} else", "case ", "static ", "struct ", "typedef ", "else:", "try:",
                                         "except", "elif ", "for (", "while (", "if (", "switch (", "<!--", "</"};
    static const char *const inside[] = {"->", "==", "!=", "&&", "||", "+=", "-=", "::", "()", "){", "];", "++",
                                         "<<", ">>", ":=", "/*", "*/", "=>", "[]", "\\begin{", "\\end{", "();"};
    if (n == 0) return 0;
    char last = s[n - 1];
    if (last == '{' || s[0] == '}' || (last == '}' && (n == 1 || s[n - 2] == ' ' || s[n - 2] == ';')) ||
        (last == ')' && n >= 2 && s[n - 2] == ';'))
        return 1;
    if (last == '}') return 0.5; /* \label{x}, {word}: markup, or the end of a block */
    if (last == ';') {           /* a statement, or a clause of prose ("... misrepresented;") */
        int spaces = 0, call = 0;
        for (size_t i = 0; i < n; i++) {
            spaces += s[i] == ' ';
            call |= s[i] == '(' && i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '_');
        }
        return spaces <= 3 || call || memchr(s, '=', n) || memchr(s, '[', n) ? 1 : 0.25;
    }
    if (last == '$' && n >= 2 && (s[n - 2] == ')' || s[n - 2] == ']')) return 1; /* Maxima statements */
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
        if (starts_with(s, n, starts[i])) return 1;
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++)
        if (contains(s, n, inside[i])) return 1;
    if (last == ':' && (starts_with(s, n, "if ") || starts_with(s, n, "for ") || starts_with(s, n, "while ") ||
                        starts_with(s, n, "with ")))
        return 1;
    if (starts_with(s, n, "//") || starts_with(s, n, "* ") || starts_with(s, n, "# ")) return 0.5;
    /* An assignment: one identifier (self.x, a[i]) before " = ", as in
     * code; a chemical reaction or an equation has more on its left. */
    const char *eq = memmem(s, n, " = ", 3);
    if (eq && eq > s) {
        for (const char *p = s; p < eq; p++)
            if (!isalnum((unsigned char)*p) && !strchr("_.[]'\"", *p)) return 0;
        return 1;
    }
    return 0;
}

/* ---- evidence from characters: mathematical notation ---------------------- */

static int in_list(const char *w, size_t n, const char *const *list) {
    for (; *list; list++)
        if (strlen(*list) == n && !memcmp(*list, w, n)) return 1;
    return 0;
}

static const char *const LATEX_MATH[] = {
    "frac", "sum", "int", "sqrt", "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "theta", "lambda",
    "mu", "pi", "sigma", "phi", "varphi", "omega", "rho", "tau", "xi", "eta", "zeta", "kappa", "chi", "psi", "cdot",
    "times", "le", "leq", "ge", "geq", "neq", "ne", "infty", "partial", "mathbb", "mathrm", "mathcal", "mathbf",
    "lim", "prod", "binom", "in", "notin", "subset", "subseteq", "cup", "cap", "forall", "exists", "rightarrow",
    "leftarrow", "Rightarrow", "mapsto", "ldots", "cdots", "approx", "equiv", "pm", "nabla", "hat", "bar", "vec",
    "overline", "operatorname", "log", "exp", "sin", "cos", "tan", "det", "max", "min", "sup", "inf", NULL};

/* Unicode code point at s (n bytes left) and its length; 0 for ASCII/invalid. */
static unsigned utf8_at(const unsigned char *s, size_t n, int *len) {
    *len = 1;
    if (s[0] < 0xc0) return 0;
    if (s[0] < 0xe0 && n >= 2) return *len = 2, (unsigned)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    if (s[0] < 0xf0 && n >= 3) return *len = 3, (unsigned)(s[0] & 0x0f) << 12 | (unsigned)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    return 0;
}

static double unicode_math(unsigned cp) {
    if ((cp >= 0x2200 && cp <= 0x22ff) || (cp >= 0x2a00 && cp <= 0x2aff)) return 1; /* operators */
    if (cp == 0xb1 || cp == 0xd7 || cp == 0xf7 || cp == 0xb2 || cp == 0xb3 || (cp >= 0x2070 && cp <= 0x209f)) return 1;
    if (cp >= 0x2190 && cp <= 0x21ff) return 0.5; /* arrows */
    if (cp >= 0x391 && cp <= 0x3c9) return 0.5;   /* Greek letters */
    return 0;
}

static int is_alnum(int ch) { return isalnum(ch) != 0; }

/* Operators between numbers or one-letter variables: "2 + 3", "x^2", "x = 1",
 * "3*x", "f(x)". s[i] is the operator or '('. */
static double ascii_math(const char *s, size_t n, size_t i) {
    char c = s[i];
    size_t l = i, r = i + 1;
    while (l > 0 && s[l - 1] == ' ') l--;
    while (r < n && s[r] == ' ') r++;
    if (l == 0 || r >= n) return 0;
    char a = s[l - 1], b = s[r];
    int a_short = l < 2 || !is_alnum((unsigned char)s[l - 2]); /* one character before the operator */
    int b_short = r + 1 >= n || !is_alnum((unsigned char)s[r + 1]);
    if (c == '^' && is_alnum((unsigned char)a) && (is_alnum((unsigned char)b) || b == '(' || b == '{')) return 1;
    if (c == '(' && l == i && isalpha((unsigned char)a) && a_short && r + 1 < n && s[r + 1] == ')' &&
        isalnum((unsigned char)b))
        return 1;
    if (c != '+' && c != '*' && c != '/' && c != '=' && c != '<' && c != '>' && c != '-') return 0;
    if (i + 1 < n && (s[i + 1] == '=' || s[i + 1] == '>' || s[i + 1] == c)) return 0; /* ==, ->, ++ ... */
    if (i > 0 && (s[i - 1] == '=' || s[i - 1] == '!' || s[i - 1] == '<' || s[i - 1] == '-')) return 0;
    int a_ok = (isdigit((unsigned char)a) || (isalpha((unsigned char)a) && a_short) || a == ')');
    int b_ok = (isdigit((unsigned char)b) || (isalpha((unsigned char)b) && b_short) || b == '(');
    if (!a_ok || !b_ok) return 0;
    if (c == '-' && l == i && r == i + 1) return 0; /* 2002-09-14, x-ray: a hyphen */
    if (c == '/' && l == i && r == i + 1 && isdigit((unsigned char)a) && isdigit((unsigned char)b)) return 0.5;
    return 1;
}

/* Metamath's syntax: $p $e $a $f $d $c $v statements, |- and its connectives. */
static double metamath_at(const char *s, size_t n, size_t i) {
    if (s[i] == '$' && i + 2 < n && strchr("peafdcv", s[i + 1]) && s[i + 2] == ' ' && (i == 0 || s[i - 1] == ' '))
        return 1;
    if (s[i] == '|' && i + 1 < n && s[i + 1] == '-' && (i == 0 || s[i - 1] == ' ')) return 1;
    if (i + 3 < n && s[i] == ' ' && (s[i + 1] == 'e' || s[i + 1] == 'A' || s[i + 1] == 'E') && s[i + 2] == '.' &&
        s[i + 3] == ' ')
        return 0.5;
    if (i + 2 < n && ((s[i] == '/' && s[i + 1] == '\\') || (s[i] == '\\' && s[i + 1] == '/')) && s[i + 2] == ' ')
        return 0.5;
    if (i + 2 < n && s[i] == 'C' && s[i + 1] == '_' && s[i + 2] == ' ') return 0.5;
    return 0;
}

static double math_notation(const char *s, size_t n) {
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\\' && i + 1 < n && isalpha((unsigned char)s[i + 1])) {
            size_t j = i + 1;
            while (j < n && isalpha((unsigned char)s[j])) j++;
            total += in_list(s + i + 1, j - i - 1, LATEX_MATH) ? 1 : 0;
            i = j - 1;
        } else if (ch >= 0xc0) {
            int len;
            total += unicode_math(utf8_at((const unsigned char *)s + i, n - i, &len));
            i += (size_t)len - 1;
        } else if (strchr("^(+*/=<>-", ch)) {
            total += ascii_math(s, n, i);
        } else if (ch == '$' || ch == '|' || ch == ' ' || ch == '/' || ch == '\\' || ch == 'C') {
            total += metamath_at(s, n, i);
        }
    }
    return total;
}

/* ---- evidence from words ------------------------------------------------- */
/* (prep_window: words left in which a concept noun after a spatial
 * preposition counts as a relation, "on the old wooden table") */

static const char *const SPATIAL_PREPOSITIONS[] = {"on", "in", "under", "over", "near", "by", "at", "into", "onto",
                                                   "across", "along", "around", "through", "against", "between",
                                                   "among", "upon", "within", "beneath", "beside", "behind",
                                                   "above", "below", "inside", "outside", "off", "from", "to",
                                                   "toward", "towards", "before", NULL};
/* Prepositions that place one thing against another even before a pronoun
 * ("behind him", "against it"). */
static const char *const STRONG_PREPOSITIONS[] = {"behind", "beside", "beneath", "under", "above", "against",
                                                  "around", "toward", "towards", "underneath", "atop", NULL};
static const char *const PRONOUNS[] = {"him", "her", "it", "them", "me", "us", "you", NULL};

typedef struct word_scan {
    double code_tokens;       /* snake_case, camelCase, name( : identifiers, not words */
    double w[LEX_N];          /* summed lexicon weights (concepts: names excluded) */
    double concept_all;       /* concepts counting capitalised words too */
    double relation_pattern;  /* a spatial preposition, then a concept noun within three words */
    int words, capitalised;
    char ring[MAX_PHRASE_WORDS][MAX_WORD]; /* the last words, for phrases */
    int ring_len[MAX_PHRASE_WORDS], n_ring;
    int prep_window, strong_prep;
} word_scan;

/* The lexicon entry of a lower-case word, trying an English plural's
 * singular when the word itself is not there. */
static const lex_entry *find_word(const label_classifier *c, const char *w, size_t n) {
    const lex_entry *e = lex_find(c, w, n);
    if (e || n < 5 || w[n - 1] != 's' || w[n - 2] == 's' || w[n - 2] == 'u' || w[n - 2] == 'i') return e;
    char base[MAX_WORD];
    if (n >= 3 && w[n - 3] == 'i' && w[n - 2] == 'e') { /* berries -> berry */
        memcpy(base, w, n - 3);
        base[n - 3] = 'y';
        if ((e = lex_find(c, base, n - 2))) return e;
    }
    if (w[n - 2] == 'e' && (e = lex_find(c, w, n - 2))) return e; /* boxes -> box */
    return lex_find(c, w, n - 1);
}

/* Comparatives and superlatives of appearance words: narrower, largest, bigger. */
static const lex_entry *find_comparative(const label_classifier *c, const char *w, size_t n) {
    size_t cut = n > 5 && !memcmp(w + n - 3, "est", 3) ? 3 : n > 4 && !memcmp(w + n - 2, "er", 2) ? 2 : 0;
    if (!cut) return NULL;
    char base[MAX_WORD];
    size_t b = n - cut;
    memcpy(base, w, b);
    const lex_entry *e = lex_find(c, base, b);
    if (!e && b >= 3 && base[b - 1] == base[b - 2]) e = lex_find(c, base, b - 1); /* bigger */
    if (!e) {
        base[b] = 'e'; /* larger */
        e = lex_find(c, base, b + 1);
    }
    return e && (e->w[LEX_ATTRIBUTE] > 0 || e->w[LEX_COLOUR] > 0) ? e : NULL;
}

static void add_phrases(const label_classifier *c, word_scan *ws) {
    char buf[MAX_PHRASE_WORDS * (MAX_WORD + 1)];
    for (int k = ws->n_ring < MAX_PHRASE_WORDS ? ws->n_ring : MAX_PHRASE_WORDS; k >= 2; k--) {
        size_t len = 0;
        for (int j = k - 1; j >= 0; j--) {
            int slot = (ws->words - 1 - j) % MAX_PHRASE_WORDS;
            memcpy(buf + len, ws->ring[slot], (size_t)ws->ring_len[slot]);
            len += (size_t)ws->ring_len[slot];
            if (j) buf[len++] = ' ';
        }
        const lex_entry *e = lex_find(c, buf, len);
        if (e) {
            for (int k2 = 0; k2 < LEX_N; k2++) ws->w[k2] += e->w[k2];
            return;
        }
    }
}

static void scan_word(const label_classifier *c, word_scan *ws, const char *w, size_t n, int capitalised,
                      int sentence_start) {
    char lower[MAX_WORD];
    int slot = ws->words % MAX_PHRASE_WORDS;
    ws->words++;
    ws->capitalised += capitalised;
    if (n >= MAX_WORD) {
        ws->ring_len[slot] = 0;
        return;
    }
    for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)w[i]);
    memcpy(ws->ring[slot], lower, n);
    ws->ring_len[slot] = (int)n;
    if (ws->n_ring < MAX_PHRASE_WORDS) ws->n_ring++;
    const lex_entry *e = find_word(c, lower, n);
    if (!e) e = find_comparative(c, lower, n);
    int name = capitalised && !sentence_start; /* Bush, Apple, Java: a name, not a thing */
    if (e) {
        for (int k = 0; k < LEX_N; k++)
            if (k != LEX_CONCEPT) ws->w[k] += e->w[k];
        ws->concept_all += e->w[LEX_CONCEPT];
        if (!name) ws->w[LEX_CONCEPT] += e->w[LEX_CONCEPT];
        if (e->ends_phrase) add_phrases(c, ws);
    }
    if (ws->prep_window > 0 && ws->strong_prep && in_list(lower, n, PRONOUNS)) ws->relation_pattern += 1;
    if (in_list(lower, n, SPATIAL_PREPOSITIONS)) {
        ws->prep_window = 4;
        ws->strong_prep = in_list(lower, n, STRONG_PREPOSITIONS);
    } else if (ws->prep_window > 0) {
        if (e && e->w[LEX_CONCEPT] > 0 && !name) {
            ws->relation_pattern += 1;
            ws->prep_window = 0;
        } else {
            ws->prep_window--;
        }
    }
}

/* Whether token [s, s + n) of letters, digits and '_' is a program
 * identifier rather than a word: it holds '_' or a digit, or turns from
 * lower to upper case inside (getValue). */
static int identifier(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_' || isdigit((unsigned char)s[i])) return 1;
        if (i > 0 && i + 1 < n && islower((unsigned char)s[i - 1]) && isupper((unsigned char)s[i]) &&
            islower((unsigned char)s[i + 1]))
            return 1;
    }
    return 0;
}

/* How much an identifier says "program text": snake_case and camelCase
 * fully, letters with digits (i386, utf8, Bni1p) a little, numbers and hex colours
 * (#eae8a0) not at all. */
static double identifier_weight(const char *s, size_t n) {
    int letters = 0, hex = 1, underscore = 0;
    for (size_t i = 0; i < n; i++) {
        letters += isalpha((unsigned char)s[i]) != 0;
        hex &= isxdigit((unsigned char)s[i]) != 0;
        underscore |= s[i] == '_';
    }
    if (letters < 2) return 0;
    if (underscore) return 1;
    if (hex || isdigit((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (isdigit((unsigned char)s[i])) return 0.5;
    return 1; /* camelCase */
}

static void scan_words(const label_classifier *c, const char *s, size_t n, word_scan *ws) {
    int sentence_start = 1;
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '_') {
            if (strchr(".!?:;\"'([{\n*#>-", ch)) sentence_start = 1;
            else if (ch != ' ' && ch != '\t' && ch != ',') sentence_start = 0;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_')) j++;
        if (identifier(s + i, j - i)) {
            ws->code_tokens += identifier_weight(s + i, j - i);
            ws->words++;
        } else {
            /* Capitalised (Java) or all capitals (ARM, IST): a name or an acronym. */
            int capitalised = isupper(ch) && (j - i == 1 || islower((unsigned char)s[i + 1]) || isupper((unsigned char)s[i + 1]));
            scan_word(c, ws, s + i, j - i, capitalised, sentence_start);
            if (j < n && s[j] == '(' && j - i >= 3) ws->code_tokens += 0.5; /* a call: name( */
        }
        sentence_start = 0;
        i = j;
    }
}

/* ---- the decision --------------------------------------------------------- */

/* Thresholds per label (see the top of the file for how they were set). */
static const double THRESHOLD[LABEL_COUNT] = {
    0.15,  /* code: weighted share of code-like lines, plus identifiers and keywords per word */
    0.03,  /* math: (math words + notation) per word */
    0.015, /* science: (science words + half the math evidence) per word */
    0.03,  /* concept: visible-thing nouns per word */
    0.012, /* attribute: colour and appearance words per word */
    0.011, /* relationship: spatial words, phrases and preposition-noun pairs per word */
};
/* A relationship is between visible things: it also needs this concept density. */
#define RELATION_NEEDS_CONCEPT 0.025
/* A label also needs this much evidence in absolute terms, so that one
 * stray word in a short segment is not enough. */
static const double MIN_HITS[LABEL_COUNT] = {2, 3, 2, 3, 2, 2};

unsigned label_classify(const label_classifier *c, const char *text, size_t len, label_scores *scores) {
    double code_lines = 0, math_sym = 0;
    int nonblank = 0, lines = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len, a = i, b = end;
        while (a < b && (text[a] == ' ' || text[a] == '\t')) a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r')) b--;
        lines++;
        if (b > a) {
            nonblank++;
            code_lines += code_line(text + a, b - a);
        }
        i = end + 1;
    }
    math_sym = math_notation(text, len);
    word_scan ws;
    memset(&ws, 0, sizeof ws);
    scan_words(c, text, len, &ws);
    double words = ws.words > 0 ? ws.words : 1;
    /* Lists of names (title case throughout) are not prose: count them all. */
    double concept = ws.capitalised > ws.words / 2 ? ws.concept_all : ws.w[LEX_CONCEPT];
    double math = ws.w[LEX_MATH] + math_sym;
    double hits[LABEL_COUNT] = {
        code_lines + ws.w[LEX_CODE] / 4 + ws.code_tokens / 2,
        math,
        ws.w[LEX_SCIENCE] + 0.5 * math,
        concept,
        ws.w[LEX_COLOUR] + ws.w[LEX_ATTRIBUTE],
        ws.w[LEX_RELATION] + 0.5 * ws.relation_pattern,
    };
    double value[LABEL_COUNT] = {
        code_lines / (nonblank > 0 ? nonblank : 1) + fmin((ws.w[LEX_CODE] + 2 * ws.code_tokens) / words, 0.3),
        math / words,
        hits[LABEL_SCIENCE] / words,
        concept / words,
        hits[LABEL_ATTRIBUTE] / words,
        hits[LABEL_RELATIONSHIP] / words,
    };
    unsigned mask = 0;
    for (int k = 0; k < LABEL_COUNT; k++) {
        if (value[k] >= THRESHOLD[k] && hits[k] >= MIN_HITS[k] &&
            (k != LABEL_RELATIONSHIP || value[LABEL_CONCEPT] >= RELATION_NEEDS_CONCEPT))
            mask |= 1u << k;
        if (scores) scores->value[k] = value[k], scores->threshold[k] = THRESHOLD[k];
    }
    if (scores) scores->words = ws.words, scores->lines = lines;
    return mask;
}

/* ---- rates ---------------------------------------------------------------- */

void label_rates_add(label_rates *r, unsigned mask) {
    r->segments++;
    for (int k = 0; k < LABEL_COUNT; k++) r->count[k] += (mask >> k) & 1;
    r->reasoning += (mask & LABEL_REASONING_MASK) != 0;
    r->visual += (mask & LABEL_VISUAL_MASK) != 0;
}

double label_rate(const label_rates *r, int label) {
    return r->segments ? 100.0 * (double)r->count[label] / (double)r->segments : 0;
}
double label_rate_reasoning(const label_rates *r) {
    return r->segments ? 100.0 * (double)r->reasoning / (double)r->segments : 0;
}
double label_rate_visual(const label_rates *r) {
    return r->segments ? 100.0 * (double)r->visual / (double)r->segments : 0;
}

static const char TSV_HEADER[] =
    "source\tsegments\tcode\tmath\tscience\treasoning\tconcept\tattribute\trelationship\tvisual";

void label_rates_print(FILE *out, const label_rates *r, int n) {
    fprintf(out, "%-16s %9s | %6s %6s %6s %9s | %7s %6s %6s %7s\n", "source", "segments", "code", "math", "sci",
            "reasoning", "concept", "attr", "rel", "visual");
    for (int i = 0; i < n; i++)
        fprintf(out, "%-16s %9llu | %6.1f %6.1f %6.1f %9.1f | %7.1f %6.1f %6.1f %7.1f\n", r[i].source,
                (unsigned long long)r[i].segments, label_rate(&r[i], LABEL_CODE), label_rate(&r[i], LABEL_MATH),
                label_rate(&r[i], LABEL_SCIENCE), label_rate_reasoning(&r[i]), label_rate(&r[i], LABEL_CONCEPT),
                label_rate(&r[i], LABEL_ATTRIBUTE), label_rate(&r[i], LABEL_RELATIONSHIP), label_rate_visual(&r[i]));
}

int label_rates_write(const char *path, const label_rates *r, int n, ps_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    fprintf(f, "%s\n", TSV_HEADER);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\t%llu\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\n", r[i].source,
                (unsigned long long)r[i].segments, label_rate(&r[i], LABEL_CODE), label_rate(&r[i], LABEL_MATH),
                label_rate(&r[i], LABEL_SCIENCE), label_rate_reasoning(&r[i]), label_rate(&r[i], LABEL_CONCEPT),
                label_rate(&r[i], LABEL_ATTRIBUTE), label_rate(&r[i], LABEL_RELATIONSHIP), label_rate_visual(&r[i]));
    int bad = ferror(f);
    errno = 0;
    if (fflush(f) != 0 || bad || fsync(fileno(f)) != 0) bad = errno ? errno : EIO;
    if (fclose(f) != 0 && !bad) bad = errno ? errno : EIO;
    if (bad) {
        unlink(tmp);
        return ps_fail(err, "%s: write failed: %s", tmp, strerror(bad));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ps_fail(err, "%s: rename to %s failed: %s", tmp, path, strerror(e));
    }
    return 0;
}

static uint64_t count_of(double percent, uint64_t segments) { return (uint64_t)llround(percent * (double)segments / 100); }

int label_rates_read(const char *path, label_rates **rates, int *n, ps_error *err) {
    *rates = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return ps_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char line[1024];
    int cap = 0, line_no = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        line_no++;
        if (line_no == 1 || line[0] == '#' || line[0] == '\n') continue;
        label_rates r;
        memset(&r, 0, sizeof r);
        unsigned long long segments;
        double p[8];
        char name[SHARD_NAME_MAX];
        if (sscanf(line, "%255s %llu %lf %lf %lf %lf %lf %lf %lf %lf", name, &segments, &p[0], &p[1], &p[2], &p[3],
                   &p[4], &p[5], &p[6], &p[7]) != 10) {
            rc = ps_fail(err, "%s:%d: expected %s", path, line_no, TSV_HEADER);
            break;
        }
        snprintf(r.source, sizeof r.source, "%s", name);
        r.segments = segments;
        r.count[LABEL_CODE] = count_of(p[0], segments);
        r.count[LABEL_MATH] = count_of(p[1], segments);
        r.count[LABEL_SCIENCE] = count_of(p[2], segments);
        r.reasoning = count_of(p[3], segments);
        r.count[LABEL_CONCEPT] = count_of(p[4], segments);
        r.count[LABEL_ATTRIBUTE] = count_of(p[5], segments);
        r.count[LABEL_RELATIONSHIP] = count_of(p[6], segments);
        r.visual = count_of(p[7], segments);
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            label_rates *grown = realloc(*rates, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = ps_fail(err, "out of memory");
                break;
            }
            *rates = grown;
        }
        (*rates)[(*n)++] = r;
    }
    fclose(f);
    if (rc) {
        free(*rates);
        *rates = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- tagging, exporting and importing sources ----------------------------- */

#define LABEL_TAGGED 0x80u /* bit 7: the segment was tagged (an import may leave some out) */
#define BLOCK_SEGMENTS 256

typedef struct source_job {
    shard_source *src;
    uint8_t **masks;   /* [n_shards][n_segments] */
    uint64_t *n_seg;   /* [n_shards] */
    label_rates rates; /* over tagged segments */
    uint64_t untagged;
} source_job;

static void job_free(source_job *j) {
    for (int i = 0; j->src && j->masks && i < j->src->n_shards; i++) free(j->masks[i]);
    free(j->masks);
    free(j->n_seg);
    shard_source_close(j->src);
    memset(j, 0, sizeof *j);
}

static int job_open(source_job *j, const char *root, const char *name, int segment, ps_error *err) {
    memset(j, 0, sizeof *j);
    char dir[2 * 4096];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    if (shard_source_open(&j->src, dir, err)) return -1;
    int n = j->src->n_shards;
    j->masks = calloc((size_t)(n ? n : 1), sizeof *j->masks);
    j->n_seg = calloc((size_t)(n ? n : 1), sizeof *j->n_seg);
    if (!j->masks || !j->n_seg) return ps_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        j->n_seg[i] = (j->src->shards[i].tokens + (uint64_t)segment - 1) / (uint64_t)segment;
        if (!(j->masks[i] = calloc(j->n_seg[i] ? j->n_seg[i] : 1, 1))) return ps_fail(err, "out of memory");
    }
    snprintf(j->rates.source, sizeof j->rates.source, "%s", j->src->name);
    return 0;
}

static int job_write(source_job *j, int segment, const char *tagger, ps_error *err) {
    char path[2 * 4096];
    snprintf(path, sizeof path, "%s/labels.h5", j->src->dir);
    char names[256] = "";
    for (int k = 0; k < LABEL_COUNT; k++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? "," : "", LABEL_NAMES[k]);
    snprintf(names + strlen(names), sizeof names - strlen(names), ",,tagged");
    for (int i = 0; i < j->src->n_shards; i++)
        for (uint64_t s = 0; s < j->n_seg[i]; s++) {
            if (j->masks[i][s] & LABEL_TAGGED) label_rates_add(&j->rates, j->masks[i][s] & 0x3fu);
            else j->untagged++;
        }
    return shard_labels_write(path, j->src, j->masks, j->n_seg, segment, names, tagger, err);
}

static int load_tokenizer(const shard_source *s, const label_options *o, tokenizer **tok, ps_error *err) {
    const char *path = o->tokenizer_path ? o->tokenizer_path : s->tokenizer_path;
    tokenizer_kind kind;
    if (!path[0]) return ps_fail(err, "%s: the card names no tokenizer file: give --tokenizer", s->dir);
    if (tokenizer_kind_parse(s->meta.tokenizer_kind, &kind, err) || tokenizer_load(tok, path, kind, err))
        return ps_wrap(err, "decoding %s (give --tokenizer if the vocabulary moved): ", s->name);
    if (strcmp(tokenizer_sha256(*tok), s->meta.tokenizer_sha256) != 0) {
        ps_fail(err, "%s: sha256 %.12s... is not the vocabulary source %s was tokenized with (%.12s...)", path,
                tokenizer_sha256(*tok), s->name, s->meta.tokenizer_sha256);
        tokenizer_free(*tok);
        *tok = NULL;
        return -1;
    }
    return 0;
}

/* Decodes ids to text; special ids (the end-of-text between documents)
 * become a blank line, so that the tagger sees plain text. */
static int decode_segment(const tokenizer *tok, const uint32_t *ids, size_t n, tokenizer_bytes *out, ps_error *err) {
    out->n = 0;
    size_t ordinary = tokenizer_n_ordinary(tok);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && ids[j] < ordinary) j++;
        if (j > i && tokenizer_decode(tok, ids + i, j - i, out, err)) return -1;
        if (j < n) {
            if (out->n + 2 > out->cap) {
                size_t cap = out->cap ? 2 * out->cap : 4096;
                unsigned char *grown = realloc(out->bytes, cap);
                if (!grown) return ps_fail(err, "out of memory");
                out->bytes = grown;
                out->cap = cap;
            }
            out->bytes[out->n++] = '\n';
            out->bytes[out->n++] = '\n';
            j++;
        }
        i = j;
    }
    return 0;
}

typedef struct tag_ctx {
    const label_classifier *cls;
    const tokenizer *tok;
    FILE *export_to; /* instead of tagging */
    int segment, threads;
} tag_ctx;

static void export_segment(FILE *out, const char *source, const char *shard, uint64_t seg, const tokenizer_bytes *b) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "source", json_object_new_string(source));
    json_object_object_add(o, "shard", json_object_new_string(shard));
    json_object_object_add(o, "segment", json_object_new_int64((int64_t)seg));
    json_object_object_add(o, "text", json_object_new_string_len((const char *)b->bytes, (int)b->n));
    fprintf(out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

/* Segments [first, first + count) of shard i: decoded in parallel, then
 * tagged (or written out in order for an external tagger). */
static int tag_block(tag_ctx *t, source_job *j, int i, uint64_t first, uint64_t count, uint32_t *ids,
                     tokenizer_bytes *bufs, ps_error *err) {
    const shard_entry *e = &j->src->shards[i];
    uint64_t start = first * (uint64_t)t->segment, end = (first + count) * (uint64_t)t->segment;
    if (end > e->tokens) end = e->tokens;
    if (shard_source_read(j->src, e->first_token + start, end - start, ids, err)) return -1;
    int failed = 0;
    ps_error first_err = {{0}};
#pragma omp parallel for schedule(dynamic, 4) num_threads(t->threads)
    for (uint64_t k = 0; k < count; k++) {
        tokenizer_bytes *b = &bufs[(t->export_to ? k : (uint64_t)omp_get_thread_num())];
        uint64_t a = k * (uint64_t)t->segment, z = a + (uint64_t)t->segment;
        if (z > end - start) z = end - start;
        ps_error e2;
        if (decode_segment(t->tok, ids + a, (size_t)(z - a), b, &e2)) {
#pragma omp critical(label_error)
            if (!failed++) first_err = e2;
            continue;
        }
        if (!t->export_to)
            j->masks[i][first + k] = (uint8_t)(label_classify(t->cls, (const char *)b->bytes, b->n, NULL) | LABEL_TAGGED);
    }
    if (failed) return ps_fail(err, "%s/%s: %s", j->src->name, e->file, first_err.msg);
    for (uint64_t k = 0; t->export_to && k < count; k++) export_segment(t->export_to, j->src->name, e->file, first + k, &bufs[k]);
    return 0;
}

static int tag_source(tag_ctx *t, source_job *j, ps_error *err) {
    int nb = t->export_to ? BLOCK_SEGMENTS : t->threads;
    tokenizer_bytes *bufs = calloc((size_t)nb, sizeof *bufs);
    uint32_t *ids = malloc((size_t)BLOCK_SEGMENTS * (size_t)t->segment * sizeof *ids);
    int rc = bufs && ids ? 0 : ps_fail(err, "out of memory");
    for (int i = 0; rc == 0 && i < j->src->n_shards; i++)
        for (uint64_t s = 0; rc == 0 && s < j->n_seg[i]; s += BLOCK_SEGMENTS) {
            uint64_t count = j->n_seg[i] - s < BLOCK_SEGMENTS ? j->n_seg[i] - s : BLOCK_SEGMENTS;
            rc = tag_block(t, j, i, s, count, ids, bufs, err);
        }
    for (int k = 0; bufs && k < nb; k++) tokenizer_bytes_free(&bufs[k]);
    free(bufs);
    free(ids);
    return rc;
}

/* ---- import --------------------------------------------------------------- */

typedef struct import_state {
    source_job *jobs;
    int n_jobs, cap;
    uint64_t lines, bad, labels;
    int reports;
} import_state;

static void import_report(import_state *st, const char *path, uint64_t line, const char *why, FILE *log) {
    st->bad++;
    if (log && st->reports-- > 0) fprintf(log, "label import: %s:%llu: %s; skipped\n", path, (unsigned long long)line, why);
}

static source_job *import_job(import_state *st, const label_options *o, const char *source, ps_error *err) {
    /* A source is a folder of the shards root: "../x" would write labels.h5 outside it. */
    if (!source[0] || strchr(source, '/') || !strcmp(source, ".") || !strcmp(source, "..")) {
        ps_fail(err, "source '%.64s' is not a source name (a folder of %.64s)", source, o->shards_dir);
        return NULL;
    }
    for (int i = 0; i < st->n_jobs; i++)
        if (!strcmp(st->jobs[i].src->name, source)) return &st->jobs[i];
    if (st->n_jobs == st->cap) {
        int cap = st->cap ? 2 * st->cap : 16;
        source_job *grown = realloc(st->jobs, (size_t)cap * sizeof *grown);
        if (!grown) {
            ps_fail(err, "out of memory");
            return NULL;
        }
        st->jobs = grown;
        st->cap = cap;
    }
    source_job *j = &st->jobs[st->n_jobs];
    if (job_open(j, o->shards_dir, source, o->segment, err)) {
        job_free(j);
        return NULL;
    }
    st->n_jobs++;
    return j;
}

static int shard_index(const shard_source *s, json_object *v) {
    if (json_object_is_type(v, json_type_int)) {
        int64_t i = json_object_get_int64(v);
        return i >= 0 && i < s->n_shards ? (int)i : -1;
    }
    const char *name = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
    for (int i = 0; i < s->n_shards; i++)
        if (!strcmp(s->shards[i].file, name)) return i;
    return -1;
}

/* One line {"source", "shard", "segment", "labels": [...]}. */
static void import_line(import_state *st, const label_options *o, const char *line, uint64_t no) {
    json_object *obj = json_tokener_parse(line), *src, *sh, *seg, *labels;
    ps_error err = {{0}};
    if (!obj || !json_object_object_get_ex(obj, "source", &src) || !json_object_object_get_ex(obj, "shard", &sh) ||
        !json_object_object_get_ex(obj, "segment", &seg) || !json_object_object_get_ex(obj, "labels", &labels) ||
        !json_object_is_type(labels, json_type_array) || !json_object_is_type(src, json_type_string)) {
        import_report(st, o->import_path, no, "not {\"source\", \"shard\", \"segment\", \"labels\": [...]}", o->log);
        if (obj) json_object_put(obj);
        return;
    }
    source_job *j = import_job(st, o, json_object_get_string(src), &err);
    int shard = j ? shard_index(j->src, sh) : -1;
    int64_t s = json_object_get_int64(seg);
    unsigned mask = LABEL_TAGGED;
    const char *why = !j ? err.msg : shard < 0 ? "no such shard" : s < 0 || (uint64_t)s >= j->n_seg[shard] ? "no such segment" : NULL;
    for (size_t k = 0; !why && k < json_object_array_length(labels); k++) {
        json_object *l = json_object_array_get_idx(labels, k);
        int label = json_object_is_type(l, json_type_string) ? label_parse(json_object_get_string(l)) : -1;
        if (label < 0) why = "unknown label (code, math, science, concept, attribute, relationship)";
        else mask |= 1u << label;
    }
    if (why) import_report(st, o->import_path, no, why, o->log);
    else j->masks[shard][s] = (uint8_t)mask, st->labels++;
    json_object_put(obj);
}

static int import_all(const label_options *o, import_state *st, ps_error *err) {
    FILE *f = fopen(o->import_path, "r");
    if (!f) return ps_fail(err, "%s: cannot open: %s", o->import_path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    st->reports = 50;
    while ((got = getline(&line, &cap, f)) >= 0) {
        st->lines++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        import_line(st, o, line, st->lines);
    }
    free(line);
    fclose(f);
    return 0;
}

/* ---- the run ---------------------------------------------------------------- */

static int cmp_rates(const void *a, const void *b) {
    return strcmp(((const label_rates *)a)->source, ((const label_rates *)b)->source);
}

/* DIR/label_rates.tsv: the rows of this call replace those of the same sources. */
static int merge_rates(const char *root, const label_rates *now, int n, ps_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/label_rates.tsv", root);
    label_rates *all = NULL;
    int m = 0;
    if (access(path, R_OK) == 0 && label_rates_read(path, &all, &m, err)) return -1;
    label_rates *merged = realloc(all, (size_t)(m + n + 1) * sizeof *merged);
    if (!merged) {
        free(all);
        return ps_fail(err, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < m && strcmp(merged[k].source, now[i].source)) k++;
        merged[k] = now[i];
        if (k == m) m++;
    }
    qsort(merged, (size_t)m, sizeof *merged, cmp_rates);
    int rc = label_rates_write(path, merged, m, err);
    free(merged);
    return rc;
}

static int selected(const label_options *o, const char *name) {
    if (!o->sources || o->n_sources == 0) return 1;
    for (int i = 0; i < o->n_sources; i++)
        if (!strcmp(o->sources[i], name)) return 1;
    return 0;
}

static int tag_all(const label_options *o, source_job **jobs_out, int *n_out, ps_error *err) {
    char (*names)[SHARD_NAME_MAX] = NULL;
    int n = shard_root_sources(o->shards_dir, &names, err);
    if (n < 0) return -1;
    source_job *jobs = calloc((size_t)(n ? n : 1), sizeof *jobs);
    label_classifier *cls = NULL;
    FILE *exp = o->export_path ? fopen(o->export_path, "w") : NULL;
    int rc = !jobs                          ? ps_fail(err, "out of memory")
             : o->export_path && !exp       ? ps_fail(err, "%s: cannot create: %s", o->export_path, strerror(errno))
             : !o->export_path              ? label_classifier_new(&cls, o->lexicon_dir, err)
                                            : 0;
    int m = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!selected(o, names[i])) continue;
        source_job *j = &jobs[m++];
        tokenizer *tok = NULL;
        rc = job_open(j, o->shards_dir, names[i], o->segment, err) || load_tokenizer(j->src, o, &tok, err) ? -1 : 0;
        tag_ctx t = {cls, tok, exp, o->segment, o->threads > 0 ? o->threads : omp_get_num_procs()};
        if (rc == 0) rc = tag_source(&t, j, err);
        if (rc == 0 && !exp) rc = job_write(j, o->segment, "presight-lexicon-1", err);
        if (rc == 0 && o->log) fprintf(o->log, "label: %s: %llu segments\n", names[i], (unsigned long long)j->rates.segments);
        tokenizer_free(tok);
    }
    if (exp && fclose(exp) != 0 && rc == 0) rc = ps_fail(err, "%s: write failed", o->export_path);
    label_classifier_free(cls);
    free(names);
    *jobs_out = jobs;
    *n_out = m;
    return rc;
}

int labels_run(const label_options *o, label_rates **rates, int *n_rates, ps_error *err) {
    if (rates) *rates = NULL;
    if (n_rates) *n_rates = 0;
    if (o->segment < 1) return ps_fail(err, "--segment must be >= 1 (the study: 1024)");
    source_job *jobs = NULL;
    int n = 0, rc;
    import_state st;
    memset(&st, 0, sizeof st);
    if (o->import_path) {
        rc = import_all(o, &st, err);
        jobs = st.jobs;
        n = st.n_jobs;
        char tagger[4200];
        snprintf(tagger, sizeof tagger, "import:%s", o->import_path);
        for (int i = 0; rc == 0 && i < n; i++) rc = job_write(&jobs[i], o->segment, tagger, err);
        if (rc == 0 && o->log)
            fprintf(o->log, "label import: %llu lines, %llu labelled segments, %llu skipped lines\n",
                    (unsigned long long)st.lines, (unsigned long long)st.labels, (unsigned long long)st.bad);
        for (int i = 0; rc == 0 && o->log && i < n; i++)
            if (jobs[i].untagged)
                fprintf(o->log, "label import: %s: %llu segments not in the file (left untagged, not in the rates)\n",
                        jobs[i].src->name, (unsigned long long)jobs[i].untagged);
    } else {
        rc = tag_all(o, &jobs, &n, err);
    }
    label_rates *out = calloc((size_t)(n ? n : 1), sizeof *out);
    for (int i = 0; out && i < n; i++) out[i] = jobs[i].rates;
    if (rc == 0 && !o->export_path && n > 0) rc = merge_rates(o->shards_dir, out, n, err);
    for (int i = 0; i < n; i++) job_free(&jobs[i]);
    free(jobs);
    if (rc == 0 && rates) {
        *rates = out;
        *n_rates = n;
    } else {
        free(out);
    }
    return rc;
}
