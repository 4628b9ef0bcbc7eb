"""teamsift: learn good multi-agent behaviour from multi-agent data of mixed quality."""

__version__ = "0.1.0"
