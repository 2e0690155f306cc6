"""One class per learner config: which neurons have targets at which step."""

from astdp.learners.base import Learner
from astdp.learners.ep import EquilibriumPropagation
from astdp.learners.generation import Generation
from astdp.learners.self_supervised import SelfSupervised
from astdp.learners.supervised import Supervised
from astdp.learners.unsupervised import Unsupervised

LEARNERS = {cls.name: cls for cls in (Unsupervised, Supervised, SelfSupervised, Generation, EquilibriumPropagation)}

__all__ = ["Learner", "Unsupervised", "Supervised", "SelfSupervised", "Generation", "EquilibriumPropagation", "LEARNERS"]
