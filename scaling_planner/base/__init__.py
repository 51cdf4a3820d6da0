"""The base layer every other one stands on: errors (``PlannerError`` > ``InputError``, ``InfeasibleError``,
``MeasurementError``), units (parsing, SI, GB vs GiB decided once), io (atomic writes), checks (one
``InputError`` per bad numeric argument) and stats (sample percentiles). Standard library, numpy and
pydantic only."""
