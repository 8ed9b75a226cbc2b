"""The scikit-learn way in: ``HalvingRandomSearchCV`` and ``RandomizedSearchCV`` for any skorch
``NeuralNetClassifier``, scikit-learn's own estimators with survivors that continue, seeded fits and
a ``storage`` folder that makes a second ``fit`` resume (``search``); ``SearchCV`` runs hpsearch's own
strategies (random, halving, hyperband, tpe, tpe-halving) the same way (``strategies``); the continuing net
(``continuing``)
and the checks made before any training (``checks``)."""

from .search import HalvingRandomSearchCV, RandomizedSearchCV
from .strategies import SearchCV

__all__ = ["HalvingRandomSearchCV", "RandomizedSearchCV", "SearchCV"]
