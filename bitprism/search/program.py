"""A choice-per-slot integer program: minimise summed damage under summed-cost budgets.

Each slot (a layer's form, a group's keep fraction) takes exactly one of its options. Each term
adds a damage and a cost vector that depend on the options of one or more slots: a layer's
bytes depend on its own form and on how many rows and columns the groups around it keep, which
is a product of decisions. A term over several slots gets a one-hot variable per combination of
their options, tied to each slot's one-hot by marginal equalities; with binary slot variables
that makes the combination variable exactly their product, so the program stays linear and
exact. Solved by ``scipy.optimize.milp`` (HiGHS): nothing here is a solver of our own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array


@dataclass(frozen=True)
class Term:
    """Damage and costs over the joint options of ``slots``.

    ``damage`` has shape ``tuple(size of each slot)``; ``costs`` that shape plus one axis with
    one entry per cost (bytes, latency ...).
    """

    slots: tuple[int, ...]
    damage: np.ndarray
    costs: np.ndarray


@dataclass(frozen=True)
class Program:
    """Slots with ``sizes[s]`` options each, and the terms over them."""

    sizes: tuple[int, ...]
    terms: tuple[Term, ...]
    n_costs: int

    def __post_init__(self) -> None:
        for term in self.terms:
            shape = tuple(self.sizes[s] for s in term.slots)
            if term.damage.shape != shape or term.costs.shape != (*shape, self.n_costs):
                raise ValueError(
                    f"term over slots {term.slots}: damage {term.damage.shape} and costs "
                    f"{term.costs.shape} do not match the slots' sizes {shape}"
                )

    def evaluate(self, picks: Sequence[int]) -> tuple[float, np.ndarray]:
        """Total damage and costs of one option per slot."""
        damage, costs = 0.0, np.zeros(self.n_costs)
        for term in self.terms:
            index = tuple(picks[s] for s in term.slots)
            damage += float(term.damage[index])
            costs += term.costs[index]
        return damage, costs

    def solve(
        self, budgets: Sequence[float | None], minimise: int | None = None
    ) -> tuple[int, ...] | None:
        """The option per slot of least total damage whose total cost ``i`` is at most
        ``budgets[i]`` (None: unbounded); or of least cost ``minimise`` when given (damage
        ignored). None when no choice fits the budgets."""
        if len(budgets) != self.n_costs:
            raise ValueError(f"{len(budgets)} budgets for {self.n_costs} costs")
        offsets = np.cumsum((0, *self.sizes))
        n_slot_vars = int(offsets[-1])
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        lower: list[float] = []
        upper: list[float] = []

        def equality(entries: Sequence[tuple[int, float]], value: float) -> None:
            row = len(lower)
            for col, coeff in entries:
                rows.append(row)
                cols.append(col)
                vals.append(coeff)
            lower.append(value)
            upper.append(value)

        for s, size in enumerate(self.sizes):
            equality([(int(offsets[s]) + o, 1.0) for o in range(size)], 1.0)
        objective: list[float] = [0.0] * n_slot_vars
        cost_rows: list[list[float]] = [[0.0] * n_slot_vars for _ in range(self.n_costs)]
        for term in self.terms:
            shape = term.damage.shape
            if len(term.slots) == 1:  # the slot's own variables carry it
                columns = [int(offsets[term.slots[0]]) + o for o in range(shape[0])]
                combos: list[tuple[int, ...]] = [(o,) for o in range(shape[0])]
            else:
                start = len(objective)
                combos = list(itertools.product(*(range(n) for n in shape)))
                columns = list(range(start, start + len(combos)))
                objective += [0.0] * len(combos)
                for cost_row in cost_rows:
                    cost_row += [0.0] * len(combos)
                equality([(c, 1.0) for c in columns], 1.0)
                for j, slot in enumerate(term.slots):
                    for option in range(shape[j]):
                        tied = [
                            (c, 1.0) for c, k in zip(columns, combos, strict=True) if k[j] == option
                        ]
                        equality([*tied, (int(offsets[slot]) + option, -1.0)], 0.0)
            for column, combo in zip(columns, combos, strict=True):
                objective[column] += float(term.damage[combo])
                for i in range(self.n_costs):
                    cost_rows[i][column] += float(term.costs[combo][i])
        n_vars = len(objective)
        for i, budget in enumerate(budgets):
            if budget is not None:
                row = len(lower)
                for column, coeff in enumerate(cost_rows[i]):
                    if coeff:
                        rows.append(row)
                        cols.append(column)
                        vals.append(coeff)
                lower.append(-math.inf)
                upper.append(float(budget))
        matrix = coo_array((vals, (rows, cols)), shape=(len(lower), n_vars)).tocsr()
        goal = np.array(objective if minimise is None else cost_rows[minimise])
        result = milp(
            goal,
            constraints=LinearConstraint(matrix, lower, upper),
            integrality=np.ones(n_vars),
            bounds=Bounds(0, 1),
        )
        if result.status != 0 or result.x is None:
            return None
        chosen = np.round(result.x[:n_slot_vars]).astype(int)
        return tuple(
            int(np.argmax(chosen[offsets[s] : offsets[s + 1]])) for s in range(len(self.sizes))
        )
