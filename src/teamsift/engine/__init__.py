"""The training engine: one loop for every learner (below `algos`, used by `collect`,
`value` and `algos` alike).

    learner = icq.learner(ICQConfig(), dataset)                 # init, update, policy (pure)
    result = fit(learner, dataset, key, RunConfig(updates=1500, seeds=5, run_dir="runs/icq",
                                                  checkpoint_every=500), sampler=DPER(...), env=env)
    result.policy(0), result.history["loss"], result.evaluations

See `teamsift.engine.fit` for the loop, `teamsift.engine.learner` for what a learner
supplies, `teamsift.engine.run` for the run directory and `teamsift.engine.placement` for
where the data and the seeds live (streamed from disk, over devices and processes).
"""

from teamsift.engine.fit import FitResult, fit, step_weights
from teamsift.engine.learner import Feedback, Learner
from teamsift.engine.overrides import parse_assignment, with_overrides
from teamsift.engine.run import RunConfig, RunDir, RunDirError

__all__ = ["fit", "FitResult", "Learner", "Feedback", "RunConfig", "RunDir", "RunDirError", "step_weights", "with_overrides",
           "parse_assignment"]
