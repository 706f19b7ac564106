"""The claims of the five tutorials the lab tests, quoted, and the judge that turns runs into
verdicts (never written by hand).

Each :class:`Claim` quotes one sentence of one tutorial (original language and an English
rendering), states what is measured, and names the arms it compares: pairs of
(task, variant, arm) whose evaluation seeds are paired. :func:`judge` reads the per-arm
summaries, computes the paired effect with its interval (:mod:`adaptim.lab.stats`) and applies
the decision rule. Compound sentences are split into separate rows. A row whose tasks did not
run says which tier or task would run them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from adaptim.lab.stats import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    Effect,
    decide,
    oriented_differences,
    paired_effect,
    seeds_needed,
)
from adaptim.lab.sweep import lr_window_share

__all__ = [
    "CLAIMS",
    "HOLDS",
    "INCONCLUSIVE",
    "NOT_HOLD",
    "NOT_RUN",
    "TUTORIALS",
    "Claim",
    "Ref",
    "Verdict",
    "evaluate_claims",
    "judge",
]

NOT_RUN = "needs --extended"

# The tutorials, by topic (language in brackets).
RMSPROP_HI = "the RMSProp tutorial (Hindi)"
SIMILAR = "the tutorial on RMSProp and similar optimizers (Hindi)"
RMSPROP_EN = "the RMSProp article (English)"
ADAM = "the Adam tutorial (Hindi)"
VANISHING = "the vanishing/exploding gradients tutorial (Hindi)"
TUTORIALS = (RMSPROP_HI, SIMILAR, RMSPROP_EN, ADAM, VANISHING)


@dataclass(frozen=True)
class Ref:
    """One arm: ``task``, ``variant`` and the arm's label (its optimizer name by default)."""

    task: str
    variant: str
    arm: str

    def __str__(self):
        return f"{self.task}·{self.variant}·{self.arm}"


@dataclass(frozen=True)
class Claim:
    """One row of the verdict table.

    ``pairs``: (A, B) arms compared seed by seed (B None: A's value against zero); several
    pairs pool their differences. ``metric``: a per-seed value of the summaries
    (``final_loss``, ``steps_to_target``, ``state_bytes_per_param`` or a task scalar) or
    ``lr_window_share`` (one value per arm, from its sweep). ``higher_is_better``: which
    direction the claim favours A in. ``transform``/``worst``: see
    :func:`adaptim.lab.stats.oriented_differences`. ``min_effect``: the least effect that
    counts (and the equivalence margin unless ``delta``)."""

    id: str
    tutorial: str
    quote: str
    english: str
    statement: str
    pairs: tuple
    metric: str
    higher_is_better: bool
    min_effect: float
    unit: str
    transform: str = "diff"
    kind: str = "superior"
    delta: float | None = None
    worst: float | None = None
    deterministic: bool = False
    link: str = ""
    also: tuple[str, ...] = ()  # further per-seed metrics shown beside the deciding one

    @property
    def tasks(self) -> list[str]:
        seen = []
        for pair in self.pairs:
            for ref in pair:
                if ref is not None and ref.task not in seen:
                    seen.append(ref.task)
        return seen


@dataclass
class Verdict:
    claim: Claim
    status: str
    reason: str
    effect: Effect | None = None
    evidence: list[str] = field(default_factory=list)
    decide_hint: str = ""

    # flat views for the report and metrics.json
    @property
    def link(self) -> str:
        """The figure to look at; none when nothing was measured."""
        return self.claim.link if self.effect is not None else ""

    def to_dict(self) -> dict:
        c = self.claim
        return dict(id=c.id, tutorial=c.tutorial, quote=c.quote, english=c.english,
                    claim=c.statement, statement=c.statement, status=self.status,
                    reason=self.reason, effect=self.effect.to_dict() if self.effect else None,
                    unit=c.unit, min_effect=c.min_effect, kind=c.kind,
                    delta=c.min_effect if c.delta is None else c.delta,
                    evidence=self.evidence, decide_hint=self.decide_hint, link=self.link,
                    tasks=c.tasks)


def _r(task, variant, arm):
    return Ref(task, variant, arm)


LOG3 = math.log10(3)
LOG15 = math.log10(1.5)
LOG125 = math.log10(1.25)

# The default-tier tasks the Adam speed and tuning rows pool over: (task, variant).
_SPEED_GROUPS = (("quadratic", "kappa100"), ("online", "switch"), ("sparse", "zipf"),
                 ("digits-mlp", "mlp"))
_OTHERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta")
# Every default-tier (task, variant) where Adam and SGD are both tuned and the target is a
# training-loss threshold (not the GAN's discriminator loss or DQN's TD loss): the Adam
# stability row takes one value per group (its sweep), so its n is the number of groups.
_STABLE_GROUPS = _SPEED_GROUPS + (("quadratic", "kappa1000"), ("quadratic", "noisy"),
                                  ("digits-cnn", "cnn"), ("transformer", "copy"))

CLAIMS: tuple[Claim, ...] = (
    # ---------------------------------------------------------------- RMSProp vs AdaGrad
    Claim("adagrad-decays", RMSPROP_HI,
          "AdaGrad की सबसे बड़ी समस्या यह थी कि learning rate बहुत जल्दी बहुत छोटा हो जाता है, "
          "जिससे प्रशिक्षण रुक जाता है।",
          "AdaGrad's biggest problem was that the learning rate becomes very small very "
          "quickly, which stops training.",
          "On the stream whose target switches midway, AdaGrad's effective learning rate "
          "falls more than 3× from the first to the last fifth of the run.",
          ((_r("online", "switch", "adagrad"), None),), "efflr_log10_ratio", False, LOG3,
          "−log10(late/early effective lr)", link="#fig-online-efflr"),
    Claim("rmsprop-controlled", RMSPROP_HI,
          "Learning rate को स्थिर बनाए रखता है। … Vanishing Learning Rate की समस्या नहीं होती।",
          "It keeps the learning rate stable. … There is no vanishing-learning-rate problem.",
          "On the same stream, RMSProp's effective learning rate stays within 3× of its "
          "early value (after its warm-up).",
          ((_r("online", "switch", "rmsprop"), None),), "efflr_log10_ratio", False, LOG3,
          "log10(late/early effective lr), equivalence to 0", kind="equivalent",
          link="#fig-online-efflr"),
    Claim("rmsprop-recovers", RMSPROP_HI,
          "RMSProp इस समस्या का समाधान करता है — यह सभी पुराने gradients को समान रूप से नहीं "
          "बल्कि एक decaying average के रूप में गिनता है।",
          "RMSProp solves this problem: it counts old gradients not equally but as a "
          "decaying average.",
          "After the target switches, RMSProp gets back to the loss threshold in fewer steps "
          "than AdaGrad (each tuned).",
          ((_r("online", "switch", "rmsprop"), _r("online", "switch", "adagrad")),),
          "recovery_steps", False, LOG15, "log10 steps to recover (AdaGrad / RMSProp)",
          transform="log10", link="#fig-online-loss"),
    Claim("rmsprop-online", RMSPROP_HI, "Online Learning के लिए उपयुक्त।",
          "Suitable for online learning.",
          "On the switching stream RMSProp's prequential loss after the switch is lower than "
          "plain SGD's (each tuned).",
          ((_r("online", "switch", "rmsprop"), _r("online", "switch", "sgd")),),
          "tracking_loss", False, math.log10(1.1), "log10 loss after the switch (SGD / RMSProp)",
          transform="log10", link="#fig-online-loss"),
    Claim("rmsprop-rnn", RMSPROP_HI,
          "Performance on RNNs | Poor (AdaGrad) | Excellent (RMSProp)",
          "Performance on RNNs: AdaGrad poor, RMSProp excellent.",
          "An LSTM on the adding problem (T = 10) reaches a lower held-out MSE with RMSProp "
          "than with AdaGrad (each tuned).",
          ((_r("adding", "lstm-T10", "rmsprop"), _r("adding", "lstm-T10", "adagrad")),),
          "test_loss", False, LOG15, "log10 held-out MSE (AdaGrad / RMSProp)", transform="log10",
          link="#fig-adding-loss"),
    Claim("rnn-rmsprop-adam", SIMILAR, "आरएनएन/एलएसटीएम के लिए, आरएमएसप्रॉप या एडम बेहतर होते हैं।",
          "For RNNs/LSTMs, RMSProp or Adam are better.",
          "On the LSTM adding task (T = 10), RMSProp and Adam each reach a lower held-out MSE "
          "than SGD with momentum (pooled pairs).",
          ((_r("adding", "lstm-T10", "rmsprop"), _r("adding", "lstm-T10", "momentum")),
           (_r("adding", "lstm-T10", "adam"), _r("adding", "lstm-T10", "momentum"))),
          "test_loss", False, LOG15, "log10 held-out MSE (momentum / adaptive)",
          transform="log10", link="#fig-adding-loss"),
    Claim("rmsprop-vanishing", RMSPROP_EN,
          "By adjusting the learning rate for each parameter dynamically, RMSProp helps prevent "
          "issues such as vanishing gradients, which can stall training progress in deep "
          "neural networks.", "(English original)",
          "In the 10-layer sigmoid MLP, RMSProp moves the first layer's weights (relative to "
          "their size) closer to the last layer's than SGD does: ratio larger by ≥ 3×.",
          ((_r("deep", "sigmoid", "rmsprop"), _r("deep", "sigmoid", "sgd")),),
          "update_ratio_log10", True, LOG3, "log10 first/last relative update (RMSProp − SGD)",
          link="#fig-deep-layers",
          also=("first_layer_efflr", "last_layer_efflr", "first_layer_eps_share")),
    Claim("rmsprop-vanishing-loss", RMSPROP_EN,
          "… which can stall training progress in deep neural networks.", "(English original)",
          "The 10-layer sigmoid MLP trained with RMSProp ends at a lower training loss than "
          "with SGD (each tuned).",
          ((_r("deep", "sigmoid", "rmsprop"), _r("deep", "sigmoid", "sgd")),),
          "final_loss", False, LOG15, "log10 training loss (SGD / RMSProp)", transform="log10",
          link="#fig-deep-loss"),
    # ---------------------------------------------------------------- AdaGrad, AdaDelta
    Claim("adagrad-sparse", SIMILAR,
          "लर्निंग रेट्स को अनुकूलित करने के लिए वर्गीकृत ग्रेडिएंट्स के योग को जमा करता है; विरल "
          "डेटा के लिए आदर्श।",
          "Accumulates the sum of squared gradients to adapt learning rates; ideal for sparse "
          "data.",
          "Logistic regression on sparse Zipf-distributed features: AdaGrad's held-out loss is "
          "lower than SGD's (each tuned).",
          ((_r("sparse", "zipf", "adagrad"), _r("sparse", "zipf", "sgd")),),
          "test_loss", False, math.log10(1.1), "log10 held-out loss (SGD / AdaGrad)",
          transform="log10", link="#fig-sparse-loss"),
    Claim("adadelta-no-tuning", SIMILAR, "मैन्युअल लर्निंग रेट ट्यूनिंग की आवश्यकता नहीं होती।",
          "No manual learning-rate tuning is needed.",
          "AdaDelta at its default lr (1.0) is within 25 % of AdaDelta with a tuned lr "
          "(held-out loss, pooled over the sparse and digits tasks).",
          ((_r("sparse", "zipf", "adadelta default"), _r("sparse", "zipf", "adadelta")),
           (_r("digits-mlp", "mlp", "adadelta default"), _r("digits-mlp", "mlp", "adadelta"))),
          "selection_loss", False, LOG125, "log10 held-out loss (tuned / default)",
          transform="log10", kind="equivalent", link="#task-sparse"),
    # ---------------------------------------------------------------- Adam
    Claim("adam-bias-correction", SIMILAR, "बेहतर प्रारंभिक प्रशिक्षण के लिए पूर्वाग्रह-सुधारित।",
          "Bias-corrected for better early training.",
          "On the digits MLP, Adam's mean training loss over the first 30 steps is lower with "
          "bias correction than without (each tuned).",
          ((_r("digits-mlp", "mlp", "adam"), _r("digits-mlp", "mlp", "adam no bias correction")),),
          "early_loss", False, math.log10(1.1), "log10 early loss (uncorrected / corrected)",
          transform="log10", link="#fig-digits-mlp-loss"),
    Claim("adam-beats-rmsprop", SIMILAR, "… अक्सर बड़े डेटासेट पर आरएमएसप्रॉप से बेहतर प्रदर्शन करता है",
          "… often performs better than RMSProp on large datasets.",
          "On the digits MLP (the largest data set here, 1,000 training images) Adam's "
          "validation loss is lower than RMSProp's (each tuned).",
          ((_r("digits-mlp", "mlp", "adam"), _r("digits-mlp", "mlp", "rmsprop")),),
          "selection_loss", False, math.log10(1.1), "log10 validation loss (RMSProp / Adam)",
          transform="log10", link="#fig-digits-mlp-loss"),
    Claim("adam-fast", ADAM, "तेज़ और स्थिर convergence।", "Fast and stable convergence.",
          "Adam reaches the target loss in fewer steps than each other optimizer (paired win "
          "rate over seeds, pooled over four tasks).",
          tuple((_r(t, v, "adam"), _r(t, v, o)) for t, v in _SPEED_GROUPS for o in _OTHERS),
          "steps_to_target", False, 0.1, "win rate − ½", transform="sign",
          link="#overview"),
    Claim("adam-stable", ADAM, "तेज़ और स्थिर convergence।", "Fast and stable convergence.",
          "More of Adam's learning-rate grid (±1 decade around its best) reaches the target "
          "than of SGD's (one value per task, pooled over the eight task variants where both "
          "are tuned against a training-loss target).",
          tuple((_r(t, v, "adam"), _r(t, v, "sgd")) for t, v in _STABLE_GROUPS),
          "lr_window_share", True, 0.15, "share of the lr window reaching the target (Adam − SGD)",
          link="#overview"),
    Claim("adam-less-tuning", ADAM, "कम hyperparameter tuning की आवश्यकता।",
          "Less hyperparameter tuning is needed.",
          "Adam at its default lr (0.001) is within 25 % of Adam with a tuned lr (held-out "
          "loss, pooled over the sparse and digits tasks).",
          ((_r("sparse", "zipf", "adam default"), _r("sparse", "zipf", "adam")),
           (_r("digits-mlp", "mlp", "adam default"), _r("digits-mlp", "mlp", "adam"))),
          "selection_loss", False, LOG125, "log10 held-out loss (tuned / default)",
          transform="log10", kind="equivalent", link="#task-digits-mlp"),
    Claim("adam-noise", ADAM, "Gradient noise के प्रति मजबूत।", "Robust to gradient noise.",
          "On an ill-conditioned quadratic with noisy gradients, Adam ends at a lower loss "
          "than SGD (each tuned).",
          ((_r("quadratic", "noisy", "adam"), _r("quadratic", "noisy", "sgd")),),
          "final_loss", False, math.log10(1.25), "log10 final loss (SGD / Adam)",
          transform="log10", link="#fig-quadratic-loss"),
    Claim("adam-sparse", ADAM, "Sparse और non-stationary डेटा दोनों पर प्रभावी।",
          "Effective on both sparse and non-stationary data.",
          "Sparse part: on the Zipf features Adam's held-out loss is lower than SGD's.",
          ((_r("sparse", "zipf", "adam"), _r("sparse", "zipf", "sgd")),),
          "test_loss", False, math.log10(1.1), "log10 held-out loss (SGD / Adam)",
          transform="log10", link="#fig-sparse-loss"),
    Claim("adam-nonstationary", ADAM, "Sparse और non-stationary डेटा दोनों पर प्रभावी।",
          "Effective on both sparse and non-stationary data.",
          "Non-stationary part: on the switching stream Adam's loss after the switch is lower "
          "than SGD's.",
          ((_r("online", "switch", "adam"), _r("online", "switch", "sgd")),),
          "tracking_loss", False, math.log10(1.1), "log10 loss after the switch (SGD / Adam)",
          transform="log10", link="#fig-online-loss"),
    Claim("momentum-faster", ADAM,
          "Gradient Descent | … | धीमी … ; Momentum | … | तेज़",
          "(comparison table) Gradient descent: slow; momentum: fast.",
          "On ill-conditioned quadratics (κ = 100 and 1000) momentum reaches the target in "
          "fewer steps than gradient descent (each tuned).",
          ((_r("quadratic", "kappa100", "momentum"), _r("quadratic", "kappa100", "sgd")),
           (_r("quadratic", "kappa1000", "momentum"), _r("quadratic", "kappa1000", "sgd"))),
          "steps_to_target", False, LOG15, "log10 steps to target (GD / momentum)",
          transform="log10", link="#fig-quadratic-loss"),
    Claim("adam-memory", ADAM, "Adam | अनुकूली | अधिक (मेमोरी)",
          "(comparison table) Adam: more memory (momentum: medium, AdaGrad: low).",
          "Adam's optimizer state per parameter is larger than momentum's and AdaGrad's "
          "(measured bytes in optimizer.state).",
          ((_r("digits-mlp", "mlp", "adam"), _r("digits-mlp", "mlp", "momentum")),
           (_r("digits-mlp", "mlp", "adam"), _r("digits-mlp", "mlp", "adagrad"))),
          "state_bytes_per_param", True, 1.0, "bytes per parameter (Adam − other)",
          deterministic=True, link="#task-digits-mlp"),
    Claim("adagrad-memory", ADAM, "AdaGrad | अनुकूली | कम (मेमोरी); Momentum | स्थिर | मध्यम",
          "(comparison table) AdaGrad: low memory; momentum: medium.",
          "AdaGrad's optimizer state per parameter is smaller than momentum's.",
          ((_r("digits-mlp", "mlp", "momentum"), _r("digits-mlp", "mlp", "adagrad")),),
          "state_bytes_per_param", True, 1.0, "bytes per parameter (momentum − AdaGrad)",
          deterministic=True, link="#task-digits-mlp"),
    Claim("adamw-generalizes", SIMILAR,
          "अनुकूली लर्निंग रेट से वेट डिके को अलग करता है, जिससे … मानक एडम (और इस प्रकार "
          "आरएमएसप्रॉप) पर सामान्यीकरण में सुधार होता है।",
          "It decouples weight decay from the adaptive learning rate, which improves "
          "generalization over standard Adam (and so RMSProp).",
          "With a cosine schedule and a tuned lr × weight-decay grid, AdamW's test accuracy "
          "on a small digits training set is higher than Adam + L2's.",
          ((_r("weight-decay", "small-train", "adamw"),
            _r("weight-decay", "small-train", "adam")),),
          "test_accuracy", True, 0.01, "test accuracy (AdamW − Adam+L2)",
          link="#fig-weight-decay-loss"),
    Claim("nesterov-generalizes", SIMILAR,
          "… लेकिन अक्सर आरएमएसप्रॉप जैसे शुद्ध अनुकूली तरीकों से बेहतर सामान्यीकरण करता है।",
          "… but often generalizes better than purely adaptive methods such as RMSProp.",
          "Stopped at the same training accuracy (97 %), SGD with Nesterov momentum has a "
          "higher test accuracy than RMSProp and Adam (pooled pairs).",
          ((_r("digits-mlp", "mlp", "nesterov"), _r("digits-mlp", "mlp", "rmsprop")),
           (_r("digits-mlp", "mlp", "nesterov"), _r("digits-mlp", "mlp", "adam"))),
          "matched_test_accuracy", True, 0.01, "test accuracy at matched training accuracy "
          "(Nesterov − adaptive)", worst=0.0, link="#task-digits-mlp"),
    # ---------------------------------------------------------------- vanishing gradients
    Claim("vanishing-early-layers", VANISHING,
          "Neural Network की शुरुआती Layers ठीक से Train नहीं हो पातीं।",
          "The network's early layers do not train properly.",
          "In a 10-layer sigmoid MLP (PyTorch's default init) the first layer's gradient norm "
          "at initialization is at least 10× smaller than the last layer's.",
          ((_r("deep", "sigmoid", "sgd"), None),), "grad_ratio_log10", False, 1.0,
          "−log10(first/last layer gradient norm)", link="#fig-deep-layers"),
    Claim("relu-remedy", VANISHING,
          "ReLU (Rectified Linear Unit) Activation Function: Sigmoid और Tanh की तुलना में ReLU "
          "Gradient को Zero होने से बचाता है।",
          "ReLU: compared with sigmoid and tanh, ReLU keeps the gradient from going to zero.",
          "Same network and init, ReLU instead of sigmoid: the first/last layer gradient ratio "
          "is at least 10× larger.",
          ((_r("deep", "relu", "sgd"), _r("deep", "sigmoid", "sgd")),), "grad_ratio_log10", True,
          1.0, "log10 first/last gradient ratio (ReLU − sigmoid)", link="#fig-deep-layers"),
    Claim("batchnorm-remedy", VANISHING,
          "Batch Normalization: यह Weights को Normalized रखता है और Gradient को अधिक संतुलित "
          "बनाता है।",
          "Batch normalization keeps the weights normalized and makes the gradient more "
          "balanced.",
          "Sigmoid network with batch norm before every activation: the first/last layer "
          "gradient ratio is at least 10× larger than without.",
          ((_r("deep", "sigmoid+bn", "sgd"), _r("deep", "sigmoid", "sgd")),), "grad_ratio_log10",
          True, 1.0, "log10 first/last gradient ratio (BN − none)", link="#fig-deep-layers"),
    Claim("xavier-remedy", VANISHING,
          "Weight Initialization: Xavier और He Initialization Techniques का उपयोग किया जाता है।",
          "Weight initialization: Xavier and He initialization are used.",
          "Xavier part: a tanh network with Xavier init has a first/last gradient ratio at "
          "least 3× larger than with PyTorch's default init.",
          ((_r("deep", "tanh+xavier", "sgd"), _r("deep", "tanh", "sgd")),), "grad_ratio_log10",
          True, LOG3, "log10 first/last gradient ratio (Xavier − default)",
          link="#fig-deep-layers"),
    Claim("he-remedy", VANISHING,
          "Weight Initialization: Xavier और He Initialization Techniques का उपयोग किया जाता है।",
          "Weight initialization: Xavier and He initialization are used.",
          "He part: a ReLU network with He init has a first/last gradient ratio at least 3× "
          "larger than with PyTorch's default init.",
          ((_r("deep", "relu+he", "sgd"), _r("deep", "relu", "sgd")),), "grad_ratio_log10", True,
          LOG3, "log10 first/last gradient ratio (He − default)", link="#fig-deep-layers"),
    Claim("lstm-remedy", VANISHING,
          "LSTM और GRU: RNNs में LSTM और GRU का उपयोग किया जाता है, जिससे Gradient को याद रखने में "
          "मदद मिलती है।",
          "LSTM and GRU are used in RNNs, which helps the gradient be remembered.",
          "LSTM part: on the adding problem at T = 30 an LSTM (forget-gate bias 1) reaches a "
          "held-out MSE at least 2× lower than a tanh RNN (each tuned, Adam).",
          ((_r("adding", "lstm-T30", "adam"), _r("adding", "rnn-T30", "adam")),), "test_loss",
          False, math.log10(2), "log10 held-out MSE (RNN / LSTM)", transform="log10",
          link="#fig-adding-loss"),
    Claim("gru-remedy", VANISHING,
          "LSTM और GRU: RNNs में LSTM और GRU का उपयोग किया जाता है, जिससे Gradient को याद रखने में "
          "मदद मिलती है।",
          "LSTM and GRU are used in RNNs, which helps the gradient be remembered.",
          "GRU part: on the adding problem at T = 30 a GRU reaches a held-out MSE at least 2× "
          "lower than a tanh RNN (each tuned, Adam).",
          ((_r("adding-gru", "gru-T30", "adam"), _r("adding", "rnn-T30", "adam")),), "test_loss",
          False, math.log10(2), "log10 held-out MSE (RNN / GRU)", transform="log10",
          link="#fig-adding-gru-loss"),
    # ---------------------------------------------------------------- exploding gradients
    Claim("clipping-remedy", VANISHING,
          "Gradient Clipping: यह Gradients को एक निश्चित सीमा तक सीमित रखता है, जिससे वे अनावश्यक "
          "रूप से बड़े नहीं होते।",
          "Gradient clipping limits gradients to a fixed bound so they do not become "
          "needlessly large.",
          "A ReLU RNN whose recurrent gain explodes (2.0): with clipping (each tuned) the "
          "held-out MSE is lower than without; a diverged run counts as the worst.",
          ((_r("exploding", "clipped", "sgd"), _r("exploding", "unclipped", "sgd")),),
          "test_loss", False, math.log10(1.25), "log10 held-out MSE (unclipped / clipped)",
          transform="log10", link="#fig-exploding-gradnorm"),
    Claim("l2-remedy", VANISHING,
          "Weight Regularization: L2 Regularization से Weights की बड़ी Values को नियंत्रित किया "
          "जाता है।",
          "Weight regularization: L2 regularization controls large weight values.",
          "Same exploding RNN: SGD with a tuned L2 penalty reaches a lower held-out MSE than "
          "SGD without (each tuned).",
          ((_r("exploding", "unclipped", "sgd+L2"), _r("exploding", "unclipped", "sgd")),),
          "test_loss", False, math.log10(1.25), "log10 held-out MSE (none / L2)",
          transform="log10", link="#fig-exploding-loss"),
    Claim("lower-lr-remedy", VANISHING,
          "Lower Learning Rate: Learning Rate को छोटा करके Gradient को स्थिर रखा जाता है।",
          "Lower learning rate: making the learning rate smaller keeps the gradient stable.",
          "Same exploding RNN without clipping: at the tuned learning rate the held-out MSE "
          "is lower than at 10× that rate (a diverged run counts as the worst).",
          ((_r("exploding", "unclipped", "sgd"), _r("exploding", "unclipped", "sgd lr×10")),),
          "test_loss", False, math.log10(1.25), "log10 held-out MSE (lr×10 / tuned)",
          transform="log10", link="#fig-exploding-loss"),
    # ---------------------------------------------------------------- typical uses
    Claim("use-cnn", RMSPROP_EN,
          "RMSProp is widely utilized in various deep learning scenarios, including "
          "convolutional neural networks (CNNs) for image processing …", "(English original)",
          "On a small CNN for the digits, RMSProp's test accuracy is at least as high as "
          "plain SGD's (each tuned): higher by ≥ 1 point.",
          ((_r("digits-cnn", "cnn", "rmsprop"), _r("digits-cnn", "cnn", "sgd")),),
          "test_accuracy", True, 0.01, "test accuracy (RMSProp − SGD)", worst=0.0,
          link="#task-digits-cnn"),
    Claim("use-transformer", ADAM, "Transformer Models (BERT, GPT)",
          "(real uses) Transformer models (BERT, GPT).",
          "A tiny causal Transformer on a copy task: Adam's copy accuracy is higher than plain "
          "SGD's (each tuned) by ≥ 5 points.",
          ((_r("transformer", "copy", "adam"), _r("transformer", "copy", "sgd")),),
          "copy_accuracy", True, 0.05, "copy accuracy (Adam − SGD)", worst=0.0,
          link="#task-transformer"),
    Claim("use-gan", ADAM, "GANs और Reinforcement Learning", "GANs and reinforcement learning.",
          "GAN part: on a 2-D mixture of Gaussians, Adam's generator (β1 = 0.5, DCGAN's "
          "setting) covers more modes than plain SGD's (each tuned).",
          ((_r("gan", "beta1-0.5", "adam"), _r("gan", "beta1-0.5", "sgd")),),
          "modes_covered", True, 0.5, "modes covered (Adam − SGD)", worst=0.0,
          link="#task-gan"),
    Claim("use-dqn-adam", ADAM, "GANs और Reinforcement Learning",
          "GANs and reinforcement learning.",
          "Reinforcement-learning part: DQN on CartPole reaches a higher evaluation return "
          "with Adam than with plain SGD (each tuned).",
          ((_r("dqn", "cartpole", "adam"), _r("dqn", "cartpole", "sgd")),),
          "eval_return", True, 10.0, "evaluation return (Adam − SGD)", worst=0.0,
          link="#task-dqn"),
    Claim("use-dqn-rmsprop", RMSPROP_HI, "Deep Reinforcement Learning (जैसे DQN)",
          "Deep reinforcement learning (such as DQN).",
          "DQN on CartPole reaches a higher evaluation return with RMSProp than with plain SGD "
          "(each tuned).",
          ((_r("dqn", "cartpole", "rmsprop"), _r("dqn", "cartpole", "sgd")),),
          "eval_return", True, 10.0, "evaluation return (RMSProp − SGD)", worst=0.0,
          link="#task-dqn"),
    Claim("use-speech", RMSPROP_HI, "Speech Recognition Models", "Speech recognition models.",
          "A speech-like sequence classification proxy (not real speech): RMSProp's test "
          "accuracy is higher than plain SGD's (each tuned) by ≥ 2 points.",
          ((_r("speech", "lstm", "rmsprop"), _r("speech", "lstm", "sgd")),),
          "test_accuracy", True, 0.02, "test accuracy (RMSProp − SGD)", worst=0.0,
          link="#task-speech"),
)


def _index(summaries) -> dict:
    return {(s.task, s.variant, s.arm): s for s in summaries}


def _seed_values(summary, metric) -> dict[int, float]:
    if metric == "lr_window_share":
        swept = [(h, r) for (h, _), r in zip(summary.sweep, summary.sweep_reached)
                 if all(h.get(k) == v for k, v in summary.hparams.items() if k != "lr")]
        return {0: lr_window_share(swept, summary.hparams["lr"])} if swept else {}
    if metric == "state_bytes_per_param":
        return {seed: summary.state_bytes_per_param for seed in summary.seeds}
    values = summary.values.get(metric)
    if values is None:
        return {}
    if metric == "steps_to_target":  # not reached: one step past the budget (the worst)
        values = [summary.steps + 1 if v is None else v for v in values]
    return dict(zip(summary.seeds, values))


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _median(values: dict) -> str:
    finite = [v for v in values.values() if v is not None and math.isfinite(v)]
    return f"{statistics.median(finite):.3g}" if finite else "–"


def _arm_text(ref: Ref, s, metric) -> str:
    vals = [v for v in _seed_values(s, metric).values() if v is not None and math.isfinite(v)]
    hp = ", ".join(f"{'wd' if k == 'weight_decay' else k} {v:.3g}" for k, v in s.hparams.items()
                   if isinstance(v, float))
    centre = f"{statistics.median(vals):.3g}" if vals else "diverged"
    grid = s.grid.get("status", "")
    return (f"{ref}: median {centre} over {len(vals)} seed(s)"
            + (f", {s.diverged} diverged" if s.diverged else "")
            + f" [{hp}{'; grid ' + grid if grid and grid != 'single point' else ''}]")


def judge(claim: Claim, summaries_by_key: dict, *, ran_tasks: set, extended: bool,
          task_tiers: dict) -> Verdict:
    """The verdict on one claim from the per-arm summaries."""
    diffs: list[float] = []
    evidence: list[str] = []
    missing: set[str] = set()
    for a_ref, b_ref in claim.pairs:
        a = summaries_by_key.get((a_ref.task, a_ref.variant, a_ref.arm))
        b = summaries_by_key.get((b_ref.task, b_ref.variant, b_ref.arm)) if b_ref else None
        if a is None or (b_ref is not None and b is None):
            missing |= {r.task for r, x in ((a_ref, a), (b_ref, b))
                        if r is not None and x is None}
            continue
        va = _seed_values(a, claim.metric)
        vb = _seed_values(b, claim.metric) if b is not None else None
        seeds = sorted(set(va) & set(vb)) if vb is not None else sorted(va)
        if not seeds:
            continue
        diffs += oriented_differences([va[k] for k in seeds],
                                      [vb[k] for k in seeds] if vb is not None else None,
                                      higher_is_better=claim.higher_is_better,
                                      transform=claim.transform, worst=claim.worst)
        if len(evidence) < 6:
            evidence.append(_arm_text(a_ref, a, claim.metric)
                            + (" vs " + _arm_text(b_ref, b, claim.metric) if b is not None else ""))
            for name in claim.also:
                evidence.append(f"{name}: " + " vs ".join(
                    f"{ref.arm} {_median(_seed_values(s, name))}"
                    for ref, s in ((a_ref, a), (b_ref, b)) if s is not None))
    if not diffs and not missing:
        return Verdict(claim, INCONCLUSIVE, f"no {claim.metric} in this run (it needs the "
                       "learning-rate sweeps: not with --fast or --lr)", evidence=evidence,
                       decide_hint="run without --fast / --lr")
    if not diffs:
        needs_ext = any(task_tiers.get(t) == "extended" for t in missing)
        if needs_ext and not extended:
            return Verdict(claim, NOT_RUN, "its task runs in the extended tier: "
                           + ", ".join(sorted(missing)), evidence=evidence,
                           decide_hint="run adaptim compare --extended")
        unknown = [t for t in missing if t not in task_tiers]
        reason = ("task not in this build: " + ", ".join(sorted(unknown)) if unknown else
                  "task not run: " + ", ".join(sorted(missing)))
        return Verdict(claim, INCONCLUSIVE, reason, evidence=evidence,
                       decide_hint="run it with --task " + ",".join(sorted(missing - set(unknown)))
                       if missing - set(unknown) else "needs the task")
    effect = paired_effect(diffs, deterministic=claim.deterministic)
    status, reason = decide(effect, min_effect=claim.min_effect, delta=claim.delta,
                            kind=claim.kind)
    hint = ""
    if status == INCONCLUSIVE:
        n = seeds_needed(effect, min_effect=claim.min_effect)
        hint = (f"about {n} paired seeds (now {effect.n}) would narrow the interval enough"
                if n else "more seeds")
    if missing:
        evidence.append("not run: " + ", ".join(sorted(missing)))
    return Verdict(claim, status, reason, effect, evidence, hint)


def evaluate_claims(summaries, records=None, *, extended: bool = False,
                    claims: tuple[Claim, ...] = CLAIMS) -> list[Verdict]:
    """Every claim's verdict, in table order."""
    from adaptim.lab.tasks import TASKS

    ix = _index(summaries)
    ran = {s.task for s in summaries}
    tiers = {name: t.tier for name, t in TASKS.items()}
    return [judge(c, ix, ran_tasks=ran, extended=extended, task_tiers=tiers) for c in claims]
