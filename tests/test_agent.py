"""SAC/DrQ maths checked against values computed by hand on tiny networks, and against the plain
reference update used by the learner benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from robolearn.agents import AgentConfig, DrQAgent
from robolearn.agents.augment import draw_shifts
from robolearn.bench.reference_drqv2 import ReferenceDrQv2
from robolearn.replay import Batch

STATE = spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (1,), np.float32)})
ACTION = spaces.Box(-1, 1, (1,), np.float32)


def tiny_agent(**overrides) -> DrQAgent:
    """State 1-D, action 1-D, no hidden layers: actor = one Linear(1 -> 2), each critic = Linear(2 -> 1)."""
    cfg = AgentConfig(hidden_layers=0, critic_layernorm=False, init_temperature=0.5, **overrides)
    agent = DrQAgent(STATE, ACTION, cfg)
    with torch.no_grad():
        actor = agent.actor.net[0]
        actor.weight.copy_(torch.tensor([[0.5], [0.0]]))  # mean = 0.5 s + 0.1
        actor.bias.copy_(torch.tensor([0.1, -0.2]))  # raw log std = -0.2
        head = agent.critic.heads[0]  # weight (2 critics, in=[s, a], out=1)
        head.weight.copy_(torch.tensor([[[1.0], [2.0]], [[-1.0], [0.5]]]))
        head.bias.copy_(torch.tensor([[[0.3]], [[0.1]]]))
        agent.critic_target.load_state_dict(agent.critic.state_dict())
    return agent


def log_std_of(raw: float) -> float:
    return -5.0 + 0.5 * (2.0 - -5.0) * (math.tanh(raw) + 1)


def by_hand_policy(s: float, eps: float) -> tuple[float, float]:
    mean, log_std = 0.5 * s + 0.1, log_std_of(-0.2)
    u = mean + math.exp(log_std) * eps
    a = math.tanh(u)
    log_prob = -0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi) - math.log(1 - a**2)
    return a, log_prob


def q1(s, a):
    return 1.0 * s + 2.0 * a + 0.3


def q2(s, a):
    return -1.0 * s + 0.5 * a + 0.1


S, A, R, D, S2 = [0.4, -1.0], [0.2, -0.6], [1.0, -0.5], [0.99, 0.0], [0.7, 0.3]
EPS = [0.3, -1.2]


def test_critic_target_by_hand():
    agent = tiny_agent()
    target = agent.critic_target_value(
        torch.tensor(R), torch.tensor(D), None, torch.tensor(S2).unsqueeze(1), eps=torch.tensor(EPS).unsqueeze(1)
    )
    for i in range(2):
        a2, logp2 = by_hand_policy(S2[i], EPS[i])
        expected = R[i] + D[i] * (min(q1(S2[i], a2), q2(S2[i], a2)) - 0.5 * logp2)
        assert target[i].item() == pytest.approx(expected, rel=1e-5)
    # The second sample's episode terminated (discount 0): its target is the reward alone.
    assert target[1].item() == pytest.approx(R[1])


def test_critic_loss_by_hand():
    agent = tiny_agent()
    noise = {"eps_target": torch.tensor(EPS).unsqueeze(1)}
    metrics = agent.update_critic(None, torch.tensor(S).unsqueeze(1), torch.tensor(A).unsqueeze(1), torch.tensor(R),
                                  torch.tensor(D), None, torch.tensor(S2).unsqueeze(1), noise)
    ys = []
    for i in range(2):
        a2, logp2 = by_hand_policy(S2[i], EPS[i])
        ys.append(R[i] + D[i] * (min(q1(S2[i], a2), q2(S2[i], a2)) - 0.5 * logp2))
    expected = sum(np.mean([(q(S[i], A[i]) - ys[i]) ** 2 for i in range(2)]) for q in (q1, q2))
    assert metrics["critic_loss"].item() == pytest.approx(expected, rel=1e-5)


def test_actor_and_temperature_losses_by_hand():
    agent = tiny_agent()
    metrics = agent.update_actor_and_alpha(None, torch.tensor(S).unsqueeze(1), eps=torch.tensor(EPS).unsqueeze(1))
    actor_terms, alpha_terms = [], []
    for i in range(2):
        a, logp = by_hand_policy(S[i], EPS[i])
        actor_terms.append(0.5 * logp - min(q1(S[i], a), q2(S[i], a)))
        alpha_terms.append(-math.log(0.5) * (logp + -1.0))  # target entropy = -action_dim
    assert metrics["actor_loss"].item() == pytest.approx(np.mean(actor_terms), rel=1e-5)
    assert metrics["alpha_loss"].item() == pytest.approx(np.mean(alpha_terms), rel=1e-5)


@pytest.mark.parametrize("q_filter", [False, True])
def test_demo_bc_term_by_hand(q_filter):
    """The actor's loss with bc_weight: SAC's term over the batch's mean |Q|, plus the weight times the
    squared error of tanh(mean) to the demo action over the demo rows; with the Q filter, only on the rows
    where the critic rates the demo action above the policy's sample (here neither: the term vanishes)."""
    agent = tiny_agent(bc_weight=2.0, bc_q_filter=q_filter)
    demo = torch.tensor([True, True])
    metrics = agent.update_actor_and_alpha(None, torch.tensor(S).unsqueeze(1), eps=torch.tensor(EPS).unsqueeze(1),
                                           demo=demo, batch_action=torch.tensor(A).unsqueeze(1))
    sac_terms, q_policy, bc_terms, kept = [], [], [], []
    for i in range(2):
        a, logp = by_hand_policy(S[i], EPS[i])
        q_pi = min(q1(S[i], a), q2(S[i], a))
        sac_terms.append(0.5 * logp - q_pi)
        q_policy.append(q_pi)
        keep = (min(q1(S[i], A[i]), q2(S[i], A[i])) > q_pi) if q_filter else True
        kept.append(keep)
        bc_terms.append(keep * (math.tanh(0.5 * S[i] + 0.1) - A[i]) ** 2)
    assert kept == ([False, False] if q_filter else [True, True])  # the case the filter must catch
    expected = np.mean(sac_terms) / np.mean(np.abs(q_policy)) + 2.0 * np.mean(bc_terms)
    assert metrics["actor_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert metrics["bc_kept"].item() == pytest.approx(np.mean(kept))
    if not q_filter:  # only the rows flagged as demos are cloned
        agent = tiny_agent(bc_weight=2.0, bc_q_filter=False)
        metrics = agent.update_actor_and_alpha(None, torch.tensor(S).unsqueeze(1), eps=torch.tensor(EPS).unsqueeze(1),
                                               demo=torch.tensor([False, True]), batch_action=torch.tensor(A).unsqueeze(1))
        expected = np.mean(sac_terms) / np.mean(np.abs(q_policy)) + 2.0 * bc_terms[1]
        assert metrics["actor_loss"].item() == pytest.approx(expected, rel=1e-5)


def test_demo_bc_pulls_the_policy_to_the_demo_actions_and_leaves_plain_sac_alone():
    torch.manual_seed(0)
    states = torch.linspace(-1, 1, 16).unsqueeze(1)
    demo_actions = -0.8 * states  # the demonstrator's policy, far from the initial one
    plain = tiny_agent()
    assert "bc_loss" not in plain.update_actor_and_alpha(None, states, demo=None)
    agent = tiny_agent(bc_weight=10.0, bc_q_filter=False, actor_lr=1e-2)
    first = None
    for _ in range(300):
        metrics = agent.update_actor_and_alpha(None, states, demo=torch.ones(16, dtype=torch.bool), batch_action=demo_actions)
        first = metrics["bc_loss"].item() if first is None else first
    assert metrics["bc_loss"].item() < 0.1 * first
    mean, _ = agent.actor(None, states)
    # The initial policy's actions rise with the state, the demonstrator's fall: the clone follows the demos
    # (the critic's pull toward larger actions keeps it a little above them).
    assert torch.tanh(mean)[0].item() > 0.5 and torch.tanh(mean)[-1].item() < -0.5
    assert (torch.tanh(mean) - demo_actions).abs().max().item() < 0.2


def test_actor_step_leaves_the_critic_untouched_and_alpha_moves_toward_target_entropy():
    agent = tiny_agent()
    before = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    metrics = agent.update_actor_and_alpha(None, torch.tensor(S).unsqueeze(1), eps=torch.tensor(EPS).unsqueeze(1))
    for k, v in agent.critic.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in agent.critic.parameters())
    # Entropy above target (policy too random) -> alpha decreases, and vice versa.
    entropy_above_target = metrics["entropy"].item() > agent.target_entropy
    assert (agent.alpha.item() < 0.5) == entropy_above_target


def test_target_subset_of_an_ensemble():
    agent = tiny_agent(num_critics=2, target_subset=1)
    args = (torch.tensor(R), torch.tensor(D), None, torch.tensor(S2).unsqueeze(1))
    eps = torch.tensor(EPS).unsqueeze(1)
    only_q2 = agent.critic_target_value(*args, eps=eps, subset=torch.tensor([1]))
    a2, logp2 = by_hand_policy(S2[0], EPS[0])
    assert only_q2[0].item() == pytest.approx(R[0] + D[0] * (q2(S2[0], a2) - 0.5 * logp2), rel=1e-5)
    with pytest.raises(ValueError, match="target_subset"):
        tiny_agent(num_critics=2, target_subset=3)


def test_polyak_target_update():
    agent = tiny_agent(tau=0.25)
    with torch.no_grad():
        agent.critic.heads[0].bias.fill_(1.0)
    agent.update_target()
    np.testing.assert_allclose(agent.critic_target.heads[0].bias.flatten().tolist(), [0.25 + 0.75 * 0.3, 0.25 + 0.75 * 0.1], rtol=1e-6)


def test_pixel_update_equals_the_plain_reference_update():
    """Same weights and random draws: the optimised update computes what the plain one computes."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    b, k = 8, 3
    space = spaces.Dict({"front": spaces.Box(0, 255, (84, 84, 3), np.uint8)})
    frames = lambda: {"front": rng.integers(0, 256, (b, k, 84, 84, 3), dtype=np.uint8)}  # noqa: E731
    batch = Batch(frames(), rng.uniform(-1, 1, (b, 8)).astype(np.float32), rng.normal(size=b).astype(np.float32),
                  np.full(b, 0.97, np.float32), frames())
    reference = ReferenceDrQv2(3 * k, 84, 8, hidden_dim=64)
    agent = DrQAgent(space, spaces.Box(-1, 1, (8,), np.float32),
                     AgentConfig(hidden_dim=64, frame_stack=k, critic_layernorm=False))
    reference.copy_weights_into(agent, "front")
    shift_obs, shift_next = draw_shifts(b, 4), draw_shifts(b, 4)
    eps_target, eps_actor = torch.randn(b, 8), torch.randn(b, 8)
    ours = agent.update(batch, {"shift_obs": {"front": shift_obs}, "shift_next": {"front": shift_next},
                                "eps_target": eps_target, "eps_actor": eps_actor, "subset": torch.tensor([0, 1])})

    def nchw(x):
        return torch.as_tensor(x).permute(0, 1, 4, 2, 3).reshape(b, 3 * k, 84, 84)

    theirs = reference.update(nchw(batch.obs["front"]), torch.as_tensor(batch.action), torch.as_tensor(batch.reward),
                              torch.as_tensor(batch.discount), nchw(batch.next_obs["front"]),
                              {"shift_obs": shift_obs, "shift_next": shift_next, "eps_target": eps_target, "eps_actor": eps_actor})
    for key in ("critic_loss", "actor_loss", "alpha_loss"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), key
    # After one Adam step every weight moved by about lr * sign(grad): equal signs give equal weights.
    ours_w = agent.actor.net[0].weight
    theirs_w = reference.actor_policy[0].weight
    assert torch.isclose(ours_w, theirs_w, atol=1e-6).float().mean() > 0.99


def test_pixel_agent_acts_from_frame_stacks_with_proprioception():
    space = spaces.Dict({"front": spaces.Box(0, 255, (32, 32, 3), np.uint8), "wrist": spaces.Box(0, 255, (32, 32, 3), np.uint8),
                         "joint_pos": spaces.Box(-np.inf, np.inf, (7,), np.float32)})
    agent = DrQAgent(space, spaces.Box(-1, 1, (8,), np.float32), AgentConfig(hidden_dim=32, frame_stack=2))
    obs = {"front": np.zeros((2, 32, 32, 3), np.uint8), "wrist": np.zeros((2, 32, 32, 3), np.uint8), "joint_pos": np.zeros(7, np.float32)}
    action = agent.act(obs)
    assert action.shape == (8,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
    assert np.array_equal(agent.act(obs, deterministic=True), agent.act(obs, deterministic=True))


def test_frozen_pretrained_encoder_from_a_local_file(tmp_path):
    import torchvision

    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    space = spaces.Dict({"front": spaces.Box(0, 255, (64, 64, 3), np.uint8)})
    agent = DrQAgent(space, spaces.Box(-1, 1, (2,), np.float32),
                     AgentConfig(hidden_dim=16, encoder="resnet18", encoder_weights=str(weights), augment_pad=0))
    encoder = agent.encoders["front"]
    assert not any(p.requires_grad for p in encoder.parameters())
    before = [p.clone() for p in encoder.parameters()]
    rng = np.random.default_rng(0)
    frames = lambda: {"front": rng.integers(0, 256, (4, 1, 64, 64, 3), dtype=np.uint8)}  # noqa: E731
    agent.update(Batch(frames(), np.zeros((4, 2), np.float32), np.ones(4, np.float32), np.ones(4, np.float32), frames()))
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters()))
    with pytest.raises(FileNotFoundError, match="encoder_weights"):
        DrQAgent(space, spaces.Box(-1, 1, (2,), np.float32), AgentConfig(encoder="resnet18", encoder_weights=str(tmp_path / "nope.pt")))


def test_bfloat16_precision_runs_hidden_matmuls_in_bfloat16_and_keeps_outputs_and_weights_float32():
    space = spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (12,), np.float32)})
    action_space = spaces.Box(-1, 1, (4,), np.float32)
    torch.manual_seed(0)
    exact = DrQAgent(space, action_space, AgentConfig(hidden_dim=64))
    mixed = DrQAgent(space, action_space, AgentConfig(hidden_dim=64, precision="bfloat16"))
    mixed.load_state_dict(exact.state_dict())
    rng = np.random.default_rng(0)
    obs = {"state": rng.normal(size=(32, 12)).astype(np.float32)}
    batch = Batch(obs, rng.uniform(-1, 1, (32, 4)).astype(np.float32), rng.normal(size=32).astype(np.float32),
                  np.full(32, 0.97, np.float32), {"state": rng.normal(size=(32, 12)).astype(np.float32)})
    vector = torch.as_tensor(obs["state"])
    action = torch.as_tensor(batch.action)
    with torch.no_grad():
        q_exact = exact.critic(None, vector, action)
        with mixed._autocast():
            q_mixed = mixed.critic(None, vector, action)
            mean, log_std = mixed.actor(None, vector)
    # The outputs are float32 (the heads run in float32) and differ from float32's by bfloat16's rounding only.
    assert q_mixed.dtype == mean.dtype == log_std.dtype == torch.float32
    assert not torch.equal(q_mixed, q_exact)
    assert torch.allclose(q_mixed, q_exact, atol=0.05, rtol=0.05)
    noise = {"eps_target": torch.zeros(32, 4), "eps_actor": torch.zeros(32, 4), "subset": torch.tensor([0, 1])}
    m_exact, m_mixed = exact.update(batch, dict(noise)), mixed.update(batch, dict(noise))
    assert m_mixed["critic_loss"] == pytest.approx(m_exact["critic_loss"], rel=0.05)
    assert all(p.dtype == torch.float32 for p in mixed.parameters())  # the weights Adam updates stay float32
    assert all(math.isfinite(v) for v in m_mixed.values())


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="agent.precision"):
        DrQAgent(STATE, ACTION, AgentConfig(precision="float16"))


def test_policy_average_follows_the_actor_and_acts_deterministically_while_exploration_uses_the_online_actor():
    agent = tiny_agent(policy_average=0.25)  # the average starts as the actor was built (tiny_agent then sets the actor)
    start = agent.actor_average.net[0].bias.clone()
    with torch.no_grad():
        agent.actor.net[0].bias.fill_(1.0)  # the online actor moves; the average has not followed yet
    agent.update_target()
    np.testing.assert_allclose(agent.actor_average.net[0].bias.tolist(), (0.75 * start + 0.25).tolist(), rtol=1e-6)
    obs = {"state": np.array([0.4], np.float32)}
    with torch.no_grad():
        average_mean = agent.actor_average(None, torch.tensor([[0.4]]))[0][0, 0].item()
        online_mean = agent.actor(None, torch.tensor([[0.4]]))[0][0, 0].item()
    assert abs(average_mean - online_mean) > 0.1
    assert agent.act(obs, deterministic=True)[0] == pytest.approx(math.tanh(average_mean), rel=1e-5)
    torch.manual_seed(0)
    explored = agent.act(obs)[0]
    torch.manual_seed(0)
    with torch.no_grad():
        mean, log_std = agent.actor(None, torch.tensor([[0.4]]))
        expected = torch.tanh(mean + log_std.exp() * torch.randn_like(mean))[0, 0].item()
    assert explored == pytest.approx(expected, rel=1e-5)  # sampled around the online actor's mean (1.2), not the average's
    # The average is part of what acting needs: broadcast to actors, carried by checkpoints.
    from robolearn.agents.weights import acting_weights, load_acting_weights

    weights = acting_weights(agent)
    assert "actor_average.net.0.bias" in weights
    other = tiny_agent(policy_average=0.25)
    load_acting_weights(other, weights)
    assert other.act(obs, deterministic=True)[0] == pytest.approx(agent.act(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match="policy_average"):
        tiny_agent(policy_average=1.5)


def test_without_a_policy_average_deterministic_acting_uses_the_online_actor():
    agent = tiny_agent()
    assert agent.actor_average is None and not any(k.startswith("actor_average") for k in agent.state_dict())
    assert agent.act({"state": np.array([0.4], np.float32)}, deterministic=True)[0] == pytest.approx(math.tanh(0.5 * 0.4 + 0.1), rel=1e-5)


def test_a_state_saved_without_the_policy_average_loads_into_an_agent_with_one_and_back():
    plain, averaged = tiny_agent(), tiny_agent(policy_average=0.01)
    averaged.load_training_state(plain.training_state())  # a run made before the recipe kept an average, resumed
    for name, value in plain.actor.state_dict().items():
        assert torch.equal(averaged.actor_average.state_dict()[name], value)  # the average starts from its actor
    plain.load_training_state(averaged.training_state())  # and resumed with agent.policy_average=0
    obs = {"state": np.array([0.4], np.float32)}
    assert plain.act(obs, deterministic=True)[0] == pytest.approx(averaged.act(obs, deterministic=True)[0])
