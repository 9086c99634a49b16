"""Typed configuration: one YAML file, `--set key=value` overrides, one resolved copy per run.

Every section rejects unknown keys and out-of-range values with a one-line message that
names the key and what is allowed, so a typo never passes silently.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from star.active.bandit import RANDOM
from star.active.diversity import LABEL_RULES, STOCHASTIC_MODES
from star.active.measures import needs_choice_task
from star.active.strategies import GRAMMAR, STRATEGIES, get_strategy
from star.active.typicality import MAX_CLUSTERS, MIN_CLUSTER_SIZE, NEIGHBOURS
from star.data.tasks import BUILTIN_TASKS, TASK_NAMES, as_label, template_fields
from star.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.2's core rules where PyYAML keeps 1.1's, and no key given twice.

    Booleans are only true/false, so labels like yes/no/on/off stay strings; integers are
    plain decimals, so `010` is not octal 8 and `1:30` not sexagesimal 90 (a number with a
    leading zero stays the text it is, as class codes like `01` need); floats need no dot
    (`5e-4`). A key written twice in one mapping is refused: the later one would silently win.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YAML_11_ONLY = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in _YAML_11_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(Section):
    name: str = "smollm2-135m"
    """An alias (see `star.model.loading.ALIASES`), a Hugging Face hub id or a local folder."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """`auto`: bf16 compute where the hardware has fast bf16 (CUDA, CPUs with avx512_bf16)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    trust_remote_code: bool = False
    attention: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    """Transformers' attention kernel: PyTorch's fused SDPA (flash or memory-efficient kernels
    on CUDA), FlashAttention-2 (needs the `flash-attn` package and a CUDA GPU), or eager."""
    max_length: int = Field(512, gt=8)
    """Prompt + response tokens; longer prompts are cut from the left, never the answer."""


class TaskConfig(Section):
    name: str = "sst2"
    title: str | None = None
    """How tables and figures name the task. Default: a built-in's title; a custom task read
    from a config file takes the file's name (`reviews.yaml` -> `reviews`), else its data
    folder's name. Only a name: a run resumes under another title."""
    data_dir: str | None = None
    """Folder with the train/test files; null for a built-in task loads it from the hub."""
    train_file: str = "train.jsonl"
    """The pool: labeled, partly labeled or unlabeled (labels then come from annotators)."""
    test_file: str | None = "test.jsonl"
    """A labeled test set for the accuracy curve; null to run without one."""
    prompt: str | None = None
    """Template with {field} placeholders (custom tasks); built-ins have the paper's."""
    answer_field: str = "answer"
    answer_type: Literal["choice", "number", "text"] = "choice"
    labels: list[str] | None = None
    verbalizer: dict[str, str] | None = None
    """Optional map from a gold label in the data to the words the model answers with."""
    max_new_tokens: int = Field(256, gt=0)

    @field_validator("name")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASK_NAMES:
            raise ValueError(f"unknown task '{value}'; known tasks: {', '.join(TASK_NAMES)}")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> Any:
        """Labels written as numbers in YAML (`[0, 1]`) name the same strings as in the data."""
        if isinstance(value, list):
            return [as_label(v) for v in value]
        return value

    @field_validator("verbalizer", mode="before")
    @classmethod
    def _verbalizer_keys_as_text(cls, value: Any) -> Any:
        return {as_label(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("prompt")
    @classmethod
    def _well_formed_template(cls, value: str | None) -> str | None:
        """A template's mistakes named here, not as a traceback at the first record."""
        if value is None:
            return value
        try:
            names = template_fields(value)
        except ValueError as exc:
            raise ValueError(f"task.prompt is not a valid template ({exc}); write a literal "
                             "brace as {{ or }}") from None
        unnamed = [name for name in names if not name.isidentifier()]
        if unnamed:
            raise ValueError(f"task.prompt has the placeholder {{{unnamed[0]}}}; each placeholder "
                             "names a field of the data, e.g. {text} (a literal brace is {{ or }})")
        return value


CUSTOM_ONLY = ("prompt", "answer_field", "answer_type", "labels", "verbalizer")
"""TaskConfig keys a built-in task fixes itself (its paper prompt, fields and labels)."""


class LoraConfig(Section):
    r: int = Field(64, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                 "up_proj", "down_proj"]


class TrainConfig(Section):
    epochs: int = Field(15, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(3e-5, gt=0)
    weight_decay_b: float = Field(0.5, ge=0)
    """β of the hybrid regularisation (Sec. 5.3), used by strategies with the L2 switch."""
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradients are clipped to this global norm every step (neither the paper nor its code
    clips; 1.0 is transformers' Trainer default)."""
    decay_b_always: bool = False
    """Apply β to `lora_B` for every strategy, `random` included, as the paper's code does;
    false: only for strategies with the L2 switch (the paper's text)."""
    balance: Literal["none", "classes"] = "none"
    """`classes`: each example's loss weighted n / (classes · n_class), so the classes of the
    labels so far weigh alike (choice tasks; a lopsided warm start teaches its prior); `auto`'s
    reward then weighs them alike too."""
    init: Literal["fresh", "continue"] = "fresh"
    """`fresh`: every round trains a new adapter from the same initial weights (paper code)."""
    retries: int = Field(2, ge=0)
    """A round whose adapter fits its own labels worse than the base model does (balanced
    accuracy on them; accuracy for generative tasks) trains again under the next training draw,
    up to this many times, and keeps the first draw that fits; where none fits, the round hands
    out the base model (`active.refit`). 0: never, as the paper's code."""
    beat_chance: bool = True
    """Under `retries`, a draw fits only above chance on its labels too (balanced accuracy 1 /
    the classes they hold; choice tasks): an adapter answering one class to everything does not
    pass where the base model scores under chance on them, and labels of one class (chance 1)
    train one draw and hand out the base model (`active.refit`). false: as before the key."""


class UncertaintyConfig(Section):
    mc_passes: int = Field(3, gt=0)
    schedule: Literal["linear", "exp", "cosine", "constant", "evidence"] = "linear"
    """λ(t) of the dynamic mix (`mixing.schedule_weight`); `evidence`: `linear` times the base
    model's skill on the labels so far, its accuracy over chance (0 when at or below chance)."""
    rate: float = Field(0.1, gt=0)
    """Step of `linear` and `evidence` (λ = 1 − rate·(t+1)) and decay of `exp`
    (λ = exp(−rate·(t+1)))."""
    constant: float = Field(0.5, ge=0, le=1)
    mix: Literal["weighted", "subtract"] = "weighted"
    """`weighted`: Eq. 5; `subtract`: μ_f − μ_b, after the paper code's
    `Entropy_subtract_get_value` (raw μ_f minus μ_b normalised over the whole pool: with
    `normalise: paper`)."""
    normalise: Literal["pool", "paper"] = "pool"
    """`pool`: μ_b and μ_f min-max normalised over the unlabeled pool; `paper`: as the paper's
    code, μ_b normalised over the whole pool and μ_f raw."""
    response: Literal["own", "gold"] = "own"
    """ME over the model's own response (label-free) or, as the paper's code, the gold one."""
    batch_size: int = Field(32, gt=0)
    part_size: int = Field(1024, gt=0)
    """Examples per part of a pass over the pool or the test set: a finished part is saved
    (a killed pass resumes from it) and the parts are shared between processes. MC-dropout
    masks are drawn per part, so a pool under one part scores as before parts existed."""


class SelectionConfig(Section):
    candidates: int = Field(4, ge=0)
    """`+kcenter`/`+badge`: the batch is chosen among the candidates·step most uncertain
    examples; 0: among the whole unlabeled pool (pure diversity)."""
    beta: float = Field(1.0, gt=0)
    """`+power`/`+softmax`: sampling weights score^β or exp(β·score) (Kirsch et al. 2022)."""
    shortlist: int = Field(0, ge=0)
    """MC-dropout strategies: c > 0 runs one MC pass over the unlabeled pool and the
    `uncertainty.mc_passes` passes only over the c·step examples it ranks highest, which are
    ranked first (`shortlist`); 0: every pass over the whole pool."""
    neighbours: int = Field(NEIGHBOURS, gt=0)
    """typiclust: typicality is 1 / the mean distance to this many nearest neighbours in the
    example's cluster (Hacohen et al. 2022); m // 2 in a cluster of m < 2k unlabeled examples,
    as the reference code."""
    max_clusters: int = Field(MAX_CLUSTERS, gt=0)
    """typiclust: k-means into |labeled| + step clusters, at most this many (k-means costs
    pool·clusters·hidden size a step)."""
    min_cluster_size: int = Field(MIN_CLUSTER_SIZE, ge=0)
    """typiclust: a cluster of fewer examples is picked from only once the larger ones run
    out, and scores 0 in the `typiclust-` mix: outliers (the reference code drops clusters of
    5 or fewer); 0 treats every cluster alike."""


DEFAULT_ARMS = (RANDOM, "me-star", "margin", "typiclust")
"""`auto`'s arms unless told: the hedge (random), the paper's method, a cheap uncertainty and the
cold-start strategy, one of each kind the study compares (docs/label-savings)."""


class BanditConfig(Section):
    """`auto` (`star.active.bandit`): active learning by learning, a bandit over strategies."""

    arms: list[str] | None = None
    """The strategies whose mixture draws each batch; random is always one of them. null:
    those of `DEFAULT_ARMS` that the task and LoRA allow (a generative task gives margin no
    label distribution, lora.dropout = 0 gives me-star no MC dropout), saved resolved."""
    floor: float | None = Field(None, gt=0)
    """p_min, every arm's least share of a draw, at most 1/len(arms); null: libact's
    √(ln N / (N·T)) for N arms and T = loop.budget − loop.warm_start picks, at most 1/N."""
    delta: float = Field(0.1, gt=0, lt=1)
    """δ of Exp4.P (its bound holds with probability 1 − δ): a smaller δ raises the bonus that
    keeps arms with few draws in play."""

    @field_validator("arms")
    @classmethod
    def _arms_are_strategies(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        for name in value:
            if name not in STRATEGIES or STRATEGIES[name].bandit:
                raise ValueError(f"bandit.arms: '{name}' cannot be an arm; an arm is any "
                                 f"strategy but auto: {GRAMMAR}")
        if RANDOM not in value or len(value) < 2 or len(set(value)) != len(value):
            raise ValueError(f"bandit.arms {value} must name distinct strategies, random and at "
                             "least one more (e.g. [random, me-star, margin, typiclust])")
        return value

    @model_validator(mode="after")
    def _floor_fits(self) -> BanditConfig:
        """N arms of at least p_min each: p_min·N ≤ 1."""
        if self.floor is not None and self.arms and self.floor * len(self.arms) > 1:
            raise ValueError(f"bandit.floor ({self.floor}) must be in (0, 1/{len(self.arms)}] "
                             f"with {len(self.arms)} arms, or null for libact's default")
        return self


class GuardConfig(Section):
    """The prompt guard (`star.active.prompt_guard`): a round hands out the base model instead of
    its adapter when the labels say the adapter is worse."""

    folds: int = Field(4, ge=0)
    """k of the k-fold cross-validation on the labels so far (leave-one-out while there are
    fewer labels than k); 0 turns the guard off."""
    max_labels: int | None = Field(64, gt=0)
    """The guard checks rounds up to this many labels, counted as `reach` says (null: every
    round). Each check trains k adapters; beyond a few dozen labels the tuned model beat the
    prompt on average in every study but one: where a class stays rare (docs/label-savings
    2.14, SST-2 with 2 % negatives) most adapters kept past 32 labels scored below it."""
    reach: Literal["labels", "rarest_class"] = "rarest_class"
    """What `max_labels` counts: `labels`, a round's labels (STAR before this key);
    `rarest_class`, on a choice task, the rarest class's labels times the number of classes:
    a round's labels where the classes are balanced, fewer where one stays rare, so that the
    check goes on there. On the 2 % pool (docs/label-savings 2.14) adapters kept past the
    study's reach ended below the prompt; checked at every round, neither strategy was shown
    below it. The cost is then bounded by the classes' shares, not by `max_labels`: a class
    that stays under `max_labels` / classes labels keeps every round checked (`star plan`
    shows it; `labels` bounds it)."""
    min_per_class: int = Field(4, ge=0)
    """A choice task's round keeps its adapter only once every class has this many labels, or
    under `short_class: score_the_rest` once two classes have and the check on them passes (0:
    no minimum): a class's held-out recall over fewer is too coarse to trust (1 label: 0 or
    1), and an adapter that saw one or two of a rare class tends to answer the majority."""
    short_class: Literal["base", "score_the_rest"] = "score_the_rest"
    """Where a class has under `min_per_class` labels: `base`, the round hands out the base
    model unchecked (STAR before this key); `score_the_rest`, the check scores both models on
    the classes that have enough, where two or more do (else the base model, as under `base`):
    a prompt no better than the adapter on those is not handed out for want of one rare class.
    On TREC-6, whose prompt is near chance, 389 recorded adapters with a class under 4 labels
    scored 38 points above it (docs/label-savings 2.14)."""
    select_with: Literal["trained", "handed"] = "trained"
    """The model that picks the next batch where the guard hands out the base model: `trained`,
    the adapter the round trained (the guard guards what is handed out, not the search, and the
    paper's loop selects with it), or `handed`, the base model handed out (STAR before this key;
    the label-savings study's recipe). Under `handed`, on a task whose base model is below
    chance, the base model's uncertainty may never reach a rare class, its minimum is never met
    and, under `short_class: base`, the run stays at the prompt (a cold-start deadlock; README,
    "Small budgets")."""

    @field_validator("folds")
    @classmethod
    def _folds_split(cls, value: int) -> int:
        if value == 1:
            raise ValueError("guard.folds is 1: cross-validation needs 2 or more folds (0 turns "
                             "the guard off)")
        return value


class LoopConfig(Section):
    warm_start: int = Field(500, gt=0)
    step: int = Field(500, gt=0)
    budget: int = Field(5000, gt=0)
    pool_size: int | None = Field(None, gt=0)
    test_size: int | None = Field(None, gt=0)
    warm_start_strategy: Literal["random", "typiclust"] = "random"
    """How round 0 picks its `warm_start` examples, whatever the strategy: at random, or by
    TypiClust over the base model's hidden states (label-free, for a cold start)."""
    annotator: Literal["oracle", "people"] = "oracle"
    """`oracle`: labels read from the pool's answer field (a simulation); `people`: the loop
    writes each round's batch and waits for labels from the page or an import."""
    stop_set_size: int = Field(200, gt=0)
    """Without a test set: unlabeled pool examples whose predictions are compared between
    rounds (agreement, the stopping signal)."""
    target_accuracy: float | None = Field(None, gt=0, le=1)
    """The learning-curve forecast also says how many labels reach this test accuracy."""
    blind_labeling: bool = False
    """People label without seeing the model's suggestion and confidence (the page and the
    exported batches leave them out), so they cannot anchor on its guess."""
    keep_adapters: Literal["all", "last"] = "all"
    """`all`: every round's adapter stays in its round folder, for `star probe confidence
    --round` and (under `train.init: continue`) `star noise` on any round; `last`: once round
    k is recorded, the adapters of the rounds before it are deleted (75 MB a round for
    SmolLM2-135M at r = 64; a study of 200 runs of ten rounds fills a disk), and under
    `train.init: continue` round k − 1's stays too (`star noise` retrains round k from it). A
    run resumes, reopens and exports from its last round alone, so `last` changes no number."""

    @model_validator(mode="after")
    def _warm_start_within_budget(self) -> LoopConfig:
        if self.warm_start > self.budget:
            raise ValueError(
                f"loop.warm_start ({self.warm_start}) is larger than loop.budget ({self.budget})")
        return self


class StarConfig(Section):
    strategy: str = "auto"
    """The evidence's choice, the hedge, not the paper's method (`me-star`): on TREC-6, whose
    base model is at chance, me-star and me ended 12 macro-F1 points below random (10 paired
    seeds, p ≤ 0.02) while auto was not shown below it, and on SST-2 with 10 % negatives auto
    was level with me and neither was shown to beat random (docs/label-savings 2.2–2.6)."""
    seed: int = Field(0, ge=0)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        get_strategy(value)
        return value

    @model_validator(mode="after")
    def _custom_keys_for_custom_tasks(self) -> StarConfig:
        """A built-in task would silently keep its own prompt and labels."""
        if self.task.name != "custom":
            given = [key for key in CUSTOM_ONLY
                     if getattr(self.task, key) != TaskConfig.model_fields[key].default]
            if given:
                raise ValueError(f"task.{given[0]} is only for task.name: custom; the built-in "
                                 f"task '{self.task.name}' has its own prompt, fields and labels "
                                 "(set task.name: custom to use yours)")
        return self

    @model_validator(mode="after")
    def _room_for_the_prompt(self) -> StarConfig:
        """A generative answer takes up to task.max_new_tokens of model.max_length; with no room
        left the prompt would be cut to one token."""
        if self.generative and self.model.max_length <= self.task.max_new_tokens:
            raise ValueError(f"model.max_length ({self.model.max_length}) must be larger than "
                             f"task.max_new_tokens ({self.task.max_new_tokens}) for a "
                             f"generative task, or the prompt is cut to one token")
        return self

    @model_validator(mode="after")
    def _strategy_fits(self) -> StarConfig:
        """Refuse a strategy that cannot do what its name says with this task and LoRA."""
        strategy = get_strategy(self.strategy)
        if strategy.mc_dropout and self.lora.dropout == 0:
            raise ValueError(f"strategy '{self.strategy}' samples LoRA dropout masks (MC "
                             "dropout), which lora.dropout = 0 turns off; set lora.dropout > 0")
        if strategy.measure == "bald" and self.uncertainty.mc_passes < 2:
            raise ValueError(f"strategy '{self.strategy}' measures disagreement between MC "
                             "passes; set uncertainty.mc_passes to 2 or more")
        if self.generative and (needs_choice_task(strategy.measure) or strategy.rule in LABEL_RULES):
            raise ValueError(f"strategy '{self.strategy}' reads a label distribution, which a "
                             f"generative task has not; use me, pe or bald (with +kcenter for "
                             f"diverse batches)")
        if strategy.rule == "power" and self.uncertainty.mix == "subtract" and strategy.dynamic:
            raise ValueError(f"strategy '{self.strategy}' samples with weights score^β, but "
                             "uncertainty.mix = subtract gives negative scores; use +softmax")
        if strategy.typical and strategy.dynamic and self.uncertainty.mix == "subtract":
            raise ValueError(f"strategy '{self.strategy}' moves from typicality to uncertainty by "
                             "λ(t), which uncertainty.mix = subtract has not; use mix: weighted")
        if self.uncertainty.schedule == "evidence" and strategy.typical and strategy.dynamic:
            raise ValueError(f"uncertainty.schedule: evidence weighs the base model by its accuracy "
                             f"on the labels, but strategy '{self.strategy}' puts typicality in "
                             "its place, which that accuracy says nothing of; use linear")
        if self.selection.shortlist and strategy.mc_dropout and strategy.measure == "bald":
            raise ValueError(f"selection.shortlist ranks the pool by one MC pass, but strategy "
                             f"'{self.strategy}' measures disagreement between passes; set "
                             "selection.shortlist: 0")
        if self.selection.shortlist and strategy.mc_dropout and strategy.rule in STOCHASTIC_MODES:
            raise ValueError(f"selection.shortlist ranks the shortlist first, but strategy "
                             f"'{self.strategy}' samples by the scores' size; set "
                             "selection.shortlist: 0")
        return self

    @model_validator(mode="after")
    def _arms_fit(self) -> StarConfig:
        """Default arms become those that fit this task and LoRA, written into the config so
        that config.yaml says which arms ran; `auto` refuses a chosen arm that
        `_strategy_fits` would refuse as the strategy."""
        if self.bandit.arms is None:  # into a copy: the caller's BanditConfig stays as given
            arms = [arm for arm in DEFAULT_ARMS if self._refusal(arm) is None]
            self.bandit = self.bandit.model_copy(update={"arms": arms})
        elif get_strategy(self.strategy).bandit:
            for arm in self.bandit.arms:
                refusal = self._refusal(arm)
                if refusal is not None:
                    raise ValueError(f"bandit.arms: {refusal}")
        return self

    def _refusal(self, strategy: str) -> ValueError | None:
        """Why `_strategy_fits` refuses `strategy` in this config, or None."""
        try:
            self.model_copy(update={"strategy": strategy})._strategy_fits()
        except ValueError as exc:
            return exc
        return None

    @property
    def generative(self) -> bool:
        builtin = BUILTIN_TASKS.get(self.task.name)
        return (builtin.answer_type if builtin else self.task.answer_type) != "choice"

    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    selection: SelectionConfig = SelectionConfig()
    loop: LoopConfig = LoopConfig()
    guard: GuardConfig = GuardConfig()
    bandit: BanditConfig = Field(default_factory=BanditConfig)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` ("train.lr") in a nested config tree, making its sections as needed."""
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{dotted}': '{key}' is not a section")
        node = child
    current = node.get(keys[-1])
    if isinstance(current, dict) and isinstance(value, dict):
        for key, inner in value.items():  # `train={lr: 1e-4}` changes lr, keeps the rest
            set_dotted(current, str(key), inner)
    else:
        node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`loop.budget=300` -> ("loop.budget", 300); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), read_yaml(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"override '{text}': the value is not valid YAML ({problem})") from None


def _describe(error: ValidationError, tree: dict[str, Any]) -> str:
    """One line for the first problem, naming the key and what it allows."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "config"
    if first["type"] == "extra_forbidden":
        section: type[BaseModel] = StarConfig
        for part in loc[:-1]:
            annotation = section.model_fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                section = annotation
        allowed = ", ".join(section.model_fields)
        return f"unknown config key '{key}'; allowed here: {allowed}"
    if first["type"] == "literal_error":
        return f"config key '{key}': {first['msg']} (got {first['input']!r})"
    if first["type"] == "value_error":
        return first["msg"].removeprefix("Value error, ")
    hint = ""
    if first["type"] == "string_type" and isinstance(first["input"], dict | list):
        hint = "; YAML read the value as a mapping or list: quote it, e.g. --set 'key=\"a: {b}\"'"
    return f"config key '{key}': {first['msg']} (got {first['input']!r}){hint}"


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> StarConfig:
    """Read a YAML file (or the defaults when `path` is None) and apply `key=value` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            tree = read_yaml(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file '{path}' is not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
    try:
        config = StarConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, tree)) from None
    if config.task.data_dir is not None:
        config.task.data_dir = str(Path(config.task.data_dir).expanduser().resolve())
    if path is not None and config.task.title is None and config.task.name == "custom":
        config.task.title = path.stem
    return config


CHANGES_NO_NUMBER = frozenset({"task.title", "loop.keep_adapters"})
"""Keys that change no number (a name; which files a run keeps): a run may resume under new
values, and runs that differ only in them are one setup."""

EARLIER = {"guard.select_with": "handed", "train.retries": 0, "train.beat_chance": False,
           "guard.reach": "labels", "guard.short_class": "base"}
"""Keys added with a default that does otherwise than STAR did before them: the value that did
what STAR did. A config saved before such a key reads as holding this value (`saved_keys`)."""


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"loop": {"step": 5}} -> {"loop.step": 5}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@functools.cache
def default_keys() -> dict[str, Any]:
    """STAR's default config as dotted keys, built once per process (a report reads it for
    every run it groups); shared, so callers only read it."""
    return flatten(StarConfig().model_dump())


def saved_keys(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config as dotted keys, with every key added to STAR since at the value that did
    what the run did: `EARLIER`'s, else the key's default.

    A run of a strategy other than `auto` saved before the default arms came to depend on the
    task holds all of `DEFAULT_ARMS`, which it never read; it reads as holding the arms its
    config resolves to now, so that it resumes, and shares a setup with new runs, as before."""
    keys = {**default_keys(), **EARLIER, **flatten(saved)}
    if keys["bandit.arms"] == list(DEFAULT_ARMS):
        tree = copy.deepcopy(saved)
        set_dotted(tree, "bandit.arms", None)
        with contextlib.suppress(ValidationError):  # a config STAR no longer takes: as saved
            now = StarConfig.model_validate(tree)
            if not get_strategy(now.strategy).bandit:
                keys["bandit.arms"] = now.bandit.arms
    return keys


def as_begun(config: StarConfig, saved: dict[str, Any]) -> tuple[StarConfig, list[str]]:
    """`config` for resuming a run saved as `saved`, which goes on as it began: each key of
    `EARLIER` that the saved config lacks and `config` holds at its default takes the earlier
    value. Returns also the keys so taken."""
    written, now = flatten(saved), flatten(config.model_dump())
    taken = [key for key, value in EARLIER.items()
             if key not in written and now[key] == default_keys()[key] != value]
    if not taken:
        return config, []
    tree = config.model_dump()
    for key in taken:
        set_dotted(tree, key, EARLIER[key])
    return StarConfig.model_validate(tree), taken


def config_text(config: StarConfig | dict[str, Any]) -> str:
    """The fully resolved config (or a saved one, as a tree) as YAML, as saved next to every
    result."""
    tree = config if isinstance(config, dict) else config.model_dump()
    return yaml.safe_dump(tree, sort_keys=False)
