"""The shipped model zoo: weights as safetensors inside the package, each with a model card
(JSON next to the weights: how it was trained, from which seed, what it measured)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any


@dataclass(frozen=True)
class ZooEntry:
    name: str
    architecture: str  # key of robustlab.models.architectures.BUILDERS (or a label for ``loader``)
    dataset: str
    description: str
    # "module:function" building the whole model (wrappers, vocabularies, detector statistics)
    # from (entry, state_dict or None); None: BUILDERS[architecture]() plus the weights file.
    loader: str | None = None
    # Threat of the model's own evaluation (shown by ``robustlab models``), e.g. "linf:0.3".
    threat: str | None = None


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("mnist-cnn", "mnist_cnn", "mnist", "standard training (no defense)"),
        ZooEntry("mnist-cnn-at", "mnist_cnn", "mnist", "PGD adversarial training, Linf eps 0.3"),
        ZooEntry("mnist-cnn-crownibp", "mnist_cnn_bn", "mnist", "IBP certified training (IBP init + BatchNorm, short warmup), Linf eps 0.4 for a 0.3 budget",
                 loader="robustlab.models.certified:load_certified", threat="linf:0.3"),
        ZooEntry("mnist-cnn-crownibp-0.1", "mnist_cnn_bn", "mnist",
                 "IBP certified training (IBP init + BatchNorm, short warmup), Linf eps 0.15 for a 0.1 budget",
                 loader="robustlab.models.certified:load_certified", threat="linf:0.1"),
        ZooEntry("mnist-cnn-smooth-0.25", "mnist_cnn", "mnist", "randomized smoothing sigma 0.25, Gaussian augmentation", loader="robustlab.certify.smoothing:load_smoothed", threat="l2:0.5"),
        ZooEntry("mnist-cnn-smooth-0.50", "mnist_cnn", "mnist", "randomized smoothing sigma 0.50, Gaussian augmentation", loader="robustlab.certify.smoothing:load_smoothed", threat="l2:1.0"),
        ZooEntry("mnist-lip", "mnist_lip_sll", "mnist", "1-Lipschitz conv network with SLL residual blocks (AOL, PixelUnshuffle downsampling), margin training, per-pair last-layer certificate", loader="robustlab.models.lipschitz:load_mnist_lip", threat="l2:1.58"),
        ZooEntry("mnist-cnn-trades", "mnist_cnn", "mnist", "TRADES (beta 6, 2 epochs) from mnist-cnn-at's weights, Linf eps 0.3", threat="linf:0.3"),
        ZooEntry("mnist-cnn-fast", "mnist_cnn", "mnist", "one-step adversarial training (ATTA: perturbations carried across epochs), Linf eps 0.3, under 10 CPU-minutes", threat="linf:0.3"),
        ZooEntry("mnist-cnn-masked", "mnist_cnn", "mnist", "gradient-masking example: one-step N-FGSM + checks at Linf 0.3 (PGD-40 45.6%, standard ensemble 2.7%)", threat="linf:0.3"),
        ZooEntry("fashion-cnn-at", "mnist_cnn", "fashion-mnist", "PGD adversarial training, Linf eps 0.1 (3 epochs)",
                 threat="linf:0.1"),
        # One line per shipped model; modalities and defenses name their own loader.
        ZooEntry("mr-wordcnn", "wordcnn", "mr", "word-CNN on frozen GloVe 50d, Rotten Tomatoes polarity", loader="robustlab.models.text:load_wordcnn", threat="words:0.2,sim:0.8"),
        ZooEntry("mr-wordcnn-at", "wordcnn", "mr", "word-CNN adversarially trained for text (augment with textfooler/pwws/deepwordbug-like examples, retrain)", loader="robustlab.models.text:load_wordcnn", threat="words:0.2,sim:0.8"),
        ZooEntry("mr-wordcnn-norm", "wordcnn", "mr", "mr-wordcnn behind a spelling-normalizing front end (defense)", loader="robustlab.defenses.text_normalize:load_normalized_wordcnn", threat="words:0.2,sim:0.8"),
        ZooEntry("filter-minilm-norm", "minilm-filter", "sms", "filter-minilm behind the normalizing front end (defense); needs robustlab[text]", loader="robustlab.models.content_filter:load_filter", threat="words:0.2,sim:0.8"),
        ZooEntry("filter-minilm", "minilm-filter", "sms", "content (spam) filter: MiniLM-L6 encoder + MLP head; needs robustlab[text]", loader="robustlab.models.content_filter:load_filter", threat="words:0.2,sim:0.8"),
        ZooEntry("kws-cnn", "kws_cnn", "keywords", "keyword CNN on in-model log-mel, standard training",
                 loader="robustlab.models.kws:load_kws", threat="db:-30"),
        ZooEntry("kws-cnn-at", "kws_cnn", "keywords", "keyword CNN, PGD-5 adversarial training at db:-30 (fine-tuned)",
                 loader="robustlab.models.kws:load_kws", threat="db:-30"),
        ZooEntry("cartpole-dqn", "policy_mlp", "CartPole-v1", "DQN policy (double DQN, no defense)", loader="robustlab.models.policy:load_policy", threat="state:0.4"),
        ZooEntry("cartpole-ppo", "policy_mlp", "CartPole-v1", "PPO policy (no defense)", loader="robustlab.models.policy:load_policy", threat="state:0.4"),
        ZooEntry("cartpole-dqn-robust", "policy_mlp", "CartPole-v1", "DQN fine-tuned: attacked rollouts (PGD on observations) + SA-DQN hinge at PGD points (state eps 0.5) + centring reward", loader="robustlab.models.policy:load_policy", threat="state:0.4"),
        ZooEntry("cartpole-ppo-robust", "policy_mlp", "CartPole-v1", "PPO fine-tuned: SA-style hinge at PGD points (state eps 0.5) + centring reward", loader="robustlab.models.policy:load_policy", threat="state:0.4"),
        ZooEntry("acrobot-dqn", "policy_mlp", "Acrobot-v1", "DQN policy (double DQN, no defense)", loader="robustlab.models.policy:load_policy", threat="state:0.2"),
        ZooEntry("acrobot-dqn-robust", "policy_mlp", "Acrobot-v1", "DQN fine-tuned: attacked rollouts (PGD on observations) + SA-DQN hinge at PGD points (state eps 0.2)", loader="robustlab.models.policy:load_policy", threat="state:0.2"),
        ZooEntry("mnist-cnn+squeeze", "mnist_cnn+squeeze", "mnist", "feature squeezing detector (1-bit depth, 2x2 median), 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+mahalanobis", "mnist_cnn+mahalanobis", "mnist", "Mahalanobis detector on ReLU features, 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+lid", "mnist_cnn+lid", "mnist", "LID detector (k=20, 300 clean references), 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+binary", "mnist_cnn+binary", "mnist", "binary detector CNN (Metzen et al.), 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+bitdepth", "mnist_cnn+bitdepth", "mnist", "1-bit depth reduction (BPDA view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+median", "mnist_cnn+median", "mnist", "2x2 median filter", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+jpeg", "mnist_cnn+jpeg", "mnist", "Pillow JPEG q50 (BPDA view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+tv", "mnist_cnn+tv", "mnist", "TV minimisation, weight 0.1 (BPDA view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+resizepad", "mnist_cnn+resizepad", "mnist", "random resize 24-28 + pad (EOT-10 view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn+noise", "mnist_cnn+noise", "mnist", "Gaussian noise sigma 0.3 (EOT-10 view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+squeeze", "mnist_cnn+squeeze", "mnist", "feature squeezing detector (1-bit depth, 2x2 median), 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+mahalanobis", "mnist_cnn+mahalanobis", "mnist", "Mahalanobis detector on ReLU features, 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+lid", "mnist_cnn+lid", "mnist", "LID detector (k=20, 300 clean references), 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+binary", "mnist_cnn+binary", "mnist", "binary detector CNN (Metzen et al.), 5% FPR", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+bitdepth", "mnist_cnn+bitdepth", "mnist", "1-bit depth reduction (BPDA view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+median", "mnist_cnn+median", "mnist", "2x2 median filter", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+jpeg", "mnist_cnn+jpeg", "mnist", "Pillow JPEG q50 (BPDA view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+tv", "mnist_cnn+tv", "mnist", "TV minimisation, weight 0.1 (BPDA view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+resizepad", "mnist_cnn+resizepad", "mnist", "random resize 24-28 + pad (EOT-10 view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
        ZooEntry("mnist-cnn-at+noise", "mnist_cnn+noise", "mnist", "Gaussian noise sigma 0.3 (EOT-10 view)", loader="robustlab.defenses.zoo:load_defended", threat="linf:0.3"),
    ]
}


def weights_path(name: str):
    """The safetensors file of a shipped model."""
    return files("robustlab.models") / "weights" / f"{name}.safetensors"


def card(name: str) -> dict[str, Any]:
    """The model card of a shipped model (training config, seed, measured accuracy)."""
    p = files("robustlab.models") / "weights" / f"{name}.json"
    if not p.is_file():
        return {}
    return json.loads(p.read_text())
