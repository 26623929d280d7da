"""Reference for the model-free scoring rules of `presight eval`: transcriptions of the
published Python that the anchors run, compared with stages/eval_*.c through
build/tests/tools/eval_tool on worked and random cases (tests/t_eval_reference.sh).

Transcribed (algorithm and constants as published; nothing here is presight's):
  - lm-evaluation-harness lm_eval/utils.py: get_rolling_token_windows,
    make_disjoint_window; lm_eval/api/task.py: count_words (len(re.split(r"\\s+", doc)));
    the multiple-choice acc/acc_norm of ConfigurableTask.process_results (np.argmax of
    lls and of lls / len(choice)); _encode_pair's context.rstrip().
  - EvalAIAnswerProcessor (facebookresearch/pythia pythia/tasks/processors.py, as
    lmms-eval copies it), VQA accuracy as lmms-eval's textvqa_process_results computes it.
  - ChartQA's relaxed_correctness (as lmms-eval's chartqa utils carry it).
  - MME's parse_pred_ans (lmms-eval mme utils, "brought from Otter Eval").
  - lm-eval's task text filters: hellaswag/utils.py preprocess, wikitext
    preprocess_wikitext.py wikitext_detokenizer, Python's str.capitalize.
Each comparison has a negative control: a deliberately wrong variant of the reference
must disagree with the C code on the same cases."""
import json
import random
import re
import subprocess
import sys

import numpy as np


# ---------------------------------------------------------------- lm-evaluation-harness

def get_rolling_token_windows(token_list, prefix_token, max_seq_len, context_len):
    assert 1 <= context_len <= max_seq_len
    if not token_list:
        return
    pred_len = max_seq_len - context_len + 1
    predicted = 0
    first_seq_len = min(max_seq_len, len(token_list))
    yield [prefix_token] + token_list[: first_seq_len - 1], token_list[:first_seq_len]
    predicted += first_seq_len
    while predicted < len(token_list):
        window_pred_len = min(len(token_list) - predicted, pred_len)
        window_end = predicted + window_pred_len
        yield (
            token_list[window_end - max_seq_len - 1: window_end - 1],
            token_list[window_end - window_pred_len: window_end],
        )
        predicted += window_pred_len


def make_disjoint_window(pair):
    a, b = pair
    return a[: len(a) - (len(b) - 1)], b


def count_words(doc):
    return len(re.split(r"\s+", doc))


def mc_scores(lls, choices, gold):
    lls = np.array(lls, dtype=np.float64)
    completion_len = np.array([float(len(i)) for i in choices])
    with np.errstate(divide="ignore", invalid="ignore"):
        pred_norm = int(np.argmax(lls / completion_len))
    pred = int(np.argmax(lls))
    return [pred, pred_norm, int(pred == gold), int(pred_norm == gold)]


# ------------------------------------------------------------------------ EvalAI

class EvalAIAnswerProcessor:
    CONTRACTIONS = {
        "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
        "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
        "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
        "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
        "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
        "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
        "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
        "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
        "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
        "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
        "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
        "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
        "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
        "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
        "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
        "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
        "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
        "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
        "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
        "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
        "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
        "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
        "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
        "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
        "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
        "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
        "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
        "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
        "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
        "youll": "you'll", "youre": "you're", "youve": "you've",
    }
    NUMBER_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                  "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
    ARTICLES = ["a", "an", "the"]
    PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
    COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
    PUNCTUATIONS = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                    ",", "?", "!"]

    def word_tokenize(self, word):
        word = word.lower()
        word = word.replace(",", "").replace("?", "").replace("'s", " 's")
        return word.strip()

    def process_punctuation(self, in_text):
        out_text = in_text
        for p in self.PUNCTUATIONS:
            if (p + " " in in_text or " " + p in in_text) or (re.search(self.COMMA_STRIP, in_text) is not None):
                out_text = out_text.replace(p, "")
            else:
                out_text = out_text.replace(p, " ")
        out_text = self.PERIOD_STRIP.sub("", out_text, re.UNICODE)
        return out_text

    def process_digit_article(self, in_text):
        out_text = []
        temp_text = in_text.lower().split()
        for word in temp_text:
            word = self.NUMBER_MAP.setdefault(word, word)
            if word not in self.ARTICLES:
                out_text.append(word)
        for word_id, word in enumerate(out_text):
            if word in self.CONTRACTIONS:
                out_text[word_id] = self.CONTRACTIONS[word]
        return " ".join(out_text)

    def __call__(self, item):
        item = self.word_tokenize(item)
        item = item.replace("\n", " ").replace("\t", " ").strip()
        item = self.process_punctuation(item)
        item = self.process_digit_article(item)
        return item


def relaxed_correctness(target, prediction, max_relative_change=0.05):
    def _to_float(text):
        try:
            if text.endswith("%"):
                return float(text.rstrip("%")) / 100.0
            else:
                return float(text)
        except ValueError:
            return None

    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        relative_change = abs(prediction_float - target_float) / abs(target_float)
        return relative_change <= max_relative_change
    else:
        return prediction.lower() == target.lower()


def parse_pred_ans(pred_ans):
    pred_ans = pred_ans.lower().strip().replace(".", "")
    pred_label = None
    if pred_ans in ["yes", "no"]:
        pred_label = pred_ans
    elif len(pred_ans) == 1:
        if pred_ans == "y":
            pred_label = "yes"
        elif pred_ans == "n":
            pred_label = "no"
        else:
            pred_label = "other"
    else:
        prefix_pred_ans = pred_ans[:4]
        if "yes" in prefix_pred_ans:
            pred_label = "yes"
        elif "no" in prefix_pred_ans:
            pred_label = "no"
        else:
            pred_label = "other"
    return pred_label


def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def wikitext_detokenizer(string):
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")
    return string


# ------------------------------------------------------------------------- cases

def random_text(rng, alphabet, n_max):
    pieces = []
    for _ in range(rng.randint(0, n_max)):
        pieces.append(rng.choice(alphabet))
    return "".join(pieces)


ASCII_PIECES = ["a", "the", "an", "Two", "one", "ten", "none", " ", "  ", "\t", "\n", ".", "..", ",", "?", "!",
                "'s", "'", "dont", "Im", "cant", "yall", "3", "12", "3.5", "1,000", "-", " - ", "(", ")", "[",
                "]", "/", "\\", "_", "@", "`", "<", ">", "=", "+", '"', ";", ":", "Cat", "DOG", "x", "Yes", "no",
                "y", "n", "é", "...", "0.5", ".5"]
UNICODE_SPACES = ["\u00a0", "\u2003", "\u3000", "\u2028", "\x1c", "\x85", "\u200b", "é", "x", " ", "\t", "\n", "ab"]


def cases():
    rng = random.Random(20260603)
    evalai = ["Two dogs!", "The man's hat.", "dont know", "3.5 kg", "left-hand", "yes - no", "1,000 people",
              "  A cat.  ", "it's 10:30", "a.b.c", "x" + "." * 40 + "y", "Im here", "(none)", "e.g. this",
              "what?!", "5, 6, 7", "one two three", "", "   ", "\"quoted\"", "U.S.A.", "3.14.15"]
    evalai += [random_text(rng, ASCII_PIECES, 14) for _ in range(400)]
    numbers = ["104", "100", "105", "105.1", "12%", "0.12", "0", "0.0", "-3", "+3", " 7 ", "1e2", "1E-2", ".5", "5.",
               "inf", "nan", "-inf", "Infinity", "1e", "e5", "abc", "12 %", "12%%", "%", "", "0x10", "1.2.3", "Yes"]
    relaxed = [[p, t] for p in numbers for t in numbers]
    yesno = ["Yes.", "no", "Y", "N", "No, it is not.", "Yes, there is", "There is a dog", "maybe", "", ".", "y.",
             "nope", "  yes  ", "YES!", "noyes", "I think yes", "Non", "a"] + \
            [random_text(rng, ["yes", "no", "Y", "n", " ", ".", "x", "Ye", "s", "o", "N"], 6) for _ in range(300)]
    words = ["", " ", "a", "a b", " a b ", "a\t\nb", "one  two", "x\u00a0y", "x\u2003 y", "\u3000", "a\x1cb",
             "a\x85b", "a\u200bb"] + [random_text(rng, UNICODE_SPACES, 10) for _ in range(300)]
    rolling = [[n, L, c] for n in range(0, 26) for L in range(1, 8) for c in range(1, L + 1)]
    rolling += [[1000, 128, 1], [1000, 100, 1], [129, 128, 1], [128, 128, 1], [257, 128, 1]]
    mc = [[[-5.0, -4.0, -9.0], ["a", "bb", "cccc"], 1], [[-4.0, -4.0], ["x", "y"], 0],
          [[-6.0, -8.0], ["é", "ab"], 1], [[-1.0, -2.0, -3.0], ["", "x", "y"], 0]]
    for _ in range(300):
        n = rng.randint(2, 5)
        mc.append([[round(rng.uniform(-30, 0), rng.choice([0, 1, 3])) for _ in range(n)],
                   [random_text(rng, ["a", "bé", " ", "xyz", "ü"], 6) or "z" for _ in range(n)], rng.randrange(n)])
    wiki_pieces = [" ", "\n", " @-@ ", " @,@ ", " @.@ ", " : ", " ; ", " . ", " ! ", " ? ", " , ", "(", ")", "[",
                   "]", "{", "}", '"', "'", "= ", "=", " N ", " 's", "s '", "/' 3/", " \u00b0 ", "word", "1", "é",
                   "\u00a0", "\t"]
    filters = [["wikitext", random_text(rng, wiki_pieces, 30)] for _ in range(400)]
    filters += [["wikitext", " = Sample = \n \n The ship was 1 @,@ 200 tons ( about 1 @.@ 1 kt ) , and it 's fast . \n"]]
    hs_pieces = [" ", "  ", " [title]", "[", "]", "[step]", "\n", "a", "Word", ".", "\t"]
    filters += [["hellaswag", random_text(rng, hs_pieces, 14)] for _ in range(300)]
    filters += [["capitalize", random_text(rng, ["a", "B", "HE", " ", "x1", "Q"], 6)] for _ in range(100)]
    return {"filter": filters, "evalai": evalai, "relaxed": relaxed, "yesno": yesno, "words": words, "rstrip": words, "chars": words,
            "rolling": rolling, "mc": mc}


def reference(mode, x, wrong=False):
    if mode == "evalai":
        out = EvalAIAnswerProcessor()(x)
        return out.replace("'s", "s") if wrong else out
    if mode == "relaxed":
        return int(relaxed_correctness(x[1], x[0], 0.10 if wrong else 0.05))
    if mode == "yesno":
        label = parse_pred_ans(x)
        if wrong:
            label = "yes" if x.lower().strip().startswith("y") else label
        return {"yes": 1, "no": 0, "other": -1}[label]
    if mode == "words":
        return len(x.split(" ")) if wrong else count_words(x)
    if mode == "rstrip":
        return len((x.rstrip(" ") if wrong else x.rstrip()).encode("utf-8"))
    if mode == "chars":
        return len(x.encode("utf-8")) if wrong else len(x)
    if mode == "filter":
        name, text = x
        if name == "wikitext":
            return wikitext_detokenizer(text.replace(" , ", ",") if wrong else text)
        if name == "hellaswag":
            return hellaswag_preprocess(text).replace(" ", "") if wrong else hellaswag_preprocess(text)
        return text.title() if wrong else text.capitalize()
    if mode == "rolling":
        n, L, c = x
        tokens = list(range(1000, 1000 + n))
        windows = list(map(make_disjoint_window, get_rolling_token_windows(tokens, -1, L, c if not wrong else min(c + 1, L))))
        return [[a, b] for a, b in windows]
    if mode == "mc":
        lls, choices, gold = x
        if wrong:
            choices = [c.encode("utf-8") for c in choices]
        return mc_scores(lls, choices, gold)
    raise ValueError(mode)


def c_windows_as_lists(n, c_out):
    tokens = list(range(1000, 1000 + n))
    out = []
    for prefix, ctx_begin, cont_begin, cont_end in c_out:
        ctx = [-1] if prefix else tokens[ctx_begin:cont_begin]
        out.append([ctx, tokens[cont_begin:cont_end]])
    return out


def main():
    tool = sys.argv[1]
    ok = True
    for mode, inputs in cases().items():
        text = "".join(json.dumps(x) + "\n" for x in inputs)
        res = subprocess.run([tool, mode], input=text, capture_output=True, text=True)
        if res.returncode:
            print(f"{mode}: tool failed: {res.stderr}")
            ok = False
            continue
        got = [json.loads(line) for line in res.stdout.splitlines()]
        if mode == "rolling":
            got = [c_windows_as_lists(x[0], g) for x, g in zip(inputs, got)]
        bad = [(x, g) for x, g in zip(inputs, got) if g != reference(mode, x)]
        control = sum(g != reference(mode, x, wrong=True) for x, g in zip(inputs, got))
        print(f"{mode}: {len(inputs)} cases, {len(bad)} differ from the reference; "
              f"negative control (a wrong reference) differs on {control}")
        for x, g in bad[:5]:
            print(f"    input {x!r}: C {g!r}, reference {reference(mode, x)!r}")
        if bad or len(got) != len(inputs) or control == 0:
            ok = False
        if mode == "rolling":
            for (n, L, c), windows in zip(inputs, got):
                if c != 1:
                    continue
                predicted = [t for _, cont in windows for t in cont]
                if predicted != list(range(1000, 1000 + n)) or any(len(a) + len(b) - 1 > L for a, b in windows):
                    print(f"rolling: n={n} L={L}: a token is not predicted exactly once or a window is too long")
                    ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
