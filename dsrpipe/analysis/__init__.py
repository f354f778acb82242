"""Analysis of data and reconstructions: metrics, Lyapunov spectra, fixed points."""

from dsrpipe.analysis.fixed_points import FixedPoint, fixed_points
from dsrpipe.analysis.lyapunov import kaplan_yorke_dimension, lyapunov_spectrum
from dsrpipe.analysis.metrics import (
    METRICS,
    power_spectrum_distance,
    prediction_error,
    state_space_divergence,
    state_space_divergence_gmm,
)

__all__ = [
    "METRICS",
    "FixedPoint",
    "fixed_points",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
    "power_spectrum_distance",
    "prediction_error",
    "state_space_divergence",
    "state_space_divergence_gmm",
]
