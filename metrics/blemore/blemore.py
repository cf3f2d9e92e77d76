"""BLEMORE challenge metrics: presence accuracy, salience accuracy and their mean, the challenge score.

The arithmetic lives beside this file in ``challenge.py``; the toolkit (``blemore score``, the Trainer's
``compute_metrics``) imports it as ``blemore_toolkit.metrics.blemore.challenge``, so this module and the command
line cannot disagree. The folder needs nothing but ``evaluate``, ``datasets`` and numpy: it loads where the toolkit
is not installed. A copy must keep the folder's name: ``evaluate.load(FOLDER)`` looks for ``FOLDER/FOLDER.py``.
"""

import datasets
import evaluate

from .challenge import challenge_scores, check_clips, entry_problem

_CITATION = """\
@misc{lachmann2026blemore,
  title         = {Not all Blends are Equal: The {BLEMORE} Dataset of Blended Emotion Expressions with Relative
                   Salience Annotations},
  author        = {Lachmann and others},
  year          = {2026},
  eprint        = {2601.13225},
  archivePrefix = {arXiv},
}
"""

_DESCRIPTION = """\
The two official metrics of the BLEMORE challenge (blended emotion recognition with relative salience).

ACC_presence, over every clip: a prediction is correct when its set of emotion codes equals the true set
(order and salience ignored). ACC_salience, over clips whose truth is a blend only: correct when the prediction
has exactly two emotions and {emotion: round(salience)} equals the truth, saliences in percent (70/30, 50/50,
30/70). A single-emotion prediction on a blend is wrong for both. The challenge score is the mean of the two.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `dict`): per clip, the predicted emotions as
        `{"emotion": code, "salience": percent}` with codes `ang disg fea hap sad neu`; a single emotion carries
        salience 100, a blend two entries whose saliences sum to 100. Order inside a clip does not matter.
    references (`list` of `list` of `dict`): per clip, the true emotions in the same form.
    strict (`bool`, *optional*, defaults to `True`): check every clip first and raise `ValueError` naming the
        clip's index and the problem: an unknown emotion code (`joy`, `anger`), saliences that are fractions
        (0.7/0.3) or do not add up to 100, more than two entries, a code given twice. `strict=False` scores such
        clips as the challenge's own scorer does (wrong, never an error). Entries that lack a key or have an
        unknown one always raise `ValueError`.

Returns:
    acc_presence (`float`): fraction of clips whose set of predicted emotions is right. Range 0 to 1.
    acc_salience (`float`): fraction of blend clips whose two emotions and rounded saliences are right.
        Range 0 to 1; NaN when no reference is a blend.
    score (`float`): the challenge score, the mean of the two accuracies.
    n_clips (`int`), n_blends (`int`): the clips counted by each accuracy.
    n_presence_correct (`int`), n_salience_correct (`int`): the correct clips behind each accuracy.

Examples:

    Perfect predictions; the order inside a clip does not matter:

    >>> import evaluate
    >>> blemore_metric = evaluate.load("blemore")
    >>> references = [[{"emotion": "hap", "salience": 100}],
    ...               [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30}]]
    >>> predictions = [[{"emotion": "hap", "salience": 100.0}],
    ...                [{"emotion": "hap", "salience": 30.0}, {"emotion": "ang", "salience": 70.0}]]
    >>> results = blemore_metric.compute(predictions=predictions, references=references)
    >>> print(results["acc_presence"], results["acc_salience"], results["score"])
    1.0 1.0 1.0

    A single emotion predicted on a blend is wrong for both metrics; the right pair with swapped saliences is
    right for presence only:

    >>> references = [[{"emotion": "sad", "salience": 100}],
    ...               [{"emotion": "neu", "salience": 100}],
    ...               [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30}],
    ...               [{"emotion": "disg", "salience": 50}, {"emotion": "fea", "salience": 50}]]
    >>> predictions = [[{"emotion": "sad", "salience": 100}],
    ...                [{"emotion": "hap", "salience": 100}],
    ...                [{"emotion": "ang", "salience": 30}, {"emotion": "hap", "salience": 70}],
    ...                [{"emotion": "disg", "salience": 100}]]
    >>> results = blemore_metric.compute(predictions=predictions, references=references)
    >>> print({name: results[name] for name in ("acc_presence", "acc_salience", "score", "n_clips", "n_blends")})
    {'acc_presence': 0.5, 'acc_salience': 0.0, 'score': 0.25, 'n_clips': 4, 'n_blends': 2}

    Saliences are rounded to whole percent before comparing, as the challenge does (69.6 counts as 70):

    >>> results = blemore_metric.compute(
    ...     predictions=[[{"emotion": "ang", "salience": 69.6}, {"emotion": "hap", "salience": 30.4}]],
    ...     references=[[{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30}]])
    >>> print(results["acc_salience"])
    1.0

    Malformed clips are refused with their index, unless `strict=False` asks for the challenge's lenient scoring:

    >>> blemore_metric.compute(predictions=[[{"emotion": "joy", "salience": 100}]],
    ...                        references=[[{"emotion": "hap", "salience": 100}]])
    Traceback (most recent call last):
    ...
    ValueError: predictions[0]: unknown emotion code 'joy' (the codes are ang disg fea hap sad neu)
    >>> results = blemore_metric.compute(
    ...     predictions=[[{"emotion": "ang", "salience": 0.7}, {"emotion": "hap", "salience": 0.3}]],
    ...     references=[[{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30}]], strict=False)
    >>> print(results["acc_presence"], results["acc_salience"])
    1.0 0.0
"""

_ENTRY = {"emotion": datasets.Value("string"), "salience": datasets.Value("float64")}


def _check_entries(clip, where: str) -> None:
    """``ValueError`` for an entry with a missing or unknown key, before evaluate encodes it (where it would become
    ``None`` or a bare ``KeyError``)."""
    for entry in clip if isinstance(clip, (list, tuple)) else []:
        problem = entry_problem(entry)
        if problem:
            raise ValueError(f"{where}: {problem}")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Blemore(evaluate.Metric):
    """ACC_presence, ACC_salience and the challenge score of the BLEMORE challenge."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.List(_ENTRY), "references": datasets.List(_ENTRY)}
            ),
            homepage="https://arxiv.org/abs/2601.13225",
            reference_urls=["https://arxiv.org/abs/2601.13225", "https://github.com/BlEmoRe/blemore-common"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references (entries with a missing or unknown key are refused here)."""
        for name, clips in (("predictions", predictions), ("references", references)):
            for index, clip in enumerate(clips if clips is not None else []):
                _check_entries(clip, f"{name}[{index}]")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one clip's prediction and reference (entries with a missing or unknown key are refused here)."""
        _check_entries(prediction, "prediction")
        _check_entries(reference, "reference")
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references, strict=True):
        if strict:
            check_clips(references, "references")
            check_clips(predictions, "predictions")
        return challenge_scores(references, predictions)
