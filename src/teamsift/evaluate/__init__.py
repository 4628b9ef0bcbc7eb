"""Vectorised rollouts of any joint policy; team return and every named score (DVF)."""

from teamsift.evaluate.partner import evaluate_paired, evaluate_seats, paired
from teamsift.evaluate.rollout import Episodes, rollout, rollout_to_host
from teamsift.evaluate.stats import EvalResult, ScoreSummary, evaluate

__all__ = ["Episodes", "rollout", "rollout_to_host", "evaluate", "EvalResult", "ScoreSummary", "paired",
           "evaluate_paired", "evaluate_seats"]
