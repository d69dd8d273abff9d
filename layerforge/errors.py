"""One exception hierarchy; each class carries the process exit code the CLI maps it to.

Exit codes (DESIGN.md section 2): 0 success, 1 a build/verification/publish failure, 2 bad input,
3 a size limit exceeded. Every message says what failed, why, and what to do next.
"""

from __future__ import annotations


class LayerforgeError(Exception):
    """Base of every error layerforge raises on purpose. Never shown with a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class InputError(LayerforgeError):
    """Bad input from the user: a recipe, a lock, an option. Exit 2."""

    exit_code = 2


class RecipeError(InputError):
    """A recipe that does not load or validate."""


class LockError(InputError):
    """A lock file that does not load, or does not fit the build asked for."""


class TargetError(InputError):
    """An unknown runtime or architecture."""


class BuildError(LayerforgeError):
    """A build step failed for a reason outside the user's input."""


class ResolutionError(BuildError):
    """The resolver could not find wheels that fit the target."""


class DownloadError(BuildError):
    """A wheel could not be fetched, or what came back is not what the lock pinned."""


class HashMismatchError(DownloadError):
    """A downloaded wheel's sha256 differs from the one in the lock."""


class UnsafeArchiveError(BuildError):
    """A wheel or zip holds an entry that would escape the tree or is otherwise hostile."""


class AuditError(BuildError):
    """The static audit found binaries that cannot run on the target."""


class VerificationError(BuildError):
    """The built layer failed to import or its smoke code failed."""


class PublishError(LayerforgeError):
    """An upload or a Lambda API call failed."""


class SizeLimitError(LayerforgeError):
    """A hard size limit (Lambda's or the recipe's budget) is exceeded. Exit 3."""

    exit_code = 3


class LicensePolicyError(BuildError):
    """A distribution's license is denied (or not allowed) by the recipe's policy, or unknown under
    --strict-licenses. Exit 1."""
