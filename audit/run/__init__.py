"""genfair.audit.run: the composition root of a run and of the studies built from runs.

Stage 1 (where outputs come from) is :mod:`.sources` with :mod:`.training` and
:mod:`.user_models`; :mod:`.runner` composes it with the pure audit (:mod:`genfair.audit.panel`)
and the reports (:mod:`genfair.reports`); :mod:`.studies` loops runs into ``audit compare`` and
``audit attribute``; :mod:`.api` is the Python way in for notebooks.
"""

from .config import DEFAULT_EXPERIMENT, RunConfig, RunOutcome
from .runner import plan_run, run_audit

__all__ = ["DEFAULT_EXPERIMENT", "RunConfig", "RunOutcome", "plan_run", "run_audit"]
