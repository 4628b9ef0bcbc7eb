"""Ready-made dataset suites, declared as data.

* `SIT_SUITE`: the agent-wise imbalanced low- and medium-quality datasets of SIT's
  Tables 7–9, mapped onto our environments (10 000 episodes each). SIT's SMAC maps
  2s_vs_1sc and 1c3s5z have no SMAX counterpart; its MAMuJoCo maps are our MaBrax
  halfcheetah_2x3 and walker2d_2x3 with SIT's 200-step episodes. SIT's HalfCheetah
  low-quality entry reads `[l1^m, l2^l]`, which we take as `[m, r]`.
* `EXPERT_SUITE`: expert demonstrations for imitation (MILD²): ≈100k transitions from
  the expert pool on SMAX 3m and 2s3z, MPE spread and MaBrax halfcheetah_6x1.
"""

from __future__ import annotations

# Environment keyword arguments used for pools and datasets of an environment.
ENV_KWARGS = {
    "halfcheetah_2x3": {"episode_length": 200},
    "walker2d_2x3": {"episode_length": 200},
}

SIT_SUITE = {
    "CN_3ls3l": {"low": "50%[r,r,r] + 50%[r,r,m]", "medium": "100%[r,m,e]"},
    "CN_4ls4l": {"low": "50%[r,r,r,r] + 50%[r,r,r,m]", "medium": "100%[r,r,e,e]"},
    "PP_3p1p": {"low": "50%[r,r,r] + 50%[r,r,m]", "medium": "100%[r,m,e]"},
    "smax_3s_vs_5z": {"low": "50%[r,r,r] + 50%[r,r,m]", "medium": "100%[r,r,e]"},
    "smax_2s3z": {"low": "50%[all r] + 50%[all m]", "medium": "100%[r,e,r,e,e]"},
    "smax_8m": {"low": "50%[all r] + 50%[all m]", "medium": "100%[r,e,e,e,e,e,e,e]"},
    "smax_10m_vs_11m": {"low": "50%[all r] + 50%[all m]", "medium": "100%[all e]"},
    "halfcheetah_2x3": {"low": "100%[m,r]", "medium": "100%[r,e]"},
    "walker2d_2x3": {"low": "100%[r,m]", "medium": "100%[r,e]"},
}
SIT_EPISODES = 10_000

EXPERT_SUITE = {env_id: "100%[all e]" for env_id in ("smax_3m", "smax_2s3z", "mpe_spread", "halfcheetah_6x1")}
EXPERT_TRANSITIONS = 100_000
