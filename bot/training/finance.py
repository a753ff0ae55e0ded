"""HouseholdFinanceEnv: a couple's money, month by month (the `bologna_coppia` scenario), as a Gymnasium
environment (`HouseholdFinance-v0`).

Each month the household earns its income (less while one partner is out of work), pays its fixed and
variable expenses and, now and then, an emergency (a car, a boiler, a dentist); what is left stays in cash.
Cash earns a little interest; below zero it is an overdraft that costs dear. Investments earn more on average
but move every month, and sometimes crash; selling them costs a fee.

**The action** (Discrete(7)) is the month's transfer between cash and investments, as a share of the
household's normal monthly surplus (income less average expenses): `SHARES = (-4, -1, 0, 0.5, 1, 2, 4)`;
negative sells investments into cash. A purchase is limited to the cash there is, a sale to what is
invested. Holding 0.5 every month is the household's standing order, the fixed rule the bench compares with.

**The goal** is a savings plan set from outside (`set_goal`, or `reset(options={"goal": i})`), one of `GOALS`:
a cash buffer of `buffer` months of expenses, and `share` of the money above the buffer invested. Its target
invested amount is `share * max(0, cash + invested - buffer * expenses)`. The observation carries the goal and
the gap to it, so one agent can act toward any goal (the Executor of bot/training/hierarchy.py).

**The reward** is what the month's money decisions earned, in months of expenses: investment gains or losses,
interest on cash, less overdraft interest, sale fees, and a distress penalty for each month that ends in
overdraft (`distress + distress_per_month * min(overdraft / expenses, distress_cap)`). Income and expenses
are not in it: no decision changes them, and leaving them out keeps the learning signal clear.

Per month, `info` says `adherence`, the month's closeness to the goal: `max(0, 1 - |invested - target| /
(adherence_band * expenses))`, 1 on target and 0 at `adherence_band` months of expenses away or more. Over an
episode (see `EpisodeFigures`): **goal_adherence** is the mean of `adherence` over its months, and
**stability** the share of its months that end with no overdraft (cash >= 0); both lie in [0, 1].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

ENV_ID = "HouseholdFinance-v0"
SHARES: tuple[float, ...] = (-4.0, -1.0, 0.0, 0.5, 1.0, 2.0, 4.0)
FIXED_RULE_ACTION = SHARES.index(0.5)  # the standing order: half the normal surplus, every month


class Goal(NamedTuple):
    buffer: float  # months of expenses kept in cash
    share: float  # of the money above the buffer, the share invested

    @property
    def label(self) -> str:
        months = "month" if self.buffer == 1 else "months"
        return f"buffer {self.buffer:g} {months}, invest {self.share:.0%} of the rest"


GOALS: tuple[Goal, ...] = tuple(Goal(b, s) for b in (1.0, 3.0, 6.0) for s in (0.5, 1.0))
DEFAULT_GOAL = GOALS.index(Goal(3.0, 0.5))
OBSERVATIONS = 9
BOUND = 100.0  # observations are clipped to ±BOUND (months of expenses, shares, flags)


@dataclass(frozen=True)
class Household:
    """The scenario's numbers: euros a month unless said otherwise (the defaults: a couple in Bologna)."""

    horizon: int = 60  # months an episode lasts
    income: float = 3900.0  # both salaries, net
    unemployed_income: float = 2150.0  # while one partner is out of work
    job_loss_probability: float = 0.006  # a month's chance that a spell of unemployment starts
    job_loss_months: tuple[int, int] = (3, 8)  # a spell's length, uniform within
    fixed_expenses: float = 1650.0  # rent, utilities, insurance, transport
    variable_expenses: float = 1150.0  # the mean; each month's is lognormal around it
    variable_spread: float = 0.15
    emergency_probability: float = 0.05
    emergency_months: tuple[float, float] = (0.5, 2.5)  # an emergency's cost in months of expenses, uniform
    start_cash_months: tuple[float, float] = (0.5, 2.0)
    start_invested_months: tuple[float, float] = (0.0, 4.0)
    market_return: float = 0.007  # mean monthly return outside crashes
    market_volatility: float = 0.04
    crash_probability: float = 0.02
    crash_loss: float = 0.12  # what a crash month takes on top
    cash_rate: float = 0.001  # monthly
    overdraft_rate: float = 0.012  # monthly
    sale_fee: float = 0.01
    distress: float = 1.0  # reward lost for each month that ends in overdraft ...
    distress_per_month: float = 0.5  # ... plus this per month of expenses overdrawn ...
    distress_cap: float = 3.0  # ... counting at most this many months
    adherence_band: float = 3.0  # months of expenses off the goal at which adherence reaches 0

    @property
    def expenses(self) -> float:
        """A normal month's expenses: the unit of the observation and the reward."""
        return self.fixed_expenses + self.variable_expenses

    @property
    def surplus(self) -> float:
        """A normal month's surplus: the unit of the action."""
        return self.income - self.expenses

    def check(self) -> Household:
        """Raise ValueError naming the first number that makes no household."""
        positive = ("horizon", "income", "fixed_expenses", "variable_expenses", "adherence_band")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"environment.{name} must be > 0, got {getattr(self, name)!r}")
        if self.surplus <= 0:
            raise ValueError(f"environment: income ({self.income}) must exceed the expenses ({self.expenses})")
        for name in ("job_loss_probability", "emergency_probability", "crash_probability", "sale_fee"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"environment.{name} must be within 0..1, got {getattr(self, name)!r}")
        for name in ("job_loss_months", "emergency_months", "start_cash_months", "start_invested_months"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"environment.{name} must be [low, high] with 0 <= low <= high, got {[low, high]}")
        return self


def household(values: dict[str, Any] | None) -> Household:
    """A Household from a scenario's `environment:` mapping; an unknown name is a ValueError naming it."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(Household)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"environment: unknown setting {unknown[0]!r}; expected one of {', '.join(sorted(names))}")
    for name in ("job_loss_months", "emergency_months", "start_cash_months", "start_invested_months"):
        if name in values:
            values[name] = tuple(values[name])
    return Household(**values).check()


class HouseholdFinanceEnv(gym.Env[np.ndarray, int]):
    """See the module docstring. Observation (9 values, money in months of expenses): cash, invested, the
    share of the horizon gone, employed (1/0), an emergency this month (1/0), the goal's buffer / 6, the goal's
    share, the gap to the goal's invested target (positive: invest more), and the month's market return x 10."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, household: Household | None = None, **settings: Any) -> None:
        self.household = household if household is not None else Household(**settings).check()
        self.observation_space = gym.spaces.Box(-BOUND, BOUND, shape=(OBSERVATIONS,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(SHARES))  # type: ignore[assignment]
        self.goal = GOALS[DEFAULT_GOAL]
        self.month = 0
        self.cash = self.invested = 0.0
        self.unemployed_for = 0  # months of unemployment left
        self.emergency = False
        self.market = 0.0

    # -- the goal -----------------------------------------------------------------------------------------

    def set_goal(self, index: int) -> np.ndarray:
        """The plan the household follows from now on (an index into GOALS); returns the new observation."""
        if not 0 <= int(index) < len(GOALS):
            raise ValueError(f"goal must be an index within 0..{len(GOALS) - 1}, got {index!r}")
        self.goal = GOALS[int(index)]
        return self._observe()

    def target_invested(self) -> float:
        """The goal's invested amount for the money there is now."""
        h = self.household
        return self.goal.share * max(0.0, self.cash + self.invested - self.goal.buffer * h.expenses)

    def adherence(self) -> float:
        gap = abs(self.invested - self.target_invested()) / self.household.expenses
        return max(0.0, 1.0 - gap / self.household.adherence_band)

    # -- Gymnasium --------------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        h, rng = self.household, self.np_random
        self.set_goal((options or {}).get("goal", DEFAULT_GOAL))
        self.month = 0
        self.cash = float(rng.uniform(*h.start_cash_months)) * h.expenses
        self.invested = float(rng.uniform(*h.start_invested_months)) * h.expenses
        self.unemployed_for = 0
        self.emergency = False
        self.market = 0.0
        return self._observe(), self._info(0.0)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be within 0..{len(SHARES) - 1}, got {action!r}")
        h, rng = self.household, self.np_random
        fee = self._transfer(SHARES[int(action)] * h.surplus)
        # The month: income, expenses, perhaps an emergency or a lost job; then the market and the interest.
        if self.unemployed_for == 0 and rng.random() < h.job_loss_probability:
            self.unemployed_for = int(rng.integers(h.job_loss_months[0], h.job_loss_months[1] + 1))
        income = h.unemployed_income if self.unemployed_for > 0 else h.income
        self.unemployed_for = max(0, self.unemployed_for - 1)
        spread = h.variable_spread
        variable = h.variable_expenses * float(rng.lognormal(-spread * spread / 2, spread))
        self.emergency = bool(rng.random() < h.emergency_probability)
        shock = float(rng.uniform(*h.emergency_months)) * h.expenses if self.emergency else 0.0
        self.cash += income - h.fixed_expenses - variable - shock
        self.market = float(rng.normal(h.market_return, h.market_volatility))
        if rng.random() < h.crash_probability:
            self.market -= h.crash_loss
        gains = self.invested * self.market
        self.invested += gains
        interest = self.cash * (h.cash_rate if self.cash >= 0 else h.overdraft_rate)
        self.cash += interest
        overdraft = max(0.0, -self.cash)
        overdrawn = min(overdraft / h.expenses, h.distress_cap)
        distress = h.distress + h.distress_per_month * overdrawn if overdraft > 0 else 0.0
        reward = (gains + interest - fee) / h.expenses - distress
        self.month += 1
        # The plan's horizon is the end of the task (the month is observed), not a cut: terminated.
        return self._observe(), float(reward), self.month >= h.horizon, False, self._info(distress)

    def _transfer(self, amount: float) -> float:
        """Move `amount` from cash into investments (negative: sell), within what there is; returns the fee."""
        if amount >= 0:
            moved = min(amount, max(0.0, self.cash))
            self.cash -= moved
            self.invested += moved
            return 0.0
        sold = min(-amount, self.invested)
        fee = sold * self.household.sale_fee
        self.invested -= sold
        self.cash += sold - fee
        return fee

    def _observe(self) -> np.ndarray:
        e = self.household.expenses
        values = (
            self.cash / e,
            self.invested / e,
            self.month / self.household.horizon,
            0.0 if self.unemployed_for > 0 else 1.0,
            1.0 if self.emergency else 0.0,
            self.goal.buffer / 6.0,
            self.goal.share,
            (self.target_invested() - self.invested) / e,
            self.market * 10.0,
        )
        return np.clip(np.array(values, dtype=np.float32), -BOUND, BOUND)

    def _info(self, distress: float) -> dict[str, Any]:
        return {
            "cash": self.cash,
            "invested": self.invested,
            "adherence": self.adherence(),
            "solvent": self.cash >= 0.0,
            "distress": distress,
            "employed": self.unemployed_for == 0,
        }


@dataclass
class EpisodeFigures:
    """One episode's figures, gathered month by month from `info`: its reward; the final cash and invested
    amounts (euros); stability, the share of its months that end with no overdraft; goal_adherence, the mean
    of the months' adherence to the goal in force. The last two lie in [0, 1]."""

    reward: float = 0.0
    months: int = 0
    solvent_months: int = 0
    adherence_sum: float = 0.0
    cash: float = 0.0
    invested: float = 0.0

    def add(self, reward: float, info: dict[str, Any]) -> None:
        self.reward += reward
        self.months += 1
        self.solvent_months += bool(info["solvent"])
        self.adherence_sum += float(info["adherence"])
        self.cash, self.invested = float(info["cash"]), float(info["invested"])

    @property
    def stability(self) -> float:
        return self.solvent_months / self.months if self.months else 0.0

    @property
    def goal_adherence(self) -> float:
        return self.adherence_sum / self.months if self.months else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "reward": self.reward,
            "length": float(self.months),
            "cash": self.cash,
            "invested": self.invested,
            "stability": self.stability,
            "goal_adherence": self.goal_adherence,
        }
