"""The task registry: `make_task(name, **size_params)` builds one of the five environments."""
from __future__ import annotations

from .base import Batch, Task, TaskError, UNKNOWN
from .permutation import PermutationPowering
from .assignments import SequentialAssignments
from .wildcard import WildcardSearch
from .shortest_path import ShortestPath
from .union_find import UnionFind

TASKS: dict[str, type[Task]] = {
    PermutationPowering.name: PermutationPowering,
    SequentialAssignments.name: SequentialAssignments,
    WildcardSearch.name: WildcardSearch,
    ShortestPath.name: ShortestPath,
    UnionFind.name: UnionFind,
}


def register(cls: type[Task]) -> type[Task]:
    """Add a task class to the registry (usable as a decorator by plug-in tasks)."""
    TASKS[cls.name] = cls
    return cls


def make_task(name: str, **params) -> Task:
    """Build a task by name; unknown names and parameters raise TaskError in one line."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    try:
        return TASKS[name](**params)
    except TypeError as e:  # an unknown keyword
        raise TaskError(f"task {name}: {e}") from None


__all__ = ["Batch", "Task", "TaskError", "UNKNOWN", "TASKS", "make_task", "register"]
