"""Online forecasters for predictive scaling, plus offline fitting helpers.

Pure algorithms: no I/O, no clock. Every forecaster shares one small interface
(:class:`Forecaster`): ``update(t, value)`` with metric samples, ``forecast(horizon_s)``,
``state_dict()`` / ``load_state_dict()``. :mod:`tidal.forecast.offline` estimates their
parameters with statsmodels (imported only there, lazily).
"""

from tidal.forecast.base import Forecaster
from tidal.forecast.errors import ForecastErrors
from tidal.forecast.naive import SeasonalNaive
from tidal.forecast.offline import ARIMAFit, ETSFit, fit_arima, fit_ets, resample
from tidal.forecast.regression import LinearRegression
from tidal.forecast.smoothing import EWMA, Holt, HoltWinters

__all__ = [
    "ARIMAFit",
    "ETSFit",
    "EWMA",
    "ForecastErrors",
    "Forecaster",
    "Holt",
    "HoltWinters",
    "LinearRegression",
    "SeasonalNaive",
    "fit_arima",
    "fit_ets",
    "resample",
]
