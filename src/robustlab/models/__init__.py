"""Reference models, the Normalize layer, and loading (shipped names or a user's files)."""
from robustlab.models.http import HTTPError, HTTPModel
from robustlab.models.access import (LabelOnly, QueryBudgetExceeded, ScoreOnly,
                                     SklearnModel, as_access)
from robustlab.models.architectures import BUILDERS, digits_mlp, mnist_cnn
from robustlab.models.layers import Normalize
from robustlab.models.loading import card, fingerprint, load, load_from_file, names, save
from robustlab.models.policy import PolicyNet
from robustlab.models.precision import PRECISIONS, Autocast, with_precision

__all__ = ["Normalize", "load", "load_from_file", "save", "names", "card", "fingerprint",
           "mnist_cnn", "digits_mlp", "BUILDERS",
           "ScoreOnly", "LabelOnly", "HTTPModel", "HTTPError", "SklearnModel", "QueryBudgetExceeded", "as_access",
           "Autocast", "with_precision", "PRECISIONS", "PolicyNet"]
