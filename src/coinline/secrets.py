"""Secret values that never print. Use `.reveal()` only where the value leaves for the provider."""

from __future__ import annotations


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # pickling would carry the value into artifacts
        raise TypeError("Secret values cannot be pickled")


def redact(text: str, secrets: list[Secret] | tuple[Secret, ...]) -> str:
    """Replace every secret's value in `text` (for messages built from foreign text, e.g. URLs)."""
    for s in secrets:
        if s:
            text = text.replace(s.reveal(), "**********")
    return text
