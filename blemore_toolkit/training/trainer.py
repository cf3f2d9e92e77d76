"""``BlemoreTrainer``: the transformers ``Trainer`` whose ``push_to_hub()`` uploads the BLEMORE model card.

``Trainer.push_to_hub()`` saves the model, writes a model card with ``create_model_card`` and uploads the output
folder. transformers' own card is generic (hyperparameters, a loss table); for a BLEMORE model this class writes the
card ``model.push_to_hub`` writes (``blemore_toolkit.modeling.model_card_blemore``: encoders, decoding rule, usage
with the pipeline, limitations, citation), with what the run knows added: the last evaluation's challenge metrics as
the validation table and a paragraph on how the model was trained. The same facts are saved beside the weights
(``blemore_card.json``) by ``save_model`` and ``create_model_card``, so a later ``model.push_to_hub`` of a saved
folder writes the same card. Any other model gets transformers' card.

```python
args = TrainingArguments(..., hub_model_id="me/blemore-videomae")
trainer = BlemoreTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["validation"],
                         data_collator=ClipCollator(processor), processing_class=processor,
                         compute_metrics=challenge_metrics(model.config))
trainer.train()
trainer.evaluate()
trainer.push_to_hub()  # weights, code, processor and the BLEMORE card with the evaluation's accuracies
```
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from transformers import PreTrainedModel, Trainer

from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.modeling.configuration_blemore import BlemoreConfig
from blemore_toolkit.modeling.model_card_blemore import (
    is_hub_id,
    read_card_facts,
    render_model_card,
    write_card_facts,
)

#: The challenge metrics ``challenge_metrics`` reports (``eval_`` + these), the validation table's columns.
CHALLENGE_METRICS = ("acc_presence", "acc_salience", "score")
#: The decoder thresholds ``challenge_metrics`` tunes and reports (``eval_`` + these).
THRESHOLDS = ("presence_threshold", "salience_threshold")
#: The evaluation prefix of ``Trainer.evaluate`` (``metric_key_prefix``).
EVAL_PREFIX = "eval"


class BlemoreTrainer(Trainer):
    """A ``transformers.Trainer`` that writes the BLEMORE model card for a BLEMORE model.

    Everything else is the Trainer's. ``save_model`` also saves the card facts beside the weights, and
    ``create_model_card`` (which ``push_to_hub`` calls) writes ``output_dir/README.md``; see the module docstring.
    """

    def blemore_model(self) -> PreTrainedModel | None:
        """The model being trained, unwrapped (DDP, compiled, ...), if it is a BLEMORE model; else None.

        Known by its config's ``model_type``: a model loaded as Hub remote code (``trust_remote_code=True``) is a
        BLEMORE model of another class object than this toolkit's."""
        model = self.accelerator.unwrap_model(self.model) if self.model is not None else None
        is_blemore = isinstance(model, PreTrainedModel) and (
            getattr(model.config, "model_type", None) == BlemoreConfig.model_type)
        return model if is_blemore else None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Save as the Trainer does; for a BLEMORE model, with this run's card facts beside the weights."""
        super().save_model(output_dir, _internal_call=_internal_call)
        folder = output_dir if output_dir is not None else self.args.output_dir
        if self.blemore_model() is not None and self.args.should_save and os.path.isdir(folder):
            write_card_facts(folder, **self.card_facts(folder))

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | list[str] | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Write the BLEMORE model card to ``output_dir/README.md`` (main process only) and save its facts there.

        For a model that is not a BLEMORE model this is ``Trainer.create_model_card``, with every keyword.

        For a BLEMORE model the card is titled and its usage written with ``self.hub_model_id`` (the repo
        ``push_to_hub`` creates; else ``args.hub_model_id``, else ``model_name``, else the output folder's name, as
        transformers names it), and holds the last evaluation's ``eval_acc_presence``/``eval_acc_salience``/
        ``eval_score`` (what ``challenge_metrics`` reports; one row per evaluated set, see ``evaluations``) as the
        validation table, and how the model was trained (epochs, steps, learning rate, batch size, world size, the
        evaluation sets, whether α/β are those an evaluation tuned). Of the keywords:

        - ``dataset`` (or ``dataset_tags``, as transformers uses them): the first Hub dataset id among them is the
          card's dataset (``datasets`` and the model-index's dataset type); names that are no Hub id are ignored;
        - ``finetuned_from``: the card's ``base_model`` (default: the Hub ids the encoders were loaded from);
        - ``tags``: added to the card's own tags (``blemore``, ``emotion-recognition``, ``audio-visual``);
        - ``model_name``: the title's repo id when there is no Hub repo yet;
        - ``language``, ``license``, ``tasks``, ``dataset_args`` are not used: the card has no language, its licence
          is BLEMORE's terms, its ``pipeline_tag`` is the task the model's pipeline is registered for.

        Facts given here (dataset, base model, tags) and the run's are saved with ``write_card_facts``, merged with
        those already saved beside the weights, so a later ``model.push_to_hub`` of the folder writes this card.
        """
        model = self.blemore_model()
        if model is None:
            return super().create_model_card(
                language=language, license=license, tags=tags, model_name=model_name, finetuned_from=finetuned_from,
                tasks=tasks, dataset_tags=dataset_tags, dataset=dataset, dataset_args=dataset_args,
            )  # fmt: skip
        if not self.is_world_process_zero():
            return None
        folder = self.args.output_dir
        os.makedirs(folder, exist_ok=True)
        given = {"dataset_repo": _first_hub_id(dataset) or _first_hub_id(dataset_tags),
                 "base_model": _names(finetuned_from) or None, "tags": _names(tags) or None}
        facts = self.card_facts(folder, **given)
        write_card_facts(folder, **facts)
        repo_id = self.hub_model_id or self.args.hub_model_id or model_name or Path(folder).absolute().name
        card = render_model_card(model.config, repo_id, **facts)
        write_text_atomically(os.path.join(folder, "README.md"), card)
        return None

    def card_facts(self, folder, **given) -> dict:
        """The card facts of this run (keywords of ``render_model_card``), over those already saved in ``folder``.

        The validation table and training paragraph are this run's once it has trained or evaluated (a model
        trained further is not the one the saved results describe); the dataset, base model, metric repo and tags
        saved there stay unless ``given`` anew (tags are added to)."""
        facts = read_card_facts(folder)
        validation = self.validation_results()
        trained = self.state.global_step > 0
        if trained or validation is not None:
            facts["validation"] = validation
        if trained:
            facts["training"] = self.training_paragraph(given.get("dataset_repo") or facts.get("dataset_repo"))
        tags = [*facts.get("tags", []), *(given.pop("tags", None) or [])]
        facts.update({key: value for key, value in given.items() if value is not None})
        facts["tags"] = list(dict.fromkeys(tags)) or None
        return {key: value for key, value in facts.items() if value is not None}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = EVAL_PREFIX):
        """``Trainer.evaluate``, remembering which set each metric prefix was computed on (the card's row names)."""
        dataset, name = self.eval_dataset if eval_dataset is None else eval_dataset, None
        if isinstance(dataset, str):  # a name of the eval_dataset dict, as Trainer.evaluate passes it
            name, dataset = dataset, self.eval_dataset[dataset]
        if not isinstance(dataset, dict):
            sets = self.__dict__.setdefault("_card_eval_sets", {})
            sets.pop(metric_key_prefix, None)  # the latest evaluation last
            name = name or _split_name(dataset) or _default_set_name(dataset is self.eval_dataset, metric_key_prefix)
            sets[metric_key_prefix] = (name, _length(dataset))
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def evaluations(self) -> list[tuple[str, int | None, dict]]:
        """The last challenge metrics per evaluated set: ``(set name, clips, {metric: value, "presence_threshold",
        ...})``, from ``state.log_history`` (an entry with all of ``{prefix}_acc_presence``, ``_acc_salience``,
        ``_score``).

        Sets are named as ``evaluate`` saw them: the name in an ``eval_dataset`` dict, the split of a dataset config
        (``"fold0 validation"``), the ``metric_key_prefix`` chosen, else ``"eval_dataset"``; evaluations of a run
        resumed from a checkpoint are named after ``eval_dataset``."""
        known = dict(self.__dict__.get("_card_eval_sets", {}))
        if isinstance(self.eval_dataset, dict):
            defaults = {f"{EVAL_PREFIX}_{name}": (name, _length(data)) for name, data in self.eval_dataset.items()}
        elif self.eval_dataset is not None:
            defaults = {EVAL_PREFIX: (_split_name(self.eval_dataset) or "eval_dataset", _length(self.eval_dataset))}
        else:
            defaults = {}
        found = []
        for prefix, (name, clips) in {**defaults, **known}.items():
            for entry in reversed(self.state.log_history):
                if all(isinstance(entry.get(f"{prefix}_{key}"), (int, float)) for key in CHALLENGE_METRICS):
                    values = {key: float(entry[f"{prefix}_{key}"]) for key in (*CHALLENGE_METRICS, *THRESHOLDS)
                              if isinstance(entry.get(f"{prefix}_{key}"), (int, float))}
                    found.append((name if name not in [n for n, _, _ in found] else f"{name} ({prefix})", clips,
                                  values))
                    break
        return found

    def validation_results(self) -> dict | None:
        """The last evaluations' challenge metrics as ``render_model_card``'s validation table (None without one):
        one row per evaluated set (see ``evaluations``), described as the Trainer's evaluation, not as folds."""
        evaluations = self.evaluations()
        if not evaluations:
            return None
        rows = {name: {key: values[key] for key in CHALLENGE_METRICS} for name, _, values in evaluations}
        what = "each evaluation set" if len(rows) > 1 else "the evaluation set"
        return {"folds": rows,
                "description": f"The last evaluation of the Trainer run on {what}; presence and salience accuracy as "
                               "the challenge computes them."}

    def training_paragraph(self, dataset_repo: str | None = None) -> str:
        """How the model was trained, from the TrainingArguments and the Trainer's state, in one paragraph."""
        args, state = self.args, self.state
        train_set, clips = _split_name(self.train_dataset), _length(self.train_dataset)
        link = f"[{dataset_repo}](https://huggingface.co/datasets/{dataset_repo})"
        hub = f"the Hub dataset {link}" if dataset_repo else ""
        data = " of ".join(part for part in (f"`{train_set}`" if train_set else "", hub) if part) or "its training set"
        if clips is not None:
            data += f" ({clips} clips)"
        per_device = args.per_device_train_batch_size
        accumulation = args.gradient_accumulation_steps
        batch = per_device * accumulation * args.world_size
        schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        steps = f"{_count(state.epoch or 0, 'epoch')}, {_count(state.global_step, 'optimizer step')}"
        processes = _count(args.world_size, "process", "processes")
        text = (f"Trained with the transformers Trainer (`BlemoreTrainer`) on {data}: {steps}, learning rate "
                f"{args.learning_rate:g} ({schedule} schedule), batch size {batch} ({per_device} per device × "
                f"{processes}" + (f" × {accumulation} accumulation steps" if accumulation > 1 else "")
                + f"), seed {args.seed}.")
        evaluations = self.evaluations()
        if not evaluations:
            return text + " No evaluation with the challenge metrics was recorded."
        named = [f"`{name}`" + (f" ({clips} clips)" if clips is not None else "") for name, clips, _ in evaluations]
        text += f" Evaluated on {', '.join(named)} with the challenge metrics."
        config = self.blemore_model().config
        tuned_on = [name for name, _, values in evaluations if all(key in values for key in THRESHOLDS) and all(
            math.isclose(values[key], getattr(config, key)) for key in THRESHOLDS)]
        if tuned_on:
            text += f" The decoder's thresholds α/β are those the last evaluation on `{tuned_on[-1]}` tuned."
        return text


def _names(value) -> list[str]:
    """A keyword that takes a name or a list of names, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(name) for name in value]


def _first_hub_id(value) -> str | None:
    return next((name for name in _names(value) if is_hub_id(name)), None)


def _split_name(dataset) -> str | None:
    """``"fold0 validation"`` for a ``datasets.Dataset`` loaded as a split of a config (no paths: cards are public)."""
    split = getattr(dataset, "split", None)
    if split is None:
        return None
    config = getattr(getattr(dataset, "info", None), "config_name", None)
    name = f"{config} {split}" if config and config != "default" else str(split)
    return name.replace("`", "'")


def _default_set_name(is_eval_dataset: bool, prefix: str) -> str:
    """A set that names itself nowhere: by its ``metric_key_prefix`` when one was chosen (``"test"``), else by where it
    came from."""
    if prefix != EVAL_PREFIX:
        return prefix.removeprefix(f"{EVAL_PREFIX}_")
    return "eval_dataset" if is_eval_dataset else "evaluation set"


def _length(dataset) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None


def _count(value: float, unit: str, units: str | None = None) -> str:
    """``"1 epoch"``, ``"2 epochs"``, ``"2.50 epochs"``."""
    number = f"{value:g}" if float(value).is_integer() else f"{value:.2f}"
    return f"{number} {unit if number == '1' else units or unit + 's'}"


__all__ = ["BlemoreTrainer"]
