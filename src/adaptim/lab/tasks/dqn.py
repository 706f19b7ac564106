"""Deep Q-learning on CartPole, with the cart-pole dynamics written in torch (the "deep
reinforcement learning" use the tutorials name for RMSProp and Adam)."""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn

from adaptim.lab.probes import state_bytes
from adaptim.lab.tasks._base import RunOutput, Task, seeded_generator

__all__ = ["MAX_EPISODE_STEPS", "SOLVED_RETURN", "CartPole", "dqn_task", "evaluate_greedy"]

SOLVED_RETURN = 195.0     # CartPole-v0's "solved" threshold (mean return)
MAX_EPISODE_STEPS = 500   # CartPole-v1's episode cap


class CartPole:
    """A batch of cart-poles following Barto, Sutton & Anderson (1983) exactly as gym's
    CartPole-v1 integrates them (explicit Euler, ``tau`` = 0.02 s).

    State per environment: (x, x_dot, theta, theta_dot). Action 1 pushes right with ``force``
    newtons, 0 pushes left. Reward 1 for every step taken; an episode terminates when
    |theta| > 12° or |x| > 2.4 and is truncated after ``MAX_EPISODE_STEPS`` steps.
    """

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masscart + masspole
    length = 0.5                      # half the pole's length
    polemass_length = masspole * length
    force = 10.0
    tau = 0.02
    theta_limit = 12 * 2 * math.pi / 360
    x_limit = 2.4

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator
        self.state = self._initial(n)
        self.steps = torch.zeros(n, dtype=torch.long)

    def _initial(self, n: int) -> torch.Tensor:
        return torch.rand(n, 4, generator=self.generator) * 0.1 - 0.05

    @classmethod
    def dynamics(cls, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One Euler step of the equations of motion (the pole's angular acceleration first,
        then the cart's), for a batch of states (n × 4) and actions (n,)."""
        x, x_dot, theta, theta_dot = state.unbind(dim=1)
        force = torch.where(action == 1, cls.force, -cls.force)
        cos, sin = torch.cos(theta), torch.sin(theta)
        temp = (force + cls.polemass_length * theta_dot ** 2 * sin) / cls.total_mass
        theta_acc = (cls.gravity * sin - cos * temp) / (
            cls.length * (4.0 / 3.0 - cls.masspole * cos ** 2 / cls.total_mass))
        x_acc = temp - cls.polemass_length * theta_acc * cos / cls.total_mass
        return torch.stack([x + cls.tau * x_dot, x_dot + cls.tau * x_acc,
                            theta + cls.tau * theta_dot, theta_dot + cls.tau * theta_acc], dim=1)

    @classmethod
    def terminated(cls, state: torch.Tensor) -> torch.Tensor:
        return (state[:, 0].abs() > cls.x_limit) | (state[:, 2].abs() > cls.theta_limit)

    def step(self, action: torch.Tensor):
        """Advance every environment; returns (next_state, terminated, truncated). Finished
        environments are reset, so ``self.state`` afterwards holds the next observations while
        ``next_state`` holds the states the transitions ended in."""
        next_state = self.dynamics(self.state, action)
        self.steps += 1
        terminated = self.terminated(next_state)
        truncated = ~terminated & (self.steps >= MAX_EPISODE_STEPS)
        done = terminated | truncated
        self.state = next_state.clone()
        if done.any():
            self.state[done] = self._initial(int(done.sum()))
            self.steps[done] = 0
        return next_state, terminated, truncated


HIDDEN = 128
N_ENVS = 4
BATCH = 64
GAMMA = 0.99
BUFFER = 20_000
WARMUP = 500           # random transitions in the buffer before the first update
TARGET_EVERY = 250     # updates between copies of the online network into the target network
EPS_END = 0.05
EPS_FRACTION = 0.25    # share of the run over which epsilon falls linearly from 1 to EPS_END
EVAL_EPISODES = 10


@torch.no_grad()
def evaluate_greedy(q_net: nn.Module, episodes: int, generator: torch.Generator) -> list[float]:
    """Returns of ``episodes`` greedy episodes run side by side (each up to
    ``MAX_EPISODE_STEPS``)."""
    env = CartPole(episodes, generator)
    returns = torch.zeros(episodes)
    alive = torch.ones(episodes, dtype=torch.bool)
    state = env.state
    for _ in range(MAX_EPISODE_STEPS):
        action = q_net(state).argmax(dim=1)
        state = CartPole.dynamics(state, action)
        returns += alive.float()
        alive &= ~CartPole.terminated(state)
        if not alive.any():
            break
    return returns.tolist()


def _run_dqn(variant, make_optimizer, seed, steps, device) -> RunOutput:
    """Double DQN (Mnih et al. 2015; van Hasselt et al. 2016): ε-greedy acting in ``N_ENVS``
    cart-poles, a replay buffer, one update of a mini-batch of ``BATCH`` transitions per acting
    step with the Huber loss on the TD error against a target network copied every
    ``TARGET_EVERY`` updates, which values the online network's choice of next action.
    Truncation at the episode cap bootstraps; only termination cuts the return. ``steps``
    counts updates. Runs on the CPU whatever ``device`` says: the networks are too small for an
    accelerator to help."""
    torch.manual_seed(seed)
    q_net = nn.Sequential(nn.Linear(4, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, 2))
    target_net = copy.deepcopy(q_net)
    params = list(q_net.parameters())
    optimizer = make_optimizer(params)
    gen = seeded_generator(seed, salt=40)
    env = CartPole(N_ENVS, gen)

    states = torch.zeros(BUFFER, 4)
    actions = torch.zeros(BUFFER, dtype=torch.long)
    next_states = torch.zeros(BUFFER, 4)
    terminals = torch.zeros(BUFFER)
    size = position = 0

    def act(epsilon: float) -> None:
        nonlocal size, position
        with torch.no_grad():
            greedy = q_net(env.state).argmax(dim=1)
        explore = torch.rand(N_ENVS, generator=gen) < epsilon
        action = torch.where(explore, torch.randint(2, (N_ENVS,), generator=gen), greedy)
        state = env.state
        next_state, terminated, _ = env.step(action)
        rows = (torch.arange(N_ENVS) + position) % BUFFER
        states[rows], actions[rows], next_states[rows] = state, action, next_state
        terminals[rows] = terminated.float()
        position = (position + N_ENVS) % BUFFER
        size = min(size + N_ENVS, BUFFER)

    for _ in range(WARMUP // N_ENVS):
        act(1.0)

    out = RunOutput(n_params=sum(p.numel() for p in params))
    losses: list[float] = []
    episode_returns: list[float] = []
    running = torch.zeros(N_ENVS)
    eval_every = max(steps // 5, 1)
    eval_steps: list[int] = []
    eval_returns: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        epsilon = max(EPS_END, 1.0 - (1.0 - EPS_END) * step / max(EPS_FRACTION * steps, 1))
        running += 1
        act(epsilon)
        finished = env.steps == 0  # episodes that ended this step (the environment reset them)
        episode_returns.extend(running[finished].tolist())
        running[finished] = 0

        index = torch.randint(size, (BATCH,), generator=gen)
        with torch.no_grad():
            # Double DQN: the online network picks the next action, the target network values it.
            best = q_net(next_states[index]).argmax(dim=1, keepdim=True)
            best_next = target_net(next_states[index]).gather(1, best).squeeze(1)
            target = 1.0 + GAMMA * (1.0 - terminals[index]) * best_next
        optimizer.zero_grad(set_to_none=True)
        q = q_net(states[index]).gather(1, actions[index, None]).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, target)
        value = float(loss.detach())
        if not math.isfinite(value):
            out.diverged = True
            losses.extend([math.nan] * (steps - step))
            out.seconds.extend([out.seconds[-1] if out.seconds else 0.0] * (steps - step))
            break
        loss.backward()
        optimizer.step()
        losses.append(value)
        out.seconds.append(time.perf_counter() - start)
        if (step + 1) % TARGET_EVERY == 0:
            target_net.load_state_dict(q_net.state_dict())
        if (step + 1) % eval_every == 0 and step + 1 < steps:
            eval_steps.append(step + 1)
            eval_returns.append(sum(evaluate_greedy(q_net, 5, seeded_generator(seed, salt=42)))
                                / 5)

    out.curves["loss"] = losses
    out.state_bytes = state_bytes(optimizer)
    if out.diverged:
        final = 0.0
    else:
        final_returns = evaluate_greedy(q_net, EVAL_EPISODES,
                                        seeded_generator(10_000 + seed, salt=41))
        final = sum(final_returns) / EVAL_EPISODES
    eval_steps.append(steps)
    eval_returns.append(final)
    out.sparse["eval_return"] = (eval_steps, eval_returns)
    out.scalars.update(
        eval_return=final, score=final, solved=float(final >= SOLVED_RETURN),
        best_eval_return=max(eval_returns),
        train_episode_return=(sum(episode_returns[-20:]) / len(episode_returns[-20:])
                              if episode_returns else 0.0),
        selection_loss=1.0 - final / MAX_EPISODE_STEPS)
    return out


dqn_task = Task(
    name="dqn",
    summary="DQN on CartPole (dynamics in torch): greedy return",
    description=("Double deep Q-learning on the cart-pole of Barto, Sutton & Anderson (1983), "
                 "integrated as gym's CartPole-v1 does (Euler, 0.02 s; the episode ends past "
                 f"12° or 2.4 m, or after {MAX_EPISODE_STEPS} steps). A {HIDDEN}-{HIDDEN} "
                 f"Q-network acts ε-greedily in {N_ENVS} cart-poles (ε falls from 1 to "
                 f"{EPS_END} over the first {EPS_FRACTION:.0%} of the run), stores transitions "
                 f"in a replay buffer of {BUFFER:,}, and takes one Huber-loss update on "
                 f"{BATCH} replayed transitions per acting step against a target network "
                 f"copied every {TARGET_EVERY} updates, which values the online network's "
                 f"choice of next action (γ = {GAMMA}). The score is the mean "
                 f"return of {EVAL_EPISODES} greedy episodes after training; "
                 f"{SOLVED_RETURN:g} counts as solved."),
    variants=("cartpole",),
    run=_run_dqn,
    steps=4000,
    fast_steps=400,
    target={"cartpole": 0.05},
    # Q-learning's regression targets move; a third of each optimizer's usual rate is stable.
    lr_scale={name: 0.316 for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop",
                                       "adam", "adamw")},
    loss_name="TD loss (Huber)",
    test_metric="eval_return",
)
