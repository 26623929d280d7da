/* eval_answer.c - answer parsing and short-answer scoring (the rules are in eval_answer.h). */
#include "eval_answer.h"

#include "strbuf.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Python's str.split()/strip() whitespace, for ASCII bytes. */
static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

static void trim(const char **s, size_t *len) {
    while (*len && is_space((unsigned char)(*s)[0])) (*s)++, (*len)--;
    while (*len && is_space((unsigned char)(*s)[*len - 1])) (*len)--;
}

static int ieq(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
    return 1;
}

/* First position of needle in hay, ASCII case ignored; -1 when absent. */
static long ifind(const char *hay, size_t hay_len, const char *needle, size_t needle_len) {
    if (needle_len == 0 || needle_len > hay_len) return -1;
    for (size_t i = 0; i + needle_len <= hay_len; i++)
        if (ieq(hay + i, needle, needle_len)) return (long)i;
    return -1;
}

/* ------------------------------------------------------------ tier 1: letters */

static int letter_at(const char *s, size_t len, size_t at, int n_choices) {
    if (at >= len) return -1;
    int c = (unsigned char)s[at];
    return c >= 'A' && c < 'A' + n_choices ? c - 'A' : -1;
}

static int letter_alone(const char *s, size_t len, int n_choices) {
    size_t at = 0;
    if (at < len && (s[at] == '(' || s[at] == '[')) at++;
    int letter = letter_at(s, len, at++, n_choices);
    if (letter < 0) return -1;
    if (at < len && (s[at] == ')' || s[at] == ']')) at++;
    if (at < len && (s[at] == '.' || s[at] == ':')) at++;
    return at == len ? letter : -1;
}

static size_t skip_spaces(const char *s, size_t len, size_t at) {
    while (at < len && is_space((unsigned char)s[at])) at++;
    return at;
}

/* "answer is (B)", "answer: B", "Answer is: B": the first such phrase with a valid letter. */
static int letter_after_answer(const char *s, size_t len, int n_choices) {
    for (size_t from = 0; from + 6 <= len; from++) {
        if (!ieq(s + from, "answer", 6)) continue;
        size_t at = skip_spaces(s, len, from + 6);
        if (at + 2 <= len && ieq(s + at, "is", 2) && !isalnum((unsigned char)(at + 2 < len ? s[at + 2] : ' ')))
            at = skip_spaces(s, len, at + 2);
        if (at < len && s[at] == ':') at = skip_spaces(s, len, at + 1);
        if (at < len && s[at] == '(') at++;
        int letter = letter_at(s, len, at, n_choices);
        if (letter >= 0 && (at + 1 == len || !isalnum((unsigned char)s[at + 1]))) return letter;
    }
    return -1;
}

static int letter_in_parens_at_edge(const char *s, size_t len, int n_choices) {
    if (len >= 3 && s[0] == '(' && s[2] == ')') {
        int letter = letter_at(s, len, 1, n_choices);
        if (letter >= 0) return letter;
    }
    if (len && s[len - 1] == '.') len--;
    if (len >= 3 && s[len - 3] == '(' && s[len - 1] == ')') return letter_at(s, len, len - 2, n_choices);
    return -1;
}

/* "B. dark red", "B) dark red", "B: dark red": a letter opening the answer, marked as one. */
static int letter_leading(const char *s, size_t len, int n_choices) {
    int letter = letter_at(s, len, 0, n_choices);
    if (letter < 0 || len < 3 || (s[1] != '.' && s[1] != ')' && s[1] != ':') || !is_space((unsigned char)s[2])) return -1;
    return letter;
}

static int parse_letter(const char *s, size_t len, int n_choices) {
    int letter = letter_alone(s, len, n_choices);
    if (letter < 0) letter = letter_leading(s, len, n_choices);
    if (letter < 0) letter = letter_after_answer(s, len, n_choices);
    if (letter < 0) letter = letter_in_parens_at_edge(s, len, n_choices);
    return letter;
}

/* ------------------------------------------------------- tiers 2 and 3: texts */

static void trim_period(const char **s, size_t *len) {
    trim(s, len);
    if (*len && (*s)[*len - 1] == '.') (*len)--;
    trim(s, len);
}

static int parse_whole(const char *s, size_t len, const char *const *choices, int n_choices) {
    trim_period(&s, &len);
    for (int i = 0; i < n_choices; i++) {
        const char *c = choices[i];
        size_t clen = strlen(c);
        trim_period(&c, &clen);
        if (clen == len && ieq(c, s, len)) return i;
    }
    return -1;
}

static int parse_contained(const char *s, size_t len, const char *const *choices, int n_choices) {
    int best = -1;
    size_t best_len = 0;
    long best_at = 0;
    for (int i = 0; i < n_choices; i++) {
        const char *c = choices[i];
        size_t clen = strlen(c);
        trim(&c, &clen);
        long at = ifind(s, len, c, clen);
        if (at < 0) continue;
        if (best < 0 || clen > best_len || (clen == best_len && at < best_at)) best = i, best_len = clen, best_at = at;
    }
    return best;
}

eval_parsed eval_parse_choice(const char *output, const char *const *choices, int n_choices, unsigned tiers) {
    eval_parsed none = {-1, 0};
    if (!output || n_choices < 1 || n_choices > 26) return none;
    const char *s = output;
    size_t len = strlen(output);
    trim(&s, &len);
    int got;
    if ((tiers & EVAL_TIER_LETTER) && (got = parse_letter(s, len, n_choices)) >= 0) return (eval_parsed){got, 1};
    if ((tiers & EVAL_TIER_WHOLE) && (got = parse_whole(s, len, choices, n_choices)) >= 0) return (eval_parsed){got, 2};
    if ((tiers & EVAL_TIER_CONTAINED) && (got = parse_contained(s, len, choices, n_choices)) >= 0)
        return (eval_parsed){got, 3};
    return none;
}

int eval_tiers_parse(const char *text) {
    if (!text || !*text) return -1;
    unsigned tiers = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '1' || *p > '3') return -1;
        unsigned bit = 1u << (*p - '1');
        if (tiers & bit) return -1;
        tiers |= bit;
    }
    return (int)tiers;
}

/* ------------------------------------------------------------ short answers */

void eval_normalize(const char *text, char *out, size_t size) {
    if (!size) return;
    size_t len = strlen(text), o = 0;
    const char *s = text;
    trim(&s, &len);
    if (len && s[len - 1] == '.') len--;
    trim(&s, &len);
    for (size_t i = 0; i < len && o + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_space(c)) {
            if (o && out[o - 1] != ' ') out[o++] = ' ';
        } else {
            out[o++] = (char)tolower(c);
        }
    }
    out[o] = 0;
}

static char *normalized_copy(const char *text) {
    size_t size = strlen(text) + 1;
    char *out = malloc(size);
    if (out) eval_normalize(text, out, size);
    return out;
}

int eval_exact_match(const char *prediction, const char *target) {
    char *p = normalized_copy(prediction), *t = normalized_copy(target);
    int same = p && t && !strcmp(p, t);
    free(p), free(t);
    return same;
}

/* Python's float(text): surrounding whitespace, a sign, decimal digits with an optional
 * point and exponent, or inf/infinity/nan (any case). Hexadecimal and digit underscores
 * (which strtod or Python would take) are refused. */
static int python_float(const char *text, size_t len, double *out) {
    const char *s = text;
    trim(&s, &len);
    if (!len || len > 255) return 0;
    char buf[256];
    memcpy(buf, s, len);
    buf[len] = 0;
    const char *p = buf + (buf[0] == '+' || buf[0] == '-');
    if (!strcasecmp(p, "inf") || !strcasecmp(p, "infinity") || !strcasecmp(p, "nan")) {
        *out = strtod(buf, NULL);
        return 1;
    }
    size_t digits = 0;
    while (isdigit((unsigned char)*p)) p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) p++, digits++;
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p) return 0;
    *out = strtod(buf, NULL);
    return 1;
}

/* ChartQA's _to_float: "12%" is 0.12. */
static int to_float(const char *text, double *out) {
    size_t len = strlen(text);
    if (len && text[len - 1] == '%') {
        while (len && text[len - 1] == '%') len--; /* rstrip("%") */
        if (!python_float(text, len, out)) return 0;
        *out /= 100.0;
        return 1;
    }
    return python_float(text, len, out);
}

int eval_relaxed_match(const char *prediction, const char *target, double max_relative_change) {
    double p, t;
    if (to_float(prediction, &p) && to_float(target, &t) && t != 0) return fabs(p - t) / fabs(t) <= max_relative_change;
    size_t n = strlen(prediction);
    return n == strlen(target) && ieq(prediction, target, n);
}

/* ------------------------------------------------------------------ EvalAI */

/* An answer is a few bytes: running out of memory here leaves nothing sensible to do. */
static void put(strbuf *b, const char *s, size_t n) {
    if (strbuf_put(b, s, n)) abort();
}

static const char *const contractions[][2] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"}, {"couldnt", "couldn't"},
    {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"}, {"didnt", "didn't"}, {"doesnt", "doesn't"},
    {"dont", "don't"}, {"hadnt", "hadn't"}, {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"},
    {"hasnt", "hasn't"}, {"havent", "haven't"}, {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"},
    {"hes", "he's"}, {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"}, {"Id've", "I'd've"},
    {"I'dve", "I'd've"}, {"Im", "I'm"}, {"Ive", "I've"}, {"isnt", "isn't"}, {"itd", "it'd"},
    {"itd've", "it'd've"}, {"it'dve", "it'd've"}, {"itll", "it'll"}, {"let's", "let's"}, {"maam", "ma'am"},
    {"mightnt", "mightn't"}, {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"},
    {"mightve", "might've"}, {"mustnt", "mustn't"}, {"mustve", "must've"}, {"neednt", "needn't"},
    {"notve", "not've"}, {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"},
    {"'ows'at", "'ow's'at"}, {"'ow'sat", "'ow's'at"}, {"shant", "shan't"}, {"shed've", "she'd've"},
    {"she'dve", "she'd've"}, {"she's", "she's"}, {"shouldve", "should've"}, {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"}, {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"}, {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"}, {"someoned", "someone'd"}, {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"}, {"someonell", "someone'll"}, {"someones", "someone's"},
    {"somethingd", "something'd"}, {"somethingd've", "something'd've"}, {"something'dve", "something'd've"},
    {"somethingll", "something'll"}, {"thats", "that's"}, {"thered", "there'd"}, {"thered've", "there'd've"},
    {"there'dve", "there'd've"}, {"therere", "there're"}, {"theres", "there's"}, {"theyd", "they'd"},
    {"theyd've", "they'd've"}, {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"},
    {"theyve", "they've"}, {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"},
    {"we'dve", "we'd've"}, {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"},
    {"whatre", "what're"}, {"whats", "what's"}, {"whatve", "what've"}, {"whens", "when's"},
    {"whered", "where'd"}, {"wheres", "where's"}, {"whereve", "where've"}, {"whod", "who'd"},
    {"whod've", "who'd've"}, {"who'dve", "who'd've"}, {"wholl", "who'll"}, {"whos", "who's"},
    {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"}, {"whys", "why's"}, {"wont", "won't"},
    {"wouldve", "would've"}, {"wouldnt", "wouldn't"}, {"wouldnt've", "wouldn't've"},
    {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"}, {"yall'll", "y'all'll"}, {"y'allll", "y'all'll"},
    {"yall'd've", "y'all'd've"}, {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"}, {"youd", "you'd"},
    {"youd've", "you'd've"}, {"you'dve", "you'd've"}, {"youll", "you'll"}, {"youre", "you're"},
    {"youve", "you've"},
};

static const char *const number_words[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"}, {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"}, {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"},
};

static const char punctuations[] = ";/[]\"{}()=+\\_-><@`,?!";

/* word_tokenize + the newline/tab step: lower, drop "," and "?", "'s" -> " 's", strip. */
static void evalai_word_tokenize(const char *answer, strbuf *out) {
    strbuf low = {0};
    put(&low, "", 0);
    for (const char *p = answer; *p; p++) {
        char c = (char)tolower((unsigned char)*p);
        if (c == '\n' || c == '\t') c = ' '; /* the later replace; equal, as both strips follow */
        if (c != ',' && c != '?') put(&low, &c, 1);
    }
    put(out, "", 0);
    for (size_t i = 0; i < low.n; i++) {
        if (low.s[i] == '\'' && low.s[i + 1] == 's') {
            put(out, " 's", 3);
            i++;
        } else {
            put(out, low.s + i, 1);
        }
    }
    free(low.s);
    const char *s = out->s;
    size_t len = out->n;
    trim(&s, &len);
    memmove(out->s, s, len);
    out->n = len;
    out->s[len] = 0;
}

static int has_digit_comma_digit(const char *s) {
    for (size_t i = 0; s[i]; i++) {
        if (!isdigit((unsigned char)s[i]) || s[i + 1] != ',') continue;
        size_t j = i + 1;
        while (s[j] == ',') j++;
        if (isdigit((unsigned char)s[j])) return 1;
    }
    return 0;
}

static void evalai_punctuation(const char *in, strbuf *out) {
    int comma = has_digit_comma_digit(in);
    unsigned char mode[256] = {0}; /* 1 delete, 2 replace by a space */
    for (const char *p = punctuations; *p; p++) {
        char spaced_after[3] = {*p, ' ', 0}, spaced_before[3] = {' ', *p, 0};
        mode[(unsigned char)*p] = (strstr(in, spaced_after) || strstr(in, spaced_before) || comma) ? 1 : 2;
    }
    strbuf mid = {0};
    put(&mid, "", 0);
    for (const char *p = in; *p; p++) {
        unsigned char m = mode[(unsigned char)*p];
        if (m == 1) continue;
        put(&mid, m == 2 ? " " : p, 1);
    }
    /* PERIOD_STRIP.sub("", text, re.UNICODE): re.UNICODE (32) lands in sub's count. */
    int removed = 0;
    for (size_t i = 0; i < mid.n; i++) {
        if (mid.s[i] == '.' && removed < 32 && !isdigit((unsigned char)mid.s[i + 1])) {
            removed++;
            continue;
        }
        put(out, mid.s + i, 1);
    }
    if (!out->s) put(out, "", 0);
    free(mid.s);
}

static void evalai_digit_article(const char *in, strbuf *out) {
    put(out, "", 0);
    const char *p = in;
    int words = 0;
    while (*p) {
        while (*p && is_space((unsigned char)*p)) p++;
        if (!*p) break;
        const char *start = p;
        while (*p && !is_space((unsigned char)*p)) p++;
        size_t len = (size_t)(p - start);
        char word[256];
        if (len >= sizeof word) len = sizeof word - 1;
        for (size_t i = 0; i < len; i++) word[i] = (char)tolower((unsigned char)start[i]);
        word[len] = 0;
        const char *w = word;
        for (size_t i = 0; i < sizeof number_words / sizeof *number_words; i++)
            if (!strcmp(w, number_words[i][0])) w = number_words[i][1];
        if (!strcmp(w, "a") || !strcmp(w, "an") || !strcmp(w, "the")) continue;
        for (size_t i = 0; i < sizeof contractions / sizeof *contractions; i++)
            if (!strcmp(w, contractions[i][0])) {
                w = contractions[i][1];
                break;
            }
        if (words++) put(out, " ", 1);
        put(out, w, strlen(w));
    }
}

void eval_evalai_normalize(const char *answer, char *out, size_t size) {
    strbuf a = {0}, b = {0}, c = {0};
    evalai_word_tokenize(answer, &a);
    evalai_punctuation(a.s, &b);
    evalai_digit_article(b.s, &c);
    if (size) {
        size_t n = c.n < size - 1 ? c.n : size - 1;
        memcpy(out, c.s, n);
        out[n] = 0;
    }
    free(a.s), free(b.s), free(c.s);
}

static char *evalai_copy(const char *text) {
    size_t size = strlen(text) * 2 + 16; /* "'s" grows to " 's" */
    char *out = malloc(size);
    if (out) eval_evalai_normalize(text, out, size);
    return out;
}

double eval_vqa_accuracy(const char *prediction, const char *const *answers, int n) {
    if (n < 1) return 0;
    char *pred = evalai_copy(prediction);
    char **gt = calloc((size_t)n, sizeof *gt);
    double total = 0;
    if (pred && gt) {
        for (int i = 0; i < n; i++) gt[i] = evalai_copy(answers[i]);
        for (int i = 0; i < n; i++) {
            int matching = 0;
            for (int j = 0; j < n; j++)
                if (j != i && gt[j] && !strcmp(gt[j], pred)) matching++;
            total += matching >= 3 ? 1.0 : matching / 3.0;
        }
        for (int i = 0; i < n; i++) free(gt[i]);
    }
    free(gt), free(pred);
    return total / n;
}

int eval_parse_yes_no(const char *output) {
    /* pred.lower().strip().replace(".", "") */
    size_t len = strlen(output), o = 0;
    const char *s = output;
    trim(&s, &len);
    char *t = malloc(len + 1);
    if (!t) return -1;
    for (size_t i = 0; i < len; i++)
        if (s[i] != '.') t[o++] = (char)tolower((unsigned char)s[i]);
    t[o] = 0;
    int label = -1;
    if (!strcmp(t, "yes")) label = 1;
    else if (!strcmp(t, "no")) label = 0;
    else if (o == 1) label = t[0] == 'y' ? 1 : t[0] == 'n' ? 0 : -1;
    else {
        t[o < 4 ? o : 4] = 0;
        label = strstr(t, "yes") ? 1 : strstr(t, "no") ? 0 : -1;
    }
    free(t);
    return label;
}
