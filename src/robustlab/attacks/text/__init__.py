"""Text attacks as compositions: goal + transformation + constraints + search, batched over
sentences, taking and returning strings (``AttackResult.x_adv`` is a list of str).

    from robustlab.attacks.text import recipe
    res = recipe("textfooler-like", "words:0.2,sim:0.8")(model, texts, y)
"""
from robustlab.attacks.text.attack import State, Targeted, TextAttack, Untargeted
from robustlab.attacks.text.constraints import STOP_WORDS, EmbeddingCosine, SentenceSimilarity, StopWords
from robustlab.attacks.text.recipes import RECIPES, recipe
from robustlab.attacks.text.search import PWWS, Beam, Genetic, GreedyWIR
from robustlab.attacks.text.transformations import CHAR_KINDS, CharEdits, Compose, EmbeddingSwap, WordNetSwap

__all__ = ["TextAttack", "State", "Untargeted", "Targeted", "WordNetSwap", "EmbeddingSwap", "CharEdits", "Compose",
           "CHAR_KINDS", "StopWords", "STOP_WORDS", "EmbeddingCosine", "SentenceSimilarity", "GreedyWIR", "Beam",
           "PWWS", "Genetic", "RECIPES", "recipe"]
