"""Vectorised rollouts of any joint policy; team return and every named score (DVF)."""

from teamsift.evaluate.rollout import Episodes, rollout
from teamsift.evaluate.stats import EvalResult, ScoreSummary, evaluate

__all__ = ["Episodes", "rollout", "evaluate", "EvalResult", "ScoreSummary"]
