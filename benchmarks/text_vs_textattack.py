"""robustlab vs TextAttack 0.3.11 on the same model, sentences and recipe.

Recipe (the one TextAttack runs offline): WordNet 3.0 synonym swap + greedy search by word
importance (deletion) + no word edited twice + stop words (the same list for both) + at most 20%
of the words. TextAttack's stock MaxWordsPerturbed rounds the budget up over its own word split;
here it is given a subclass that uses robustlab's budget (floor of 0.2 x whitespace words), so
both attack under exactly the same word budget. Model: the shipped ``mr-wordcnn``; data: the
first N sentences of the MR test split. One CPU thread each; the same process.

TextAttack runs only from a venv with ``--no-deps`` and hand-added requirements (see
benchmarks/results/text.md). Usage::

    NLTK_DATA=/tmp/textdl/nltk_data TA_CACHE_DIR=/tmp/textdl/ta_cache PYTHONPATH=src \
        /work/venvs/text/bin/python benchmarks/text_vs_textattack.py --n 200
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import robustlab as rl
from robustlab.attacks.text import STOP_WORDS, recipe
from robustlab.threats.text import WordBudget


def run_ours(model, x, y):
    attack = recipe("wordnet-greedy", WordBudget(words=0.2))
    attack(model, x[:2], y[:2])  # warm-up: tables loaded before the clock starts
    t0 = time.perf_counter()
    res = attack(model, x, y)
    wall = time.perf_counter() - t0
    return res.success.tolist(), res.queries.tolist(), wall, res


def run_textattack(model, x, y):
    import textattack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.goal_function_results import GoalFunctionResultStatus  # noqa: F401
    from textattack.goal_functions import UntargetedClassification
    from textattack.models.wrappers import ModelWrapper
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapWordNet

    class Wrapper(ModelWrapper):
        def __init__(self, m):
            self.model = m

        def __call__(self, text_list):
            with torch.no_grad():
                return self.model(list(text_list)).numpy()

    class SameBudget(MaxWordsPerturbed):
        """MaxWordsPerturbed with robustlab's budget: floor(0.2 x whitespace words of the original)."""

        def _check_constraint(self, transformed_text, reference_text):
            diff = len(transformed_text.all_words_diff(reference_text))
            return diff <= WordBudget(words=0.2).budget(len(reference_text.text.split()))

    goal = UntargetedClassification(Wrapper(model), model_batch_size=256)
    constraints = [RepeatModification(), StopwordModification(stopwords=set(STOP_WORDS)), SameBudget(max_percent=0.2)]
    attack = textattack.Attack(goal, constraints, WordSwapWordNet(), GreedyWordSwapWIR(wir_method="delete"))
    success, queries = [], []
    from textattack.attack_results import FailedAttackResult, SkippedAttackResult, SuccessfulAttackResult

    attack.attack(x[0], int(y[0]))  # warm-up: WordNet loaded before the clock starts
    attack.clear_cache()

    t0 = time.perf_counter()
    for text, label in zip(x, y.tolist()):
        r = attack.attack(text, label)
        success.append(isinstance(r, (SuccessfulAttackResult, SkippedAttackResult)))
        queries.append(0 if isinstance(r, SkippedAttackResult) else r.perturbed_result.num_queries)
        assert isinstance(r, (SuccessfulAttackResult, SkippedAttackResult, FailedAttackResult))
    return success, queries, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = rl.models.load("mr-wordcnn")
    x, y = rl.data.load("mr", split="test", n=args.n)
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).numpy()
    ours_s, ours_q, ours_wall, res = run_ours(model, x, y)
    ta_s, ta_q, ta_wall = run_textattack(model, x, y)
    c = correct.astype(bool)

    def row(s, q, wall):
        s, q = np.array(s), np.array(q)
        return {"success_rate": float(s[c].mean()), "robust_accuracy": float((~s).mean()),
                "queries_per_sentence": float(q[c].mean()), "wall_seconds": round(wall, 2)}

    out = {"n": args.n, "clean_accuracy": float(c.mean()), "robustlab": row(ours_s, ours_q, ours_wall),
           "textattack": row(ta_s, ta_q, ta_wall)}
    out["speedup"] = round(ta_wall / ours_wall, 1)
    out["agree_on_success"] = float((np.array(ours_s) == np.array(ta_s))[c].mean())
    print(json.dumps(out, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
