"""Analysis of data and reconstructions: metrics, Lyapunov spectra, fixed points and cycles, basins."""

from dsrpipe.analysis.basins import BasinResult, basin_map, basins
from dsrpipe.analysis.cycles import Cycle, exhaustive_cycles, scyfi, virtual_fixed_points
from dsrpipe.analysis.divergence import DIVERGENCE_NORM, OrbitDivergedError, first_divergence
from dsrpipe.analysis.fixed_points import FixedPoint, fixed_points
from dsrpipe.analysis.lyapunov import (
    LyapunovResult,
    classify_attractor,
    kaplan_yorke_dimension,
    lyapunov_analysis,
    lyapunov_spectrum,
)
from dsrpipe.analysis.metrics import (
    METRICS,
    power_spectrum_distance,
    prediction_error,
    prediction_error_curve,
    state_space_divergence,
    state_space_divergence_gmm,
)
from dsrpipe.analysis.symbolic import SymbolicDynamics, symbolic_dynamics, visited_regions

__all__ = [
    "DIVERGENCE_NORM",
    "METRICS",
    "BasinResult",
    "Cycle",
    "FixedPoint",
    "LyapunovResult",
    "OrbitDivergedError",
    "SymbolicDynamics",
    "basin_map",
    "basins",
    "classify_attractor",
    "exhaustive_cycles",
    "first_divergence",
    "fixed_points",
    "kaplan_yorke_dimension",
    "lyapunov_analysis",
    "lyapunov_spectrum",
    "power_spectrum_distance",
    "prediction_error",
    "prediction_error_curve",
    "scyfi",
    "state_space_divergence",
    "state_space_divergence_gmm",
    "symbolic_dynamics",
    "virtual_fixed_points",
    "visited_regions",
]
