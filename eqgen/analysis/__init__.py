"""Analysis of solved and unsolved dynamics: fixed points and their stability, the largest
stable learning rate, plateaus of learning curves, and times to reach a level.

- `find_fixed_points` (`fixed_points`): Newton-type search, Jacobian spectrum, classification.
- `perfect_learning_stability` (`stability`): slowest decay rate and η_max.
- `find_plateaus`, `solution_plateaus` (`plateaus`): plateau detection on a curve.
- `time_to`, `interpolation_time` (`crossing`): first times below a level.
- `Coordinates` (`coordinates`), `CommitteeSystem` (`system`): the ODE on its independent
  coordinates.
"""

from eqgen.analysis.coordinates import Coordinates
from eqgen.analysis.crossing import first_time_below, interpolation_time, time_to
from eqgen.analysis.fixed_points import FixedPoint, classify, find_fixed_points
from eqgen.analysis.plateaus import Plateau, find_plateaus, solution_plateaus
from eqgen.analysis.stability import PerfectLearningStability, perfect_learning_stability
from eqgen.analysis.system import CommitteeSystem, learning_rate_parameter

__all__ = [
    "CommitteeSystem",
    "Coordinates",
    "FixedPoint",
    "PerfectLearningStability",
    "Plateau",
    "classify",
    "find_fixed_points",
    "find_plateaus",
    "first_time_below",
    "interpolation_time",
    "learning_rate_parameter",
    "perfect_learning_stability",
    "solution_plateaus",
    "time_to",
]
