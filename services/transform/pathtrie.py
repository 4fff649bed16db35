"""A trie of JSON source paths, for building one nested parse type from many column paths.

Both the local engine (an Arrow parse schema) and the Spark script generator (a Spark DDL string) need the same
thing: every column's path merged into one nested type, refusing paths that conflict (the same path read as two
types, a path that is both a value and a parent, or a level that is both a list and an object).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Leaf = TypeVar("Leaf")
Out = TypeVar("Out")


class PathTrie(Generic[Leaf]):
    """A node: a leaf type, a struct of named children, or a list whose elements are ``element``."""

    def __init__(self) -> None:
        self.leaf: Leaf | None = None
        self.children: dict[str, PathTrie[Leaf]] = {}
        self.element: PathTrie[Leaf] | None = None

    def add(self, steps: list[str | int], leaf: Leaf) -> bool:
        """Add a path (keys and list indexes) ending in ``leaf``; return False when it conflicts with what is there."""
        if not steps:
            if self.children or self.element is not None or (self.leaf is not None and self.leaf != leaf):
                return False
            self.leaf = leaf
            return True
        if self.leaf is not None:
            return False
        step = steps[0]
        if isinstance(step, int):
            if self.children:
                return False
            self.element = self.element or PathTrie()
            return self.element.add(steps[1:], leaf)
        if self.element is not None:
            return False
        return self.children.setdefault(step, PathTrie()).add(steps[1:], leaf)

    def render(
        self,
        leaf: Callable[[Leaf], Out],
        array: Callable[[Out], Out],
        struct: Callable[[list[tuple[str, Out]]], Out],
    ) -> Out:
        """Fold the trie into a type: ``leaf`` for leaves, ``array`` for lists, ``struct`` for objects."""
        if self.leaf is not None:
            return leaf(self.leaf)
        if self.element is not None:
            return array(self.element.render(leaf, array, struct))
        return struct(self.fields(leaf, array, struct))

    def fields(
        self,
        leaf: Callable[[Leaf], Out],
        array: Callable[[Out], Out],
        struct: Callable[[list[tuple[str, Out]]], Out],
    ) -> list[tuple[str, Out]]:
        """Return the rendered (name, type) of each child, in insertion order."""
        return [(name, child.render(leaf, array, struct)) for name, child in self.children.items()]
