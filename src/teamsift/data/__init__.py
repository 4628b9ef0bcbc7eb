"""The teamsift dataset format: writing, loading, validating, importing, viewing, sampling.

    >>> from teamsift import data
    >>> path = data.write_dataset("runs/ds", spec=spec, obs=..., ...)   # atomic
    >>> ds = data.load_dataset(path)                                     # validated, memory-mapped
    >>> ds.transitions()[np.arange(8)]["next_obs"]                       # views, no copies
    >>> arrays = data.to_device(ds)
    >>> batch = jax.jit(data.sample_transitions, static_argnums=2)(key, arrays, 256)

See `teamsift.data.format` for the on-disk layout.
"""

from teamsift.data.errors import DatasetError
from teamsift.data.format import (
    EPISODES_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    STEPS_DIR,
    Dataset,
    Labels,
    dataset_fingerprint,
    default_agent_ids,
    load_dataset,
    read_episode_table,
    write_dataset,
    write_dataset_chunks,
)
from teamsift.data.importers import NPZ_KEYS, VAULT_LEAVES, export_vault, import_npz, import_vault
from teamsift.data.overcooked_human import import_overcooked_human
from teamsift.data.samplers import (
    DPER, PJAP, SAMPLERS, UNITS, Uniform, gather_episodes, gather_sequences, gather_transitions, gather_windows,
    item_space, sample_sequences, sample_transitions, to_device,
)
from teamsift.data.summary import compositions, plot_summary, summarize
from teamsift.data.views import AgentTrajectories, AgentTrajectory, Sequences, Transitions, gather_steps

__all__ = [
    "DatasetError", "Dataset", "Labels", "load_dataset", "read_episode_table", "write_dataset", "write_dataset_chunks", "default_agent_ids",
    "FORMAT_NAME", "FORMAT_VERSION", "META_FILE", "EPISODES_FILE", "STEPS_DIR",
    "import_npz", "import_vault", "export_vault", "import_overcooked_human", "NPZ_KEYS", "VAULT_LEAVES",
    "to_device", "sample_transitions", "sample_sequences", "gather_transitions", "gather_sequences",
    "gather_episodes", "gather_windows", "item_space", "Uniform", "DPER", "PJAP", "SAMPLERS", "UNITS", "dataset_fingerprint",
    "Transitions", "AgentTrajectories", "AgentTrajectory", "Sequences", "gather_steps",
    "summarize", "plot_summary", "compositions",
]
