"""A speech-like sequence classification proxy (the "speech recognition" use the tutorials
name): generated spectrogram-like frames, classified by a small LSTM. No audio is involved."""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptim.lab.tasks._base import RunOutput, Task, seeded_generator, train

__all__ = ["FRAMES", "N_BANDS", "PHONEME_FORMANTS", "WORDS", "speech_batch", "speech_task"]

N_BANDS = 16          # filterbank channels per frame
FRAMES = 24           # frames per utterance after padding/cropping
# Each "phoneme" is a pair of formant centres, in filterbank channels.
PHONEME_FORMANTS = ((3.0, 11.0), (5.0, 9.0), (2.0, 7.0), (7.0, 13.0))
# Each "word" is a sequence of phonemes; words 0/1 and 2/3 use the same phonemes in another
# order, so classifying them needs the order of the frames, not only their average.
WORDS = ((0, 1, 2), (2, 1, 0), (1, 3, 0), (0, 3, 1), (3, 2), (2, 3, 1))
FORMANT_WIDTH = 1.2   # channels (standard deviation of each formant's bump)
NOISE = 0.6           # standard deviation of the additive frame noise (bump height is 1)
SPEAKER_SHIFT = 1.0   # formants of one utterance shift by U(-1, 1) channels (vocal tract size)
HIDDEN = 32
BATCH = 32
N_TRAIN = 1024
N_TEST = 512


def speech_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` utterances (n × FRAMES × N_BANDS) and their word labels.

    Every phoneme lasts a random 3-7 frames (a random time warp), the word starts after 0-3
    frames of silence, formants shift by a per-utterance "speaker" offset and glide linearly
    into the next phoneme over one frame, each frame gets a random loudness, and Gaussian
    noise is added everywhere (silence included).
    """
    labels = torch.randint(len(WORDS), (n,), generator=generator)
    shift = (torch.rand(n, generator=generator) * 2 - 1) * SPEAKER_SHIFT
    words = [WORDS[k] for k in labels.tolist()]
    # Per utterance, one draw per phoneme (its duration, 3-7 frames) and one for the onset
    # (0-3 frames): a draw from [0, 20) serves both, 20 being a multiple of 5 and of 4.
    draws = torch.randint(0, 20, (sum(len(w) + 1 for w in words),), generator=generator).tolist()
    tracks, valid, glide = [], [], []   # flat over (utterance, frame)
    k = 0
    for word in words:
        onset = draws[k + len(word)] % 4
        track = [PHONEME_FORMANTS[p] for p, d in zip(word, draws[k:k + len(word)])
                 for _ in range(3 + d % 5)][:FRAMES - onset]
        k += len(word) + 1
        end = onset + len(track)
        tracks += [(0.0, 0.0)] * onset + track + [(0.0, 0.0)] * (FRAMES - end)
        valid += [False] * onset + [True] * len(track) + [False] * (FRAMES - end)
        # Coarticulation (utterances of more than two frames): the first frame of each
        # phoneme sits halfway between the previous phoneme's formants and its own.
        glide += [False] * (onset + 1) + [len(track) > 2] * (len(track) - 1) \
            + [False] * (FRAMES - end)
    formants = torch.tensor(tracks).view(n, FRAMES, 2) + shift[:, None, None]
    valid = torch.tensor(valid).view(n, FRAMES)
    glide = torch.tensor(glide).view(n, FRAMES)
    glided = formants.clone()
    glided[:, 1:] = 0.5 * (formants[:, 1:] + formants[:, :-1])
    changed = torch.zeros(n, FRAMES, dtype=torch.bool)
    changed[:, 1:] = (formants[:, 1:] != formants[:, :-1]).any(2)
    formants = torch.where((glide & changed)[:, :, None], glided, formants)
    bands = torch.arange(N_BANDS, dtype=torch.float32)
    spectrum = torch.exp(-0.5 * ((bands - formants[..., None]) / FORMANT_WIDTH) ** 2).sum(2)
    frames = torch.where(valid[:, :, None], spectrum, 0.0)
    loudness = 0.7 + 0.6 * torch.rand(n, FRAMES, 1, generator=generator)
    noise = NOISE * torch.randn(n, FRAMES, N_BANDS, generator=generator)
    return frames * loudness + noise, labels


class _LSTMClassifier(nn.Module):
    # An LSTM (as in Graves et al. 2013's acoustic models): on the CPU torch runs it through
    # oneDNN, about 3× faster than its GRU at this size.
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(N_BANDS, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, len(WORDS))

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@torch.no_grad()
def _evaluate(model, x, y) -> tuple[float, float]:
    logits = model(x)
    accuracy = (logits.argmax(1) == y).float().mean()
    return float(nn.functional.cross_entropy(logits, y)), float(accuracy)


def _run_speech(variant, make_optimizer, seed, steps, device) -> RunOutput:
    x_train, y_train = speech_batch(N_TRAIN, seeded_generator(seed, salt=50))
    x_test, y_test = speech_batch(N_TEST, seeded_generator(10_000 + seed, salt=51))
    x_train, y_train, x_test, y_test = (t.to(device) for t in (x_train, y_train, x_test, y_test))
    torch.manual_seed(seed)
    model = _LSTMClassifier().to(device)
    params = list(model.parameters())
    optimizer = make_optimizer(params)
    gen = seeded_generator(seed, salt=52)

    def compute_loss(step):
        index = torch.randint(N_TRAIN, (BATCH,), generator=gen).to(device)
        return nn.functional.cross_entropy(model(x_train[index]), y_train[index])

    out = train(params, optimizer, compute_loss, steps, probe_every=max(steps // 20, 1))
    test_loss, test_accuracy = _evaluate(model, x_test, y_test)
    train_accuracy = _evaluate(model, x_train, y_train)[1]
    if out.diverged or not math.isfinite(test_loss):
        test_loss, test_accuracy = math.inf, 0.0
    out.scalars.update(test_loss=test_loss, test_accuracy=test_accuracy, score=test_accuracy,
                       train_accuracy=train_accuracy, selection_loss=test_loss)
    return out


speech_task = Task(
    name="speech",
    summary=f"speech-like proxy: {len(WORDS)} generated 'words' classified by an LSTM",
    description=("A proxy for speech recognition, not speech: no audio is involved. Each "
                 f"utterance is {FRAMES} generated spectrogram-like frames of {N_BANDS} "
                 "filterbank channels: a word is a sequence of 2-3 'phonemes', each a pair "
                 "of formant bumps lasting a random 3-7 frames (time warp), shifted per "
                 "utterance (speaker), with gliding transitions, random loudness and additive "
                 f"noise. Two pairs of the {len(WORDS)} words share their phonemes in another "
                 f"order, so the order matters. An LSTM ({HIDDEN} units) reads the frames; "
                 f"mini-batches of {BATCH} from {N_TRAIN} training utterances; the score is "
                 f"the accuracy on {N_TEST} held-out utterances (chance "
                 f"{1 / len(WORDS):.0%})."),
    variants=("lstm",),
    run=_run_speech,
    steps=300,
    fast_steps=50,
    target={"lstm": 0.3},
    # Grids centred on the rates the sweeps settle on (half a decade above the typical ones).
    lr_scale={"sgd": 10.0, "rmsprop": 1.0},
    loss_name="cross-entropy",
    test_metric="test_accuracy",
)
