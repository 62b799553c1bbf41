"""Attack the shipped sentiment word-CNN with three text recipes and show what changed.

    PYTHONPATH=src python examples/text_attack.py
"""
import torch

import robustlab as rl
from robustlab.attacks.text import recipe
from robustlab.report.text_section import highlight

torch.set_num_threads(1)
texts, y = rl.data.load("mr", split="test", n=50)
model = rl.models.load("mr-wordcnn")
threat = rl.WordBudget(words=0.2, sim=0.8, simby="glove")  # simby="minilm" with robustlab[text]
for name in ("deepwordbug-like", "pwws-like", "textfooler-like"):
    res = recipe(name, threat)(model, texts, y)
    print(f"{name}: success {res.success_rate:.0%}, {res.queries.float().mean():.1f} queries per sentence")
    i = int(res.success.nonzero()[0, 0])
    print("   ", texts[i], "\n -> ", res.x_adv[i])
print(highlight("a gorgeous , witty film", "a gorgeous , waggish film"))
