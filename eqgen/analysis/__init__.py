"""Analysis of solved and unsolved dynamics: fixed points and their stability, the largest
stable learning rate, plateaus of learning curves, and times to reach a level.

- `find_fixed_points` (`fixed_points`): Newton-type search, Jacobian spectrum, classification.
- `perfect_learning_stability` (`stability`): decay rates of the overlaps and of the risk,
  and η_max.
- `find_plateaus`, `solution_plateaus` (`plateaus`): plateau detection on a curve.
- `time_to`, `interpolation_time`, `interpolation_spread` (`crossing`): first times below a
  level; the interpolation time of sampled DMFT solves over several seeds.
- `Coordinates` (`coordinates`), `CommitteeSystem` (`system`): the ODE on its independent
  coordinates; `NotDifferentiableError` where it has no Jacobian.
"""

from eqgen.analysis.coordinates import Coordinates
from eqgen.analysis.crossing import (
    first_time_below,
    interpolation_spread,
    interpolation_time,
    time_to,
)
from eqgen.analysis.fixed_points import FixedPoint, classify, find_fixed_points
from eqgen.analysis.plateaus import Plateau, find_plateaus, solution_plateaus
from eqgen.analysis.stability import PerfectLearningStability, perfect_learning_stability
from eqgen.analysis.system import (
    CommitteeSystem,
    NotDifferentiableError,
    learning_rate_parameter,
)

__all__ = [
    "CommitteeSystem",
    "Coordinates",
    "FixedPoint",
    "NotDifferentiableError",
    "PerfectLearningStability",
    "Plateau",
    "classify",
    "find_fixed_points",
    "find_plateaus",
    "first_time_below",
    "interpolation_spread",
    "interpolation_time",
    "learning_rate_parameter",
    "perfect_learning_stability",
    "solution_plateaus",
    "time_to",
]
