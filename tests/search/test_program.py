"""The integer program against brute force on instances small enough to enumerate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bitprism.search.program import Program, Term


def _instance(seed: int) -> Program:
    """Four slots; damage on single slots, costs over one, two and three slots (as a layer's
    bytes depend on its form and on the keep of the groups around it)."""
    rng = np.random.default_rng(seed)
    sizes = (3, 2, 4, 2)
    terms = [
        Term((s,), rng.uniform(0, 10, (n,)), rng.uniform(0, 5, (n, 2))) for s, n in enumerate(sizes)
    ]
    terms.append(Term((0, 1), rng.uniform(0, 3, (3, 2)), rng.uniform(0, 8, (3, 2, 2))))
    terms.append(Term((2, 1, 3), np.zeros((4, 2, 2)), rng.uniform(0, 8, (4, 2, 2, 2))))
    return Program(sizes, tuple(terms), n_costs=2)


@pytest.mark.parametrize("seed", range(8))
def test_the_program_finds_the_brute_force_optimum(seed: int) -> None:
    program = _instance(seed)
    combos = list(itertools.product(*(range(n) for n in program.sizes)))
    scored = [(program.evaluate(c), c) for c in combos]
    all_costs = np.array([costs for (_, costs), _ in scored])
    # budgets from tight to loose, on both costs at once
    for q in (0.1, 0.3, 0.6, 1.0):
        budgets = [float(np.quantile(all_costs[:, i], q)) for i in range(2)]
        feasible = [(d, c) for (d, costs), c in scored if np.all(costs <= np.array(budgets) + 1e-9)]
        picks = program.solve(budgets)
        if not feasible:
            assert picks is None
            continue
        assert picks is not None
        damage, costs = program.evaluate(picks)
        assert np.all(costs <= np.array(budgets) + 1e-6)
        assert damage == pytest.approx(min(d for d, _ in feasible), abs=1e-6)


def test_minimising_a_cost_and_refusing_impossible_budgets() -> None:
    program = _instance(0)
    combos = list(itertools.product(*(range(n) for n in program.sizes)))
    cheapest = min(program.evaluate(c)[1][0] for c in combos)
    picks = program.solve([None, None], minimise=0)
    assert picks is not None and program.evaluate(picks)[1][0] == pytest.approx(cheapest)
    assert program.solve([cheapest - 1.0, None]) is None
    with pytest.raises(ValueError, match="budgets"):
        program.solve([1.0])
    with pytest.raises(ValueError, match="do not match"):
        Program((2,), (Term((0,), np.zeros(3), np.zeros((3, 1))),), n_costs=1)
