"""A tiny causal Transformer on a generated copy task over a Zipf-distributed vocabulary (the
"Transformers" use the tutorials name for Adam)."""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptim.lab.tasks._base import RunOutput, Task, seeded_generator, train

__all__ = ["COPY_LENGTH", "SEPARATOR", "VOCAB", "TinyCausalTransformer", "copy_batch",
           "copy_scores", "transformer_task", "zipf_probabilities"]

VOCAB = 64            # token ids 0..VOCAB-1; SEPARATOR is never a content token
SEPARATOR = 0
COPY_LENGTH = 8       # content tokens; the sequence is content, SEPARATOR, content again
ZIPF_EXPONENT = 1.0
D_MODEL = 32
HEADS = 2
LAYERS = 2
BATCH = 32
N_TEST = 512


def zipf_probabilities(n_tokens: int = VOCAB - 1, exponent: float = ZIPF_EXPONENT) -> torch.Tensor:
    """p(rank k) ∝ 1 / k^exponent for k = 1..n_tokens (token id = rank; id 0 is the separator)."""
    ranks = torch.arange(1, n_tokens + 1, dtype=torch.float64)
    weights = ranks ** -exponent
    return (weights / weights.sum()).float()


def copy_batch(batch: int, generator: torch.Generator, length: int = COPY_LENGTH) -> torch.Tensor:
    """Token sequences ``c_1..c_L, SEP, c_1..c_L`` (shape batch × (2L+1)); the content tokens are
    drawn i.i.d. from the Zipf distribution over ids 1..VOCAB-1. After the separator every token
    is predictable only by attending back to the same position in the first half."""
    content = torch.multinomial(zipf_probabilities().expand(batch, -1), length, replacement=True,
                                generator=generator) + 1
    sep = torch.full((batch, 1), SEPARATOR, dtype=torch.long)
    return torch.cat([content, sep, content], dim=1)


class TinyCausalTransformer(nn.Module):
    """Token + learned position embeddings, ``LAYERS`` pre-norm encoder layers under a causal
    mask, and a linear read-out to next-token logits."""

    def __init__(self, vocab: int = VOCAB, d_model: int = D_MODEL, heads: int = HEADS,
                 layers: int = LAYERS, max_len: int = 2 * COPY_LENGTH + 1):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(max_len),
                             persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        h = self.tokens(tokens) + self.positions(torch.arange(n, device=tokens.device))
        h = self.blocks(h, mask=self.mask[:n, :n], is_causal=True)
        return self.head(self.norm(h))


def _copy_predictions(model, tokens) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy of the next-token predictions on the copied half only (the logits at
    positions L..2L-1, separator and copied tokens so far, predict tokens L+1..2L), with the
    predicted and the true tokens."""
    logits = model(tokens[:, :-1])[:, COPY_LENGTH:]
    target = tokens[:, COPY_LENGTH + 1:]
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    return loss, logits.argmax(-1), target


def copy_scores(model, tokens) -> dict[str, float]:
    """Held-out copy loss, next-token accuracy on the copied half, and the accuracy on the rare
    tokens alone (ids above VOCAB // 4, the tail of the Zipf distribution)."""
    with torch.no_grad():
        loss, predicted, target = _copy_predictions(model, tokens)
    hit = (predicted == target).float()
    rare = target > VOCAB // 4
    return {"test_loss": float(loss), "copy_accuracy": float(hit.mean()),
            "rare_token_accuracy": float(hit[rare].mean())}


def _run_transformer(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    model = TinyCausalTransformer().to(device)
    params = list(model.parameters())
    optimizer = make_optimizer(params)
    gen = seeded_generator(seed, salt=20)
    test = copy_batch(N_TEST, seeded_generator(10_000 + seed, salt=21)).to(device)

    def compute_loss(step):
        return _copy_predictions(model, copy_batch(BATCH, gen).to(device))[0]

    initial = copy_scores(model, test)
    out = train(params, optimizer, compute_loss, steps, probe_every=max(steps // 20, 1))
    scores = copy_scores(model, test)
    if out.diverged or not math.isfinite(scores["test_loss"]):
        scores = {"test_loss": math.inf, "copy_accuracy": 0.0, "rare_token_accuracy": 0.0}
    out.scalars.update(scores, score=scores["copy_accuracy"],
                       initial_copy_accuracy=initial["copy_accuracy"],
                       unigram_accuracy=float(zipf_probabilities().max()),
                       selection_loss=scores["test_loss"])
    return out


transformer_task = Task(
    name="transformer",
    summary=f"tiny causal Transformer ({LAYERS} layers, d={D_MODEL}) copying Zipf tokens",
    description=(f"A causal Transformer ({LAYERS} pre-norm layers, d_model {D_MODEL}, {HEADS} "
                 f"heads, learned positions) reads {COPY_LENGTH} tokens drawn from a Zipf "
                 f"distribution over {VOCAB - 1} ids, a separator, and must then repeat them: "
                 "the next-token loss counts the copied half only. Always guessing the most "
                 f"frequent token scores {float(zipf_probabilities().max()):.0%}; copying needs "
                 "attention to the matching earlier position, and rare tokens (ids above "
                 f"{VOCAB // 4}) give the output layer few, small gradients (the heavy-tailed "
                 "class imbalance of language data). A fresh batch of "
                 f"{BATCH} sequences every step; the score is the next-token accuracy on "
                 f"{N_TEST} held-out sequences."),
    variants=("copy",),
    run=_run_transformer,
    steps=200,
    fast_steps=40,
    target={"copy": 0.1},
    loss_name="copy cross-entropy",
    test_metric="copy_accuracy",
)
