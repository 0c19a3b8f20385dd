"""The error every genesis check raises, apart so that the genesis's parts can share it."""

from __future__ import annotations


class GenesisError(ValueError):
    """An invalid genesis or descriptor; ``field_path`` names the offending value."""

    def __init__(self, problem: str, field_path: str = "") -> None:
        self.problem = problem
        self.field_path = field_path
        super().__init__(f"{field_path}: {problem}" if field_path else problem)

    def under(self, prefix: str) -> GenesisError:
        if not self.field_path:
            path = prefix
        elif self.field_path.startswith("["):
            path = prefix + self.field_path
        else:
            path = f"{prefix}.{self.field_path}"
        return GenesisError(self.problem, path)
