"""The lab's typical-use tasks: a tiny Transformer, a GAN, DQN on CartPole and a speech-like
proxy. Their pieces (data, dynamics, metrics) are checked against hand-computed values, and a
short run of each must learn something."""

from __future__ import annotations

import math

import pytest
import torch

import adaptim
from adaptim.lab.tasks.dqn import (
    MAX_EPISODE_STEPS,
    CartPole,
    dqn_task,
    evaluate_greedy,
    evaluation_steps,
    init_weights,
    q_values,
)
from adaptim.lab.tasks.gan import (
    MODE_STD,
    MODES,
    gan_task,
    mode_coverage,
    ring_modes,
    ring_samples,
)
from adaptim.lab.tasks.speech import FRAMES, N_BANDS, WORDS, speech_batch, speech_task
from adaptim.lab.tasks.transformer import (
    COPY_LENGTH,
    SEPARATOR,
    VOCAB,
    copy_batch,
    transformer_task,
    zipf_probabilities,
)


def _adam(lr):
    return lambda params: adaptim.create("adam", params, lr=lr)


# --- transformer -------------------------------------------------------------------------

def test_zipf_probabilities():
    p = zipf_probabilities()
    assert len(p) == VOCAB - 1
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(p[0] / p[1]) == pytest.approx(2.0, rel=1e-5)   # 1/1 : 1/2
    assert float(p[0] / p[9]) == pytest.approx(10.0, rel=1e-5)  # 1/1 : 1/10


def test_copy_batch_structure_and_token_frequencies():
    tokens = copy_batch(4000, torch.Generator().manual_seed(0))
    assert tokens.shape == (4000, 2 * COPY_LENGTH + 1)
    assert (tokens[:, COPY_LENGTH] == SEPARATOR).all()
    assert torch.equal(tokens[:, :COPY_LENGTH], tokens[:, COPY_LENGTH + 1:])
    content = tokens[:, :COPY_LENGTH]
    assert int(content.min()) >= 1 and int(content.max()) <= VOCAB - 1
    share = torch.bincount(content.flatten(), minlength=VOCAB)[1:].float() / content.numel()
    assert torch.allclose(share, zipf_probabilities(), atol=0.01)
    # same generator seed, same data (every optimizer sees the same sequences)
    assert torch.equal(copy_batch(8, torch.Generator().manual_seed(3)),
                       copy_batch(8, torch.Generator().manual_seed(3)))


def test_transformer_short_run_learns_to_copy():
    out = transformer_task.run("copy", _adam(3e-3), 0, 100, "cpu")
    s = out.scalars
    assert not out.diverged and len(out.curves["loss"]) == 100
    assert s["initial_copy_accuracy"] < 0.1
    assert s["copy_accuracy"] > s["unigram_accuracy"] + 0.2
    assert s["score"] == s["copy_accuracy"] and s["selection_loss"] == s["test_loss"]
    assert out.curves["loss"][-1] < 0.5 * out.curves["loss"][0]


# --- GAN -----------------------------------------------------------------------------------

def test_mode_coverage_on_constructed_samples():
    centres = ring_modes()
    assert centres.shape == (MODES, 2)
    assert torch.allclose(centres.norm(dim=1), torch.full((MODES,), 2.0))
    gen = torch.Generator().manual_seed(0)
    # The true distribution: every mode, and P(|N(0, σ²I₂)| ≤ 3σ) = 1 - exp(-4.5) = 0.989 good.
    modes, quality = mode_coverage(ring_samples(4000, gen))
    assert modes == MODES and quality == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    # Collapse onto one mode: one mode, all samples good.
    collapsed = centres[3] + MODE_STD * 0.5 * torch.randn(1000, 2, generator=gen)
    assert mode_coverage(collapsed) == (1, 1.0)
    # Half the modes, exactly on their centres.
    assert mode_coverage(centres[::2].repeat(100, 1)) == (MODES // 2, 1.0)
    # The origin is far from every mode: nothing covered, nothing good.
    assert mode_coverage(torch.zeros(500, 2)) == (0, 0.0)
    # A mode holding less than a quarter of its fair share (1/8) is not covered.
    seven = centres[:7].repeat(100, 1)
    few = torch.cat([seven, centres[7:].repeat(20, 1)])        # 20 of 720 < 0.25·720/8 = 22.5
    enough = torch.cat([seven, centres[7:].repeat(25, 1)])     # 25 of 725 ≥ 22.7
    assert mode_coverage(few)[0] == 7 and mode_coverage(enough)[0] == 8
    # Non-finite samples are low quality.
    broken = torch.cat([centres.repeat(10, 1), torch.full((80, 2), math.nan)])
    assert mode_coverage(broken) == (MODES, 0.5)


def test_gan_beta1_variant_sets_dcgan_beta1_and_run_records_its_numbers():
    made = []

    def make(params):
        made.append(adaptim.create("adam", params, lr=1e-3))
        return made[-1]

    out = gan_task.run("beta1-0.5", make, 0, 60, "cpu")
    assert len(made) == 2 and all(g["betas"] == (0.5, 0.999) for o in made for g in o.param_groups)
    made.clear()
    gan_task.run("default", make, 0, 5, "cpu")
    assert all(g["betas"] == (0.9, 0.999) for o in made for g in o.param_groups)
    assert len(out.curves["loss"]) == 60 and len(out.curves["generator_loss"]) == 60
    s = out.scalars
    assert 0 <= s["modes_covered"] <= MODES and s["score"] == s["modes_covered"] / MODES
    assert s["selection_loss"] == pytest.approx(MODES - s["modes_covered"]
                                                + 1 - s["high_quality_share"])


def test_gan_short_run_moves_samples_onto_the_ring():
    out = gan_task.run("default", lambda p: adaptim.create("rmsprop", p, lr=3e-3), 0, 500, "cpu")
    assert not out.diverged
    s = out.scalars
    assert s["initial_modes_covered"] == 0 and s["initial_high_quality_share"] < 0.01
    assert s["high_quality_share"] > 0.1


# --- DQN / CartPole -----------------------------------------------------------------------

def _reference_step(state, action):
    """gym's CartPole-v1 step, transcribed with Python floats."""
    x, x_dot, theta, theta_dot = state
    force = 10.0 if action == 1 else -10.0
    cos, sin = math.cos(theta), math.sin(theta)
    temp = (force + 0.05 * theta_dot ** 2 * sin) / 1.1
    theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos ** 2 / 1.1))
    x_acc = temp - 0.05 * theta_acc * cos / 1.1
    return [x + 0.02 * x_dot, x_dot + 0.02 * x_acc, theta + 0.02 * theta_dot,
            theta_dot + 0.02 * theta_acc]


def test_cartpole_dynamics_match_hand_computed_steps():
    # From rest, pushing right: x_acc = 9.7561, theta_acc = -14.6341 (worked by hand).
    nxt = CartPole.dynamics(torch.zeros(1, 4), torch.tensor([1]))[0].tolist()
    assert nxt == pytest.approx([0.0, 0.02 * 9.75610, 0.0, 0.02 * -14.63415], abs=1e-5)
    states = torch.tensor([[0.1, -0.2, 0.05, 0.3], [-1.0, 0.5, -0.15, -1.2], [2.0, 1.0, 0.2, 2.0]])
    actions = torch.tensor([0, 1, 0])
    got = CartPole.dynamics(states, actions)
    for row in range(3):
        assert got[row].tolist() == pytest.approx(
            _reference_step(states[row].tolist(), int(actions[row])), abs=1e-6)


def test_cartpole_termination_truncation_and_reset():
    limit = 12 * 2 * math.pi / 360
    states = torch.tensor([[0.0, 0, limit * 0.99, 0], [0, 0, limit * 1.01, 0],
                           [2.39, 0, 0, 0], [-2.41, 0, 0, 0]])
    assert CartPole.terminated(states).tolist() == [False, True, False, True]
    env = CartPole(2, torch.Generator().manual_seed(0))
    assert env.state.abs().max() <= 0.05
    env.state = torch.zeros(2, 4)
    env.steps = torch.tensor([MAX_EPISODE_STEPS - 1, 3])
    nxt, terminated, truncated = env.step(torch.tensor([1, 0]))
    assert truncated.tolist() == [True, False] and terminated.tolist() == [False, False]
    assert env.steps.tolist() == [0, 4]
    assert not torch.equal(env.state[0], nxt[0]) and torch.equal(env.state[1], nxt[1])


def test_vectorized_cartpoles_follow_single_environments_step_for_step():
    """Sixteen cart-poles stepped together as one tensor equal sixteen single environments
    stepped one at a time with gym's equations (Python floats), through terminations, the
    episode cap and the resets that follow them."""
    n, cap_hits = 16, 0
    env = CartPole(n, torch.Generator().manual_seed(3))
    singles = [env.state[i].tolist() for i in range(n)]
    counts = [0] * n
    policy = torch.Generator().manual_seed(4)
    episodes_ended = 0
    for t in range(700):
        if t == 300:  # send two environments to the episode cap on their next step
            env.steps[:2] = MAX_EPISODE_STEPS - 1
            counts[:2] = [MAX_EPISODE_STEPS - 1] * 2
        action = torch.randint(2, (n,), generator=policy)
        nxt, terminated, truncated = env.step(action)
        for i in range(n):
            expected = _reference_step(singles[i], int(action[i]))
            assert nxt[i].tolist() == pytest.approx(expected, abs=1e-4), (t, i)
            x, theta = expected[0], expected[2]
            ended = abs(x) > 2.4 or abs(theta) > 12 * 2 * math.pi / 360
            counts[i] += 1
            assert bool(terminated[i]) == ended, (t, i)
            assert bool(truncated[i]) == (not ended and counts[i] >= MAX_EPISODE_STEPS), (t, i)
            if ended or counts[i] >= MAX_EPISODE_STEPS:
                episodes_ended += 1
                cap_hits += not ended
                # reset: a fresh start state in ±0.05, step count back to 0
                assert env.steps[i] == 0 and env.state[i].abs().max() <= 0.05
                singles[i], counts[i] = env.state[i].tolist(), 0
            else:
                assert env.steps[i] == counts[i]
                singles[i] = nxt[i].tolist()  # the float32 state the batch carries on
                assert torch.equal(env.state[i], nxt[i])
    assert episodes_ended > 100 and cap_hits == 2


def test_greedy_evaluation_of_fixed_policies():
    class Constant(torch.nn.Module):
        def __init__(self, action):
            super().__init__()
            self.action = action

        def forward(self, state):
            q = torch.zeros(len(state), 2)
            q[:, self.action] = 1.0
            return q

    # Always pushing one way topples the pole in about 9-10 steps from near rest.
    returns = evaluate_greedy(Constant(1), 20, torch.Generator().manual_seed(0))
    assert len(returns) == 20 and all(8 <= r <= 11 for r in returns)

    # A hand-written controller (push towards the side the pole leans to, with its angular
    # velocity) balances to the episode cap.
    class Lean(torch.nn.Module):
        def forward(self, state):
            right = (state[:, 2] + 0.5 * state[:, 3] > 0).float()
            return torch.stack([1 - right, right], dim=1)

    returns = evaluate_greedy(Lean(), 5, torch.Generator().manual_seed(1))
    assert min(returns) >= 100 and max(returns) <= MAX_EPISODE_STEPS


def test_q_network_function_matches_nn_linear_and_runs_stacked_checkpoints():
    torch.manual_seed(0)
    weights = init_weights()
    net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 2))
    with torch.no_grad():
        for p, w in zip(net.parameters(), weights):
            p.copy_(w)
    states = torch.randn(10, 4)
    assert torch.allclose(q_values(weights, states), net(states), atol=1e-6)
    # three networks at once (one per row of the stack) equal each run alone
    others = [[w.detach() + 0.1 * k for w in weights] for k in range(3)]
    stacked = [torch.stack(ws) for ws in zip(*others)]
    batch = torch.randn(3, 7, 4)
    got = q_values(stacked, batch)
    for k in range(3):
        assert torch.allclose(got[k], q_values(others[k], batch[k]), atol=1e-5)


def test_dqn_short_run_is_seeded_and_records_its_numbers():
    first = dqn_task.run("cartpole", _adam(1e-3), 0, 60, "cpu")
    second = dqn_task.run("cartpole", _adam(1e-3), 0, 60, "cpu")
    assert first.curves["loss"] == second.curves["loss"]
    assert first.scalars == second.scalars
    s = first.scalars
    assert not first.diverged and len(first.curves["loss"]) == 60
    assert 8 <= s["eval_return"] <= MAX_EPISODE_STEPS and s["score"] == s["eval_return"]
    assert s["solved"] == float(s["eval_return"] >= 195)
    assert s["selection_loss"] == pytest.approx(1 - s["eval_return"] / MAX_EPISODE_STEPS)
    # five checkpoints over the last 40 % of the 60 updates, the last at the end
    assert first.sparse["eval_return"][0] == evaluation_steps(60) == [41, 46, 50, 55, 60]
    assert s["eval_return"] == pytest.approx(sum(first.sparse["eval_return"][1]) / 5)


# --- speech proxy --------------------------------------------------------------------------

def test_speech_batch_shapes_classes_and_order():
    x, y = speech_batch(600, torch.Generator().manual_seed(0))
    assert x.shape == (600, FRAMES, N_BANDS) and y.shape == (600,)
    counts = torch.bincount(y, minlength=len(WORDS))
    assert len(counts) == len(WORDS) and int(counts.min()) > 60   # 100 expected per word
    # Words 0 and 1 share their phonemes in another order: nearly the same average spectrum,
    # but not the same first half.
    w0, w1 = x[y == 0], x[y == 1]
    assert (w0.mean((0, 1)) - w1.mean((0, 1))).abs().max() < 0.1
    assert (w0[:, :8].mean((0, 1)) - w1[:, :8].mean((0, 1))).abs().max() > 0.3
    # Seeded: same generator state, same utterances.
    a = speech_batch(5, torch.Generator().manual_seed(4))
    b = speech_batch(5, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _speech_batch_reference(n, generator):
    """The generator written one utterance at a time, in the order it draws its numbers."""
    from adaptim.lab.tasks.speech import (
        FORMANT_WIDTH,
        NOISE,
        PHONEME_FORMANTS,
        SPEAKER_SHIFT,
    )
    labels = torch.randint(len(WORDS), (n,), generator=generator)
    bands = torch.arange(N_BANDS, dtype=torch.float32)
    frames = torch.zeros(n, FRAMES, N_BANDS)
    shift = (torch.rand(n, generator=generator) * 2 - 1) * SPEAKER_SHIFT
    for i in range(n):
        word = WORDS[int(labels[i])]
        durations = torch.randint(3, 8, (len(word),), generator=generator).tolist()
        t = int(torch.randint(0, 4, (1,), generator=generator))
        track = []
        for phoneme, duration in zip(word, durations):
            track += [PHONEME_FORMANTS[phoneme]] * duration
        formants = torch.tensor(track[:FRAMES - t]) + shift[i]
        if len(formants) > 2:
            glided = formants.clone()
            glided[1:] = 0.5 * (formants[1:] + formants[:-1])
            formants = torch.where((formants != torch.roll(formants, 1, 0)).any(1, keepdim=True),
                                   glided, formants)
        spectrum = torch.exp(-0.5 * ((bands - formants[:, :, None]) / FORMANT_WIDTH) ** 2).sum(1)
        frames[i, t:t + len(formants)] = spectrum
    loudness = 0.7 + 0.6 * torch.rand(n, FRAMES, 1, generator=generator)
    noise = NOISE * torch.randn(n, FRAMES, N_BANDS, generator=generator)
    return frames * loudness + noise, labels


@pytest.mark.parametrize("n,seed", [(1, 0), (7, 1), (300, 2)])
def test_speech_batch_equals_the_per_utterance_reference(n, seed):
    # The batched generator draws the same random numbers in the same order (one draw from
    # [0, 20) gives both a duration in 3..7 and an onset in 0..3) and computes the same floats.
    x, y = speech_batch(n, torch.Generator().manual_seed(seed))
    x_ref, y_ref = _speech_batch_reference(n, torch.Generator().manual_seed(seed))
    assert torch.equal(y, y_ref)
    assert torch.equal(x, x_ref)


def test_speech_short_run_beats_chance():
    out = speech_task.run("lstm", _adam(3e-3), 0, 150, "cpu")
    assert not out.diverged
    assert out.scalars["test_accuracy"] > 1 / len(WORDS) + 0.2
    assert out.scalars["score"] == out.scalars["test_accuracy"]
